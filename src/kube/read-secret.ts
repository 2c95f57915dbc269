/** Reading Secrets back as text, the counterpart of apply-secret.ts. */
import type { CoreV1Api, V1Secret } from "@kubernetes/client-node";
import { unlessNotFound } from "./api-errors.ts";

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
  api: CoreV1Api,
  namespace: string,
  name: string,
): Promise<V1Secret | undefined> {
  return unlessNotFound(api.readNamespacedSecret({ name, namespace }));
}

/** The Secret's data as text, or undefined when there is no such Secret. */
export async function readSecretData(
  api: CoreV1Api,
  namespace: string,
  name: string,
): Promise<Record<string, string> | undefined> {
  const secret = await readSecret(api, namespace, name);
  return secret ? decodeSecretData(secret) : undefined;
}
