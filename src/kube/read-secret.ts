/** Reading Secrets back as text, the counterpart of apply-secret.ts. */
import { ApiException, type CoreV1Api, type V1Secret } from "@kubernetes/client-node";

export function statusOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

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
  try {
    return await api.readNamespacedSecret({ name, namespace });
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw error;
  }
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
