/**
 * Server-side apply of a Secret under the operator's field manager: the one way the operator
 * writes Secrets, so ownership of their fields is always recorded the same way.
 */
import type { V1Secret } from "@kubernetes/client-node";
import { unlessExists } from "./api-errors.ts";
import { APPLY_TYPE, corePath, type JsonRequest, type JsonRequests } from "./json-requests.ts";

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

export async function applySecret(requests: JsonRequests, secret: V1Secret): Promise<void> {
  await requests.send({
    method: "PATCH",
    path: corePath("secrets", secret.metadata?.namespace ?? "", secret.metadata?.name ?? ""),
    query: { fieldManager: FIELD_MANAGER, force: "true" },
    body: secret,
    contentType: APPLY_TYPE,
  });
}
