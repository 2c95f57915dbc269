/**
 * Issued certificates as `kubernetes.io/tls` Secrets: tls.crt, tls.key, and ca.crt holding the
 * CA bundle (every CA a peer may present during a rotation), server-side applied.
 */
import type { V1Secret } from "@kubernetes/client-node";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import { MANAGED_BY, applySecret, secretData } from "../kube/apply-secret.ts";
import { JsonRequests } from "../kube/json-requests.ts";
import type { KeyAndCertificate } from "../pki/certificates.ts";

/** The certificate and key stored under `cert` and `key` in a Secret's data, if both are there. */
export function keyPairFrom(
  data: Record<string, string> | undefined,
  cert = "tls.crt",
  key = "tls.key",
): KeyAndCertificate | undefined {
  const certificatePem = data?.[cert];
  const privateKeyPem = data?.[key];
  return certificatePem && privateKeyPem ? { certificatePem, privateKeyPem } : undefined;
}

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
    metadata: { name, namespace, labels: { ...MANAGED_BY } },
    data: secretData({
      "tls.crt": leaf.certificatePem,
      "tls.key": leaf.privateKeyPem,
      "ca.crt": bundle,
    }),
  };
}

export async function applyTlsSecret(cluster: ClusterAccess, secret: V1Secret): Promise<void> {
  await applySecret(new JsonRequests(cluster), secret);
}
