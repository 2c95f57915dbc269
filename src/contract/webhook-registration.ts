/**
 * The webhook's registrations and serving certificate, kept by the leader: the
 * MutatingWebhookConfiguration for pods and the ValidatingWebhookConfiguration for Apps (each
 * with the CA bundle that verifies the webhook, both named `configName`) and the TLS Secret
 * every replica serves from. All are written only when they differ from what should be.
 *
 * Pods: failure policy Fail, scoped by an objectSelector to pods carrying the app label. A
 * webhook outage then blocks only pods that asked for NATS (they would start without
 * credentials otherwise); every other pod in the cluster never reaches the webhook. Timeout 5 s.
 *
 * Apps: failure policy Ignore. The webhook refuses an App over the platform team's ceilings
 * with a message where the user sees it; while it is down the controller still holds such an
 * App (Degraded, OverCeiling), so an outage never blocks anyone's App. A second webhook in the
 * MutatingWebhookConfiguration adds the controller's finalizer to a new App with accounts;
 * while it is down the controller adds it itself.
 */
import type {
  V1MutatingWebhookConfiguration,
  V1ValidatingWebhookConfiguration,
  AdmissionregistrationV1WebhookClientConfig,
} from "@kubernetes/client-node";
import type { CaState } from "../ca/authority.ts";
import { ensureLeaf, webhookLeaf } from "../ca/leaves.ts";
import { keyPairFrom, tlsSecret } from "../ca/tls-secret.ts";
import { APP_GROUP, APP_PLURAL, APP_VERSION } from "../crds/app.ts";
import { APP_LABEL } from "./app-secret.ts";
import { FIELD_MANAGER, MANAGED_BY, applySecret } from "../kube/apply-secret.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import { APPLY_TYPE, JSON_PATCH_TYPE, JsonRequests } from "../kube/json-requests.ts";
import { readSecretData } from "../kube/read-secret.ts";
import type { KeyAndCertificate } from "../pki/certificates.ts";

export interface WebhookSettings {
  /** MutatingWebhookConfiguration name. */
  configName: string;
  /** TLS Secret in the operator's namespace that every replica serves from. */
  tlsSecret: string;
  /** The Service in front of the replicas' webhook port. */
  service: string;
  servicePort: number;
  /** Registers this URL instead of the Service (a webhook outside the cluster, local runs). */
  url?: string;
  /**
   * "operator": the operator writes the whole MutatingWebhookConfiguration (local runs).
   * "ca-bundle": the Helm chart renders it, so `helm uninstall` removes it and nothing
   * recreates it; the operator only keeps its caBundle current.
   */
  registration: WebhookRegistration;
  /** Namespaces never injected besides the operator's own. */
  excludedNamespaces: string[];
  /**
   * Whether every App is judged at admission (there are ceilings). Otherwise only an App that
   * exports or imports is sent (its subjects' overlaps are checked there): no other App write
   * waits on a call that can only allow it.
   */
  judgesApps: boolean;
}

/** Where the webhook serves pod reviews, and where the registration sends them. */
export const MUTATE_PODS_PATH = "/mutate-pods";
/** Where the webhook serves App reviews. */
export const VALIDATE_APPS_PATH = "/validate-apps";
/** Where the webhook adds the finalizer to new Apps. */
export const MUTATE_APPS_PATH = "/mutate-apps";

export type WebhookRegistration = "operator" | "ca-bundle";

/** The Apps the webhook judges when there are no ceilings: those that share subjects. */
export const SHARING_APPS_CONDITION =
  "has(object.spec) && has(object.spec.nats) && type(object.spec.nats) == map && " +
  "('exports' in object.spec.nats || 'imports' in object.spec.nats)";

export const DEFAULT_EXCLUDED_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease"];

export function excludedNamespaces(settings: WebhookSettings, operatorNamespace: string): string[] {
  return [...new Set([...settings.excludedNamespaces, operatorNamespace])].sort();
}

/** The Service's path, or `settings.url` with its path replaced by this webhook's own. */
function clientConfig(
  settings: WebhookSettings,
  operatorNamespace: string,
  caBundle: string,
  path: string,
): AdmissionregistrationV1WebhookClientConfig {
  const bundle = Buffer.from(caBundle).toString("base64");
  if (settings.url) return { caBundle: bundle, url: new URL(path, settings.url).toString() };
  return {
    caBundle: bundle,
    service: {
      name: settings.service,
      namespace: operatorNamespace,
      port: settings.servicePort,
      path,
    },
  };
}

