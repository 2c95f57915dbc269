/**
 * Restarts the workloads of an app's environment the way `kubectl rollout restart` does (a new
 * pod-template annotation), for Apps that opted in: pods that read NATS_CREDENTIALS from their
 * environment see new credentials only when they start again. Each rotation restarts a
 * workload once: the template records which rotation it was restarted for.
 */
import { AppsV1Api, type KubeConfig, type V1ObjectMeta } from "@kubernetes/client-node";
import { APP_LABEL, ENVIRONMENT_LABEL } from "../../contract/app-secret.ts";
import { JsonRequests } from "../../kube/json-requests.ts";
import {
  RESTARTED_FOR_ANNOTATION,
  rolloutRestart,
  type WorkloadPlural,
} from "../../kube/rollout-restart.ts";

interface Workload {
  kind: "Deployment" | "StatefulSet" | "DaemonSet";
  plural: WorkloadPlural;
  name: string;
  template: V1ObjectMeta | undefined;
}

async function workloads(apps: AppsV1Api, namespace: string): Promise<Workload[]> {
  const [deployments, statefulSets, daemonSets] = await Promise.all([
    apps.listNamespacedDeployment({ namespace }),
    apps.listNamespacedStatefulSet({ namespace }),
    apps.listNamespacedDaemonSet({ namespace }),
  ]);
  const of = (
    kind: Workload["kind"],
    plural: Workload["plural"],
    items: { metadata?: V1ObjectMeta; spec?: { template: { metadata?: V1ObjectMeta } } }[],
  ): Workload[] =>
    items.map((item) => ({
      kind,
      plural,
      name: item.metadata?.name ?? "",
      template: item.spec?.template.metadata,
    }));
  return [
    ...of("Deployment", "deployments", deployments.items),
    ...of("StatefulSet", "statefulsets", statefulSets.items),
    ...of("DaemonSet", "daemonsets", daemonSets.items),
  ];
}

/**
 * Restarts every Deployment, StatefulSet and DaemonSet of `namespace` whose pod template
 * carries the app's and environment's labels and was not restarted for `rotation` yet; the
 * ones restarted, as `Kind/name`.
 */
export async function restartWorkloads(
  kubeConfig: KubeConfig,
  namespace: string,
  target: { app: string; environment: string; rotation: string },
  nowMs: number,
): Promise<string[]> {
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const requests = new JsonRequests(kubeConfig);
  const restarted: string[] = [];
  for (const workload of await workloads(apps, namespace)) {
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
