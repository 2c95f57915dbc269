/**
 * Server-side apply of a Secret under the operator's field manager: the one way the operator
 * writes Secrets, so ownership of their fields is always recorded the same way.
 */
import {
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Api,
  type V1Secret,
} from "@kubernetes/client-node";
import { statusOf } from "./api-errors.ts";

export const FIELD_MANAGER = "nats-tenancy";
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "nats-tenancy" } as const;

/** A Secret's `data` from plain text values. */
export function secretData(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
  );
}

/** Creates the Secret and returns it as stored; undefined, writing nothing, when one exists. */
export async function createSecret(
  api: CoreV1Api,
  secret: V1Secret,
): Promise<V1Secret | undefined> {
  try {
    return await api.createNamespacedSecret({
      namespace: secret.metadata?.namespace ?? "",
      body: secret,
      fieldManager: FIELD_MANAGER,
    });
  } catch (error) {
    if (statusOf(error) === 409) return undefined;
    throw error;
  }
}

export async function applySecret(api: CoreV1Api, secret: V1Secret): Promise<void> {
  await api.patchNamespacedSecret(
    {
      name: secret.metadata?.name ?? "",
      namespace: secret.metadata?.namespace ?? "",
      body: secret,
      fieldManager: FIELD_MANAGER,
      force: true,
    },
    setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
  );
}
