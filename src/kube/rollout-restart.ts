/**
 * Restarts a workload's pods the way `kubectl rollout restart` does: a new annotation on its pod
 * template, which its controller rolls out. The template also records what it was restarted
 * for, so a caller restarts it once per cause.
 */
import { MERGE_PATCH_TYPE, type JsonRequests } from "./json-requests.ts";

/** On a restarted pod template: what it was restarted for. */
export const RESTARTED_FOR_ANNOTATION = "nats-tenancy.io/restarted-for";
/** What `kubectl rollout restart` sets; the same, so tools read it alike. */
const RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt";

export type WorkloadPlural = "deployments" | "statefulsets" | "daemonsets";

/** The path of a namespace's apps/v1 workloads of one kind, or of one of them. */
export function workloadPath(namespace: string, plural: WorkloadPlural, name?: string): string {
  const collection = `/apis/apps/v1/namespaces/${namespace}/${plural}`;
  return name === undefined ? collection : `${collection}/${name}`;
}

export async function rolloutRestart(
  requests: JsonRequests,
  workload: { namespace: string; plural: WorkloadPlural; name: string },
  restartedFor: string,
  nowMs: number,
): Promise<void> {
  await requests.send({
    method: "PATCH",
    path: workloadPath(workload.namespace, workload.plural, workload.name),
    body: {
      spec: {
        template: {
          metadata: {
            annotations: {
              [RESTARTED_AT_ANNOTATION]: new Date(nowMs).toISOString(),
              [RESTARTED_FOR_ANNOTATION]: restartedFor,
            },
          },
        },
      },
    },
    contentType: MERGE_PATCH_TYPE,
  });
}
