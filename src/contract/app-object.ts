/**
 * An App as the controller reads it from the informer: metadata it relies on is required, the
 * spec is unknown until checked (an object stored before the schema tightened may not fit).
 */
import { appPath, type AppStatus } from "../crds/app.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import type { JsonRequests } from "../kube/json-requests.ts";

/**
 * Holds an App that has accounts until the controller deleted them. Set at admission by the
 * webhook (so creating an App costs the controller no write) and by the controller when the
 * webhook was away; removed only by the controller.
 */
export const FINALIZER = "nats-tenancy.io/accounts";

export interface AppObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    deletionTimestamp?: Date;
    /** Typed as client-node types it; custom objects arrive with the JSON string. */
    creationTimestamp?: Date;
    finalizers?: string[];
    resourceVersion?: string;
    annotations?: Record<string, string>;
  };
  spec?: unknown;
  status?: AppStatus;
}

export function holdsFinalizer(app: { metadata: { finalizers?: string[] } }): boolean {
  return (app.metadata.finalizers ?? []).includes(FINALIZER);
}

/** Narrows what an informer delivered; objects without these fields are not Apps to act on. */
export function asAppObject(value: unknown): AppObject | undefined {
  const meta = (value as { metadata?: Record<string, unknown> } | undefined)?.metadata;
  if (
    typeof meta?.name !== "string" ||
    typeof meta.namespace !== "string" ||
    typeof meta.uid !== "string"
  )
    return undefined;
  return value as AppObject;
}

/** An App read from the API server; undefined when there is none. */
export async function readAppObject(
  requests: JsonRequests,
  namespace: string,
  name: string,
): Promise<AppObject | undefined> {
  return asAppObject(await unlessNotFound(requests.get<unknown>(appPath(namespace, name))));
}
