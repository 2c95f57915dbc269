/**
 * Issued certificates as `kubernetes.io/tls` Secrets: tls.crt, tls.key, and ca.crt holding the
 * CA bundle (every CA a peer may present during a rotation), server-side applied.
 */
import {
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Secret,
} from "@kubernetes/client-node";
import type { KeyAndCertificate } from "../pki/certificates.ts";
import { FIELD_MANAGER } from "../accounts/kubernetes-secret-store.ts";

const b64 = (text: string): string => Buffer.from(text).toString("base64");

export function tlsSecret(
  name: string,
  namespace: string,
  leaf: KeyAndCertificate,
  bundle: string,
): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: { name, namespace, labels: { "app.kubernetes.io/managed-by": "nats-tenancy" } },
    data: {
      "tls.crt": b64(leaf.certificatePem),
      "tls.key": b64(leaf.privateKeyPem),
      "ca.crt": b64(bundle),
    },
  };
}

export async function applyTlsSecret(kubeConfig: KubeConfig, secret: V1Secret): Promise<void> {
  const name = secret.metadata?.name ?? "";
  const namespace = secret.metadata?.namespace ?? "";
  await kubeConfig
    .makeApiClient(CoreV1Api)
    .patchNamespacedSecret(
      { name, namespace, body: secret, fieldManager: FIELD_MANAGER, force: true },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
}
