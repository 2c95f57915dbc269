/** Reading Secrets back as text, the counterpart of apply-secret.ts. */
import type { V1Secret } from "@kubernetes/client-node";
import { unlessNotFound } from "./api-errors.ts";
import { corePath, type JsonRequests } from "./json-requests.ts";

export function decodeSecretData(secret: V1Secret): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secret.data ?? {}).map(([k, v]) => [
      k,
      Buffer.from(v, "base64").toString("utf8"),
    ]),
  );
}

/** True when a Secret's decoded data holds exactly these keys with these values. */
export function sameSecretData(
  have: Record<string, string> | undefined,
  want: Record<string, string>,
): boolean {
  if (!have) return false;
  const keys = Object.keys(want);
  return Object.keys(have).length === keys.length && keys.every((k) => have[k] === want[k]);
}

/** The Secret, or undefined when there is none. */
export async function readSecret(
  requests: JsonRequests,
  namespace: string,
  name: string,
): Promise<V1Secret | undefined> {
  return unlessNotFound(requests.get<V1Secret>(corePath("secrets", namespace, name)));
}

/** The Secret's data as text, or undefined when there is no such Secret. */
export async function readSecretData(
  requests: JsonRequests,
  namespace: string,
  name: string,
): Promise<Record<string, string> | undefined> {
  const secret = await readSecret(requests, namespace, name);
  return secret ? decodeSecretData(secret) : undefined;
}
