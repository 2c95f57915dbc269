/**
 * The Secret an app's pods read, one per app x environment in the App's namespace: the
 * variables apps code against, the same credentials as files, and the servicebinding.io keys
 * (type, provider, url) so binding libraries find them too. Never a seed of the account or
 * operator: the creds hold only the pods user's own key.
 */
import { createHash } from "node:crypto";
import type { V1OwnerReference, V1Secret } from "@kubernetes/client-node";
import { MANAGED_BY, secretData } from "../kube/apply-secret.ts";
import { decodeSecretData, sameSecretData } from "../kube/read-secret.ts";

export const APP_LABEL = "nats-tenancy.io/app";
export const ENVIRONMENT_LABEL = "nats-tenancy.io/environment";
/** A digest of what the Secret was written from and of what it holds (see appSecretUnchanged). */
export const DIGEST_ANNOTATION = "nats-tenancy.io/digest";

/** File names inside the Secret (and inside the volume the webhook mounts). */
export const CREDS_KEY = "nats.creds";
export const CA_KEY = "ca.crt";

export function appSecretName(app: string, environment: string): string {
  return `${app}-${environment}-nats`;
}

/** Where apps connect: pods inside the cluster, and clients outside when NATS is exposed. */
export interface AppUrls {
  url: string;
  externalUrl?: string;
  /** Where the servers listen for WebSocket clients outside, when they do. */
  externalWebsocketUrl?: string;
}

export const EXTERNAL_URL_KEY = "NATS_EXTERNAL_URL";
export const EXTERNAL_WEBSOCKET_URL_KEY = "NATS_EXTERNAL_WEBSOCKET_URL";

export interface AppSecretInput extends AppUrls {
  namespace: string;
  app: string;
  environment: string;
  owner: V1OwnerReference;
  creds: string;
  caBundle: string;
  /**
   * What the creds were made from besides the account's keys (the account, its revision and
   * recipe): the same source and keys make the same creds.
   */
  madeFrom: string;
}

/** Known before the creds are: what decides whether the Secret is still what it should be. */
export type AppSecretSource = Omit<AppSecretInput, "creds">;

export function appSecretValues(input: AppSecretInput): Record<string, string> {
  return {
    NATS_URL: input.url,
    NATS_CREDENTIALS: input.creds,
    [CREDS_KEY]: input.creds,
    [CA_KEY]: input.caBundle,
    type: "nats",
    provider: "nats-tenancy",
    url: input.url,
    ...(input.externalUrl !== undefined ? { [EXTERNAL_URL_KEY]: input.externalUrl } : {}),
    ...(input.externalWebsocketUrl !== undefined
      ? { [EXTERNAL_WEBSOCKET_URL_KEY]: input.externalWebsocketUrl }
      : {}),
  };
}

/** Over the data as stored (base64), so checking a cached Secret decodes nothing. */
function digest(source: AppSecretSource, data: Record<string, string>): string {
  // The external URLs only when there are: Secrets written before they existed keep their digest.
  const sourceFields = [source.madeFrom, source.owner.uid, source.url, source.caBundle];
  if (source.externalUrl !== undefined || source.externalWebsocketUrl !== undefined)
    sourceFields.push(source.externalUrl ?? "", source.externalWebsocketUrl ?? "");
  const hash = createHash("sha256").update(JSON.stringify(sourceFields));
  for (const key of Object.keys(data).sort()) hash.update(`\n${key}=${data[key] ?? ""}`);
  return hash.digest("base64url");
}

export function appSecret(input: AppSecretInput): V1Secret {
  const data = secretData(appSecretValues(input));
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name: appSecretName(input.app, input.environment),
      namespace: input.namespace,
      labels: { ...MANAGED_BY, [APP_LABEL]: input.app, [ENVIRONMENT_LABEL]: input.environment },
      annotations: { [DIGEST_ANNOTATION]: digest(input, data) },
      ownerReferences: [input.owner],
    },
    data,
  };
}

/** Which app x environment a Secret belongs to, by its labels; undefined for someone else's. */
export function secretOwner(
  secret: V1Secret | undefined,
): { app: string; environment: string } | undefined {
  const labels = secret?.metadata?.labels ?? {};
  const app = labels[APP_LABEL];
  const environment = labels[ENVIRONMENT_LABEL];
  if (labels["app.kubernetes.io/managed-by"] !== MANAGED_BY["app.kubernetes.io/managed-by"])
    return undefined;
  return app && environment ? { app, environment } : undefined;
}

function ownedAs(existing: V1Secret, input: AppSecretSource): boolean {
  const owner = secretOwner(existing);
  if (owner?.app !== input.app || owner.environment !== input.environment) return false;
  const refs = existing.metadata?.ownerReferences ?? [];
  return refs.some((r) => r.uid === input.owner.uid && r.controller === true);
}

/**
 * True when `existing` already is what `appSecret(input)` would write. A Secret written before
 * the digest was recorded still counts when its content does: adding the digest alone is not
 * worth a write to every Secret.
 */
export function appSecretCurrent(existing: V1Secret | undefined, input: AppSecretInput): boolean {
  if (!existing || !ownedAs(existing, input)) return false;
  if (!sameSecretData(decodeSecretData(existing), appSecretValues(input))) return false;
  const recorded = existing.metadata?.annotations?.[DIGEST_ANNOTATION];
  return recorded === undefined || recorded === digest(input, existing.data ?? {});
}

/**
 * True when `existing` was written from exactly this source and its data not touched since,
 * which is known without the creds (and so without reading the account's keys): the digest it
 * records covers the source and the data it was written with.
 */
export function appSecretUnchanged(
  existing: V1Secret | undefined,
  input: AppSecretSource,
): boolean {
  if (!existing || !ownedAs(existing, input)) return false;
  const recorded = existing.metadata?.annotations?.[DIGEST_ANNOTATION];
  return recorded !== undefined && recorded === digest(input, existing.data ?? {});
}
