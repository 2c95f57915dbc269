/**
 * `rotate`: new credentials for an App's environments, through the annotation the controller
 * answers (see contract/credential-rotation.ts), then what became of it once the controller
 * answered. The old credentials keep working until no connection uses them.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { ROTATE_ANNOTATION, rotationValue } from "../../contract/credential-rotation.ts";
import { APP_RESOURCE, type EnvironmentStatus } from "../../crds/app.ts";
import { waitUntil } from "../../embedded/wait.ts";
import { environmentsOf, readApp } from "./apps.ts";
import {
  CLUSTER_OPTIONS,
  CLUSTER_USAGE,
  CommandError,
  UsageError,
  connectCluster,
  text,
  type Command,
} from "./command.ts";

/** What an environment's rotation came to, in a line. */
export function rotationLine(environment: EnvironmentStatus): string {
  const rotation = environment.rotation;
  if (!rotation) return "never rotated";
  // A renewal answers no request.
  const cause = rotation.requested ?? "renewal";
  if (rotation.state === "Done") return `done (${cause}): the replaced credentials are revoked`;
  return (
    `overlapping (${cause}): new credentials in Secret ${environment.secret}; ` +
    `the replaced ones work until no connection uses them, at the latest ${rotation.revokeBy ?? "soon"}`
  );
}

export const rotate: Command = {
  summary: "new credentials for an App's environments; the old ones are revoked once unused",
  usage:
    "nats-tenancy rotate APP [--env ENV] [-n NS] [--no-wait]\n" +
    "  --env ENV    this environment only (default: every environment of the App)\n" +
    "  --no-wait    ask, and return without waiting for the controller's answer\n" +
    "Pods that read NATS_CREDENTIALS_FILE again on reconnect need nothing; pods that read\n" +
    "NATS_CREDENTIALS from their environment get the new credentials when restarted.\n" +
    CLUSTER_USAGE,
  options: { ...CLUSTER_OPTIONS, env: { type: "string" }, "no-wait": { type: "boolean" } },
  run: async (values, positionals, output) => {
    const [name, ...extra] = positionals;
    if (!name || extra.length > 0) throw new UsageError("give exactly one APP");
    const cluster = connectCluster(values);
    const { namespace } = cluster;
    const only = text(values, "env");
    const targets = environmentsOf(await readApp(cluster, namespace, name), only).map(
      (e) => e.name,
    );
    if (targets.length === 0)
      throw new CommandError(`App ${namespace}/${name} has no environments with NATS yet`);
    const value = rotationValue(only ? targets : [], new Date().toISOString());
    await cluster.custom.patchNamespacedCustomObject(
      {
        ...APP_RESOURCE,
        namespace,
        name,
        body: { metadata: { annotations: { [ROTATE_ANNOTATION]: value } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    output.out(`App ${namespace}/${name}: asked for new credentials for ${targets.join(", ")}\n`);
    if (values["no-wait"] === true) return;
    let answered: EnvironmentStatus[] = [];
    try {
      await waitUntil(
        "the controller's answer",
        async () => {
          const app = await readApp(cluster, namespace, name);
          answered = environmentsOf(app, only).filter((e) => e.rotation?.requested === value);
          return answered.length === targets.length;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      );
    } catch {
      throw new CommandError(
        `the controller has not answered within a minute (${answered.length} of ${targets.length} environments); ` +
          `see kubectl describe natsapp ${name} -n ${namespace}`,
      );
    }
    for (const environment of answered)
      output.out(`${environment.name}: ${rotationLine(environment)}\n`);
  },
};
