/**
 * AdmissionReview v1 in, AdmissionReview v1 out: for pods, whose patch is a JSONPatch computed
 * by diffing the pod with its mutated copy (so what is sent is exactly what injectPod changed);
 * for Apps created, which may get the finalizer; and for Apps stored, which are only allowed or
 * refused.
 */
import fastJsonPatch, { type Operation } from "fast-json-patch";
import { asAppObject, type AppObject } from "../contract/app-object.ts";
import { APP_GROUP, APP_KIND } from "../crds/app.ts";
import { injectPod, type Decision, type Pod } from "./pod-injection.ts";

export class ReviewError extends Error {
  override name = "ReviewError";
}

export interface PodReview {
  uid: string;
  namespace: string;
  pod: Pod;
  /** The pod's name for logs; generated names are not known yet at admission. */
  describe: string;
  /** Nothing will be stored: the review must have no side effect (no Event). */
  dryRun: boolean;
}

export interface ReviewResponse {
  apiVersion: "admission.k8s.io/v1";
  kind: "AdmissionReview";
  response: {
    uid: string;
    allowed: boolean;
    patchType?: "JSONPatch";
    patch?: string;
    status?: { code: number; message: string };
    warnings?: string[];
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The envelope every review shares: an AdmissionReview v1 with a request and its uid. */
function reviewRequest(body: unknown): Record<string, unknown> & { uid: string } {
  if (!isObject(body)) throw new ReviewError("the body is not a JSON object");
  if (body.apiVersion !== "admission.k8s.io/v1" || body.kind !== "AdmissionReview")
    throw new ReviewError(
      `expected an admission.k8s.io/v1 AdmissionReview, got ${String(body.apiVersion)} ${String(body.kind)}`,
    );
  const request = body.request;
  if (!isObject(request)) throw new ReviewError("the AdmissionReview has no request");
  if (typeof request.uid !== "string" || request.uid === "")
    throw new ReviewError("the AdmissionReview request has no uid");
  return request as Record<string, unknown> & { uid: string };
}

export interface AppReview {
  uid: string;
  namespace: string;
  operation: "CREATE" | "UPDATE";
  app: AppObject;
  /** The App as stored before, on UPDATE. */
  oldApp?: AppObject;
}

/** The review's request, when it is about an App. */
function appRequest(body: unknown): Record<string, unknown> & { uid: string } {
  const request = reviewRequest(body);
  const kind = request.kind;
  if (!isObject(kind) || kind.kind !== APP_KIND || kind.group !== APP_GROUP)
    throw new ReviewError(`the request is not for a ${APP_GROUP} ${APP_KIND}`);
  return request;
}

/** Checks the shape the App handler relies on. */
export function parseAppReview(body: unknown): AppReview {
  const request = appRequest(body);
  const operation = request.operation;
  if (operation !== "CREATE" && operation !== "UPDATE")
    throw new ReviewError(`the operation ${String(operation)} is not reviewed here`);
  const app = asAppObject(request.object);
  if (!app) throw new ReviewError("the request's object is not an App with metadata");
  const oldApp = asAppObject(request.oldObject);
  return {
    uid: request.uid,
    namespace: typeof request.namespace === "string" ? request.namespace : "",
    operation,
    app,
    ...(oldApp ? { oldApp } : {}),
  };
}

/**
 * An App about to be created, before the API server fills in its uid (mutating admission runs
 * first), so only what a mutation looks at is checked.
 */
export interface AppCreation {
  uid: string;
  namespace: string;
  app: { metadata: { name?: string; finalizers?: string[] }; spec?: unknown };
}

export function parseAppCreation(body: unknown): AppCreation {
  const request = appRequest(body);
  if (request.operation !== "CREATE")
    throw new ReviewError(`the operation ${String(request.operation)} is not mutated here`);
  const app = request.object;
  if (!isObject(app) || !isObject(app.metadata))
    throw new ReviewError("the request's object is not an App with metadata");
  const { finalizers } = app.metadata;
  if (
    finalizers !== undefined &&
    !(Array.isArray(finalizers) && finalizers.every((f) => typeof f === "string"))
  )
    throw new ReviewError("the App's metadata.finalizers is not a list of strings");
  return {
    uid: request.uid,
    namespace: typeof request.namespace === "string" ? request.namespace : "",
    app: app as AppCreation["app"],
  };
}

/** Allowed as it is, or with the object changed by `operations`. */
export function patched(uid: string, operations: Operation[]): ReviewResponse {
  if (operations.length === 0) return verdict(uid, undefined);
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: {
      uid,
      allowed: true,
      patchType: "JSONPatch",
      patch: Buffer.from(JSON.stringify(operations)).toString("base64"),
    },
  };
}

/** Allowed, or refused with the reason (403, shown by kubectl as the webhook's message). */
export function verdict(uid: string, refusal: string | undefined): ReviewResponse {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    response: {
      uid,
      allowed: refusal === undefined,
      ...(refusal === undefined
        ? {}
        : { status: { code: 403, message: `nats-tenancy: ${refusal}` } }),
    },
  };
}

/** Checks the shape the handler relies on; anything else is a ReviewError with what is wrong. */
export function parsePodReview(body: unknown): PodReview {
  const request = reviewRequest(body);
  const kind = request.kind;
  if (!isObject(kind) || kind.kind !== "Pod" || kind.group !== "" || kind.version !== "v1")
    throw new ReviewError("the request is not for a core/v1 Pod");
  const pod = request.object;
  if (!isObject(pod) || !isObject(pod.spec) || !Array.isArray(pod.spec.containers))
    throw new ReviewError("the request's object is not a Pod with containers");
  const namespace = typeof request.namespace === "string" ? request.namespace : "";
  const metadata = isObject(pod.metadata) ? pod.metadata : {};
  const name =
    typeof metadata.name === "string"
      ? metadata.name
      : `${typeof metadata.generateName === "string" ? metadata.generateName : ""}<generated>`;
  return {
    uid: request.uid,
    namespace,
    pod: pod as Pod,
    describe: `${namespace}/${name}`,
    dryRun: request.dryRun === true,
  };
}

export function reviewResponse(review: PodReview, decision: Decision): ReviewResponse {
  if (decision.action === "reject") return verdict(review.uid, decision.reason);
  if (decision.action === "skip") return verdict(review.uid, undefined);
  const mutated = injectPod(review.pod, decision.target);
  return patched(review.uid, fastJsonPatch.compare(review.pod, mutated));
}
