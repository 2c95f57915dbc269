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
