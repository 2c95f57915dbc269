/**
 * Restarts the workloads of an app's environment the way `kubectl rollout restart` does (a new
 * pod-template annotation), for Apps that opted in: pods that read NATS_CREDENTIALS from their
 * environment see new credentials only when they start again. Each rotation restarts a
 * workload once: the template records which rotation it was restarted for.
 */
import type { V1ObjectMeta } from "@kubernetes/client-node";
import { APP_LABEL, ENVIRONMENT_LABEL } from "../../contract/app-secret.ts";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import { JsonRequests } from "../../kube/json-requests.ts";
import {
  RESTARTED_FOR_ANNOTATION,
  rolloutRestart,
  workloadPath,
  type WorkloadPlural,
} from "../../kube/rollout-restart.ts";

interface Workload {
  kind: "Deployment" | "StatefulSet" | "DaemonSet";
  plural: WorkloadPlural;
  name: string;
  template: V1ObjectMeta | undefined;
}

interface WorkloadList {
  items?: { metadata?: V1ObjectMeta; spec?: { template?: { metadata?: V1ObjectMeta } } }[];
}

async function workloads(requests: JsonRequests, namespace: string): Promise<Workload[]> {
  const kinds = [
    ["Deployment", "deployments"],
    ["StatefulSet", "statefulsets"],
    ["DaemonSet", "daemonsets"],
  ] as const;
  const lists = await Promise.all(
    kinds.map(([, plural]) => requests.get<WorkloadList>(workloadPath(namespace, plural))),
  );
  return kinds.flatMap(([kind, plural], i) =>
    (lists[i]?.items ?? []).map((item) => ({
      kind,
      plural,
      name: item.metadata?.name ?? "",
      template: item.spec?.template?.metadata,
    })),
  );
}

/**
 * Restarts every Deployment, StatefulSet and DaemonSet of `namespace` whose pod template
 * carries the app's and environment's labels and was not restarted for `rotation` yet; the
 * ones restarted, as `Kind/name`.
 */
export async function restartWorkloads(
  cluster: ClusterAccess,
  namespace: string,
  target: { app: string; environment: string; rotation: string },
  nowMs: number,
): Promise<string[]> {
  const requests = new JsonRequests(cluster);
  const restarted: string[] = [];
  for (const workload of await workloads(requests, namespace)) {
    const labels = workload.template?.labels ?? {};
    if (labels[APP_LABEL] !== target.app || labels[ENVIRONMENT_LABEL] !== target.environment)
      continue;
    if (workload.template?.annotations?.[RESTARTED_FOR_ANNOTATION] === target.rotation) continue;
    await rolloutRestart(
      requests,
      { namespace, plural: workload.plural, name: workload.name },
      target.rotation,
      nowMs,
    );
    restarted.push(`${workload.kind}/${workload.name}`);
  }
  return restarted;
}
