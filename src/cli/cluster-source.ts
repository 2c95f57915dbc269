/**
 * Which cluster the process runs against. Inside a pod the answer is always the pod's own
 * service account: a pod that lost it (automountServiceAccountToken: false, a broken
 * projection) must fail where the platform team looks (the pod's log and restarts), never
 * fall back to a kubeconfig that happens to be in the image or to the embedded demo.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { SERVICE_ACCOUNT_DIR } from "../kube/kubeconfig-access.ts";

export type ClusterSource =
  | { kind: "kubeconfig"; path: string }
  | { kind: "in-cluster" }
  | { kind: "default-kubeconfig" }
  | { kind: "demo" };

export class InClusterConfigError extends Error {
  override name = "InClusterConfigError";
}

export interface Environment {
  env: Record<string, string | undefined>;
  exists: (path: string) => boolean;
  home: string;
}

const HOST: Environment = { env: process.env, exists: existsSync, home: homedir() };

export function clusterSource(kubeconfig: string | undefined, host = HOST): ClusterSource {
  if (kubeconfig) return { kind: "kubeconfig", path: kubeconfig };
  // The kubelet sets these in every container, and mounts the account unless told not to.
  const inPod =
    Boolean(host.env.KUBERNETES_SERVICE_HOST) ||
    host.exists(join(SERVICE_ACCOUNT_DIR, "namespace"));
  if (inPod) {
    const missing = ["token", "ca.crt"]
      .map((file) => join(SERVICE_ACCOUNT_DIR, file))
      .filter((path) => !host.exists(path));
    if (!host.env.KUBERNETES_SERVICE_HOST || !host.env.KUBERNETES_SERVICE_PORT)
      missing.push("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT");
    if (missing.length > 0)
      throw new InClusterConfigError(
        `running in a pod without its in-cluster configuration (missing ${missing.join(", ")}): ` +
          "give the pod a service account token (automountServiceAccountToken: true) or pass --kubeconfig",
      );
    return { kind: "in-cluster" };
  }
  if (host.exists(join(host.home, ".kube", "config"))) return { kind: "default-kubeconfig" };
  return { kind: "demo" };
}
