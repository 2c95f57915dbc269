/**
 * Server-side apply of a Secret under the operator's field manager: the one way the operator
 * writes Secrets, so ownership of their fields is always recorded the same way.
 */
import type { V1Secret } from "@kubernetes/client-node";
import { unlessExists } from "./api-errors.ts";
import {
  APPLY_TYPE,
  MERGE_PATCH_TYPE,
  corePath,
  type JsonRequest,
  type JsonRequests,
} from "./json-requests.ts";

export const FIELD_MANAGER = "nats-tenancy";
export const MANAGED_BY = { "app.kubernetes.io/managed-by": "nats-tenancy" } as const;

/** A Secret's `data` from plain text values. */
export function secretData(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
  );
}

/** The request that creates the Secret; it fails with 409 when one of that name exists. */
export function secretCreation(secret: V1Secret): JsonRequest {
  return {
    method: "POST",
    path: corePath("secrets", secret.metadata?.namespace ?? ""),
    query: { fieldManager: FIELD_MANAGER },
    body: secret,
  };
}

/** Creates the Secret; false, writing nothing, when one of that name exists. */
export async function createSecret(requests: JsonRequests, secret: V1Secret): Promise<boolean> {
  return (await unlessExists(requests.send(secretCreation(secret)).then(() => true))) ?? false;
}

/**
 * Applies the Secret, after removing `removedKeys` by name: an apply drops only what the
 * manager's earlier applies set, and a Secret's create is recorded as an update, so a key it
 * was created with would otherwise stay for good.
 */
export async function applySecret(
  requests: JsonRequests,
  secret: V1Secret,
  removedKeys: string[] = [],
): Promise<void> {
  const path = corePath("secrets", secret.metadata?.namespace ?? "", secret.metadata?.name ?? "");
  if (removedKeys.length > 0)
    await requests.send({
      method: "PATCH",
      path,
      query: { fieldManager: FIELD_MANAGER },
      body: { data: Object.fromEntries(removedKeys.map((key) => [key, null])) },
      contentType: MERGE_PATCH_TYPE,
    });
  await requests.send({
    method: "PATCH",
    path,
    query: { fieldManager: FIELD_MANAGER, force: "true" },
    body: secret,
    contentType: APPLY_TYPE,
  });
}

/** The keys `existing` holds that `desired` does not: what an apply of `desired` leaves. */
export function staleKeys(existing: V1Secret | undefined, desired: V1Secret): string[] {
  return Object.keys(existing?.data ?? {}).filter((key) => !(key in (desired.data ?? {})));
}