export function appValidationConfiguration(
  settings: WebhookSettings,
  operatorNamespace: string,
  caBundle: string,
): V1ValidatingWebhookConfiguration {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name: settings.configName, labels: { ...MANAGED_BY } },
    webhooks: [
      {
        name: "apps.nats-tenancy.io",
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: "Ignore",
        timeoutSeconds: 5,
        matchPolicy: "Equivalent",
        ...(settings.judgesApps
          ? {}
          : { matchConditions: [{ name: "shares-subjects", expression: SHARING_APPS_CONDITION }] }),
        clientConfig: clientConfig(settings, operatorNamespace, caBundle, VALIDATE_APPS_PATH),
        rules: [
          {
            apiGroups: [APP_GROUP],
            apiVersions: [APP_VERSION],
            operations: ["CREATE", "UPDATE"],
            resources: [APP_PLURAL],
            scope: "Namespaced",
          },
        ],
      },
    ],
  };
}

export function webhookConfiguration(
  settings: WebhookSettings,
  operatorNamespace: string,
  caBundle: string,
): V1MutatingWebhookConfiguration {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
    metadata: { name: settings.configName, labels: { ...MANAGED_BY } },
    webhooks: [
      {
        name: "pods.nats-tenancy.io",
        admissionReviewVersions: ["v1"],
        // Its Events are side effects, written only for reviews that are not dry runs.
        sideEffects: "NoneOnDryRun",
        failurePolicy: "Fail",
        timeoutSeconds: 5,
        // The variables and volume may be needed by containers another webhook adds.
        reinvocationPolicy: "IfNeeded",
        matchPolicy: "Equivalent",
        clientConfig: clientConfig(settings, operatorNamespace, caBundle, MUTATE_PODS_PATH),
        rules: [
          {
            apiGroups: [""],
            apiVersions: ["v1"],
            operations: ["CREATE"],
            resources: ["pods"],
            scope: "Namespaced",
          },
        ],
        objectSelector: { matchExpressions: [{ key: APP_LABEL, operator: "Exists" }] },
        namespaceSelector: {
          matchExpressions: [
            {
              key: "kubernetes.io/metadata.name",
              operator: "NotIn",
              values: excludedNamespaces(settings, operatorNamespace),
            },
          ],
        },
      },
      {
        name: "finalizer.apps.nats-tenancy.io",
        admissionReviewVersions: ["v1"],
        sideEffects: "None",
        failurePolicy: "Ignore",
        timeoutSeconds: 5,
        reinvocationPolicy: "Never",
        matchPolicy: "Equivalent",
        clientConfig: clientConfig(settings, operatorNamespace, caBundle, MUTATE_APPS_PATH),
        rules: [
          {
            apiGroups: [APP_GROUP],
            apiVersions: [APP_VERSION],
            operations: ["CREATE"],
            resources: [APP_PLURAL],
            scope: "Namespaced",
          },
        ],
      },
    ],
  };
}

type WebhookConfiguration = V1MutatingWebhookConfiguration | V1ValidatingWebhookConfiguration;
type Webhook = NonNullable<WebhookConfiguration["webhooks"]>[number];

/** Compares only what the operator sets; the API server adds defaults of its own. */
function sameConfiguration(
  current: WebhookConfiguration | undefined,
  desired: WebhookConfiguration,
): boolean {
  const pick = (w: Webhook) =>
    JSON.stringify([
      w.name,
      w.clientConfig.caBundle,
      w.clientConfig.url,
      w.clientConfig.service?.name,
      w.clientConfig.service?.namespace,
      w.clientConfig.service?.port,
      w.clientConfig.service?.path,
      w.failurePolicy,
      w.timeoutSeconds,
      "reinvocationPolicy" in w ? w.reinvocationPolicy : undefined,
      // The API server stores an unset selector as {}.
      w.objectSelector ?? {},
      w.namespaceSelector ?? {},
      w.rules?.map((r) => [r.apiGroups, r.apiVersions, r.operations, r.resources, r.scope]),
      w.matchConditions?.map((c) => [c.name, c.expression]) ?? [],
    ]);
  const all = (c: WebhookConfiguration | undefined) => (c?.webhooks ?? []).map(pick).join("\n");
  return current !== undefined && all(current) === all(desired);
}

export interface WebhookTls {
  /** The serving leaf the replicas use now. */
  leaf?: KeyAndCertificate;
  /** The CA bundle written beside it. */
  bundle?: string;
}

