/**
 * The Secret an app's pods read, one per app x environment in the App's namespace: the
 * variables apps code against, the same credentials as files, and the servicebinding.io keys
 * (type, provider, url) so binding libraries find them too. Never a seed of the account or
 * operator: the creds hold only the pods user's own key.
 */
import type { V1OwnerReference, V1Secret } from "@kubernetes/client-node";
import { MANAGED_BY, secretData } from "../kube/apply-secret.ts";
import { decodeSecretData, sameSecretData } from "../kube/read-secret.ts";

export const APP_LABEL = "nats-tenancy.io/app";
export const ENVIRONMENT_LABEL = "nats-tenancy.io/environment";

/** File names inside the Secret (and inside the volume the webhook mounts). */
export const CREDS_KEY = "nats.creds";
export const CA_KEY = "ca.crt";

export function appSecretName(app: string, environment: string): string {
  return `${app}-${environment}-nats`;
}

export interface AppSecretInput {
  namespace: string;
  app: string;
  environment: string;
  owner: V1OwnerReference;
  url: string;
  creds: string;
  caBundle: string;
}

export function appSecretValues(input: AppSecretInput): Record<string, string> {
  return {
    NATS_URL: input.url,
    NATS_CREDENTIALS: input.creds,
    [CREDS_KEY]: input.creds,
    [CA_KEY]: input.caBundle,
    type: "nats",
    provider: "nats-tenancy",
    url: input.url,
  };
}

export function appSecret(input: AppSecretInput): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "Opaque",
    metadata: {
      name: appSecretName(input.app, input.environment),
      namespace: input.namespace,
      labels: { ...MANAGED_BY, [APP_LABEL]: input.app, [ENVIRONMENT_LABEL]: input.environment },
      ownerReferences: [input.owner],
    },
    data: secretData(appSecretValues(input)),
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

/** True when `existing` already is what `appSecret(input)` would write. */
export function appSecretCurrent(existing: V1Secret | undefined, input: AppSecretInput): boolean {
  if (!existing) return false;
  const owner = secretOwner(existing);
  if (owner?.app !== input.app || owner.environment !== input.environment) return false;
  const refs = existing.metadata?.ownerReferences ?? [];
  if (!refs.some((r) => r.uid === input.owner.uid && r.controller === true)) return false;
  return sameSecretData(decodeSecretData(existing), appSecretValues(input));
}