/** The webhook's TLS Secret as it stands: what replicas serve, what a rotation must wait for. */
export async function readWebhookTls(
  cluster: ClusterAccess,
  namespace: string,
  settings: WebhookSettings,
): Promise<WebhookTls> {
  const data = await readSecretData(new JsonRequests(cluster), namespace, settings.tlsSecret);
  const leaf = keyPairFrom(data);
  const bundle = data?.["ca.crt"];
  return { ...(leaf ? { leaf } : {}), ...(bundle !== undefined ? { bundle } : {}) };
}

export interface EnsureWebhookInput {
  cluster: ClusterAccess;
  namespace: string;
  settings: WebhookSettings;
  /** The TLS Secret as read before the CA step (readWebhookTls). */
  previous: WebhookTls;
  ca: CaState;
  caBundle: string;
  leafLifetimeMs: number;
  loopback: boolean;
  nowMs: number;
}

/** One registration object, whichever its kind, and how to read and patch it. */
interface Registration {
  kind: string;
  desired: WebhookConfiguration;
  read: () => Promise<WebhookConfiguration | undefined>;
  /** `contentType` says the patch's kind: a JSON patch, or a server-side apply. */
  patch: (body: object, contentType: string, force: boolean) => Promise<unknown>;
}

/**
 * Sets the caBundle of each webhook in a registration someone else owns. A missing one is left
 * missing: after `helm uninstall` a controller still shutting down must not bring back a
 * webhook that blocks labelled pods.
 */
async function injectCaBundle(
  registration: Registration,
  name: string,
  current: WebhookConfiguration | undefined,
): Promise<string[]> {
  if (!current) return [`${registration.kind} ${name} not found: not created (the chart owns it)`];
  const bundle = registration.desired.webhooks?.[0]?.clientConfig.caBundle;
  const patch = (current.webhooks ?? []).flatMap((webhook: Webhook, index: number) =>
    webhook.clientConfig.caBundle === bundle
      ? []
      : [
          // Guards against the list changing between the read and the patch.
          { op: "test", path: `/webhooks/${String(index)}/name`, value: webhook.name },
          { op: "add", path: `/webhooks/${String(index)}/clientConfig/caBundle`, value: bundle },
        ],
  );
  if (patch.length === 0) return [];
  await registration.patch(patch, JSON_PATCH_TYPE, false);
  return [`${registration.kind} ${name}: caBundle set`];
}

async function ensureRegistration(
  registration: Registration,
  settings: WebhookSettings,
): Promise<string[]> {
  const current = await registration.read();
  if (settings.registration === "ca-bundle")
    return injectCaBundle(registration, settings.configName, current);
  if (sameConfiguration(current, registration.desired)) return [];
  await registration.patch(registration.desired, APPLY_TYPE, true);
  return [`${registration.kind} ${settings.configName} written`];
}

/** Ensures the serving certificate and the registration; returns what it changed. */
export async function ensureWebhook(input: EnsureWebhookInput): Promise<string[]> {
  const { namespace, settings } = input;
  const requests = new JsonRequests(input.cluster);
  const changes: string[] = [];
  const leafSpec = webhookLeaf(settings.service, namespace, input.leafLifetimeMs, input.loopback);
  const leaf = await ensureLeaf(input.previous.leaf, leafSpec, input.ca, input.nowMs);
  if (
    input.previous.leaf?.certificatePem !== leaf.leaf.certificatePem ||
    input.previous.bundle !== input.caBundle
  ) {
    await applySecret(
      requests,
      tlsSecret(settings.tlsSecret, namespace, leaf.leaf, input.caBundle),
    );
    changes.push(`webhook certificate: ${leaf.reason ?? "CA bundle changed"}`);
  }

  const name = settings.configName;
  const registration = (kind: string, resource: string, desired: WebhookConfiguration) => {
    const path = `/apis/admissionregistration.k8s.io/v1/${resource}/${name}`;
    return {
      kind,
      desired,
      read: () => unlessNotFound(requests.get<WebhookConfiguration>(path)),
      patch: (body: object, contentType: string, force: boolean) =>
        requests.send({
          method: "PATCH",
          path,
          query: { fieldManager: FIELD_MANAGER, ...(force ? { force: "true" } : {}) },
          body,
          contentType,
        }),
    };
  };
  const registrations: Registration[] = [
    registration(
      "MutatingWebhookConfiguration",
      "mutatingwebhookconfigurations",
      webhookConfiguration(settings, namespace, input.caBundle),
    ),
    registration(
      "ValidatingWebhookConfiguration",
      "validatingwebhookconfigurations",
      appValidationConfiguration(settings, namespace, input.caBundle),
    ),
  ];
  for (const registration of registrations)
    changes.push(...(await ensureRegistration(registration, settings)));
  return changes;
}
