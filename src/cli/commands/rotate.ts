/**
 * `rotate`: new credentials for an App's environments, or a new signing key and credentials
 * signed by it, through the annotation the controller answers (see
 * contract/credential-rotation.ts), then what became of it once the controller answered. The old
 * credentials (and key) keep working until no connection uses them.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import {
  ROTATE_ANNOTATION,
  ROTATE_SIGNING_KEY_ANNOTATION,
  rotationValue,
} from "../../contract/credential-rotation.ts";
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
  if (!rotation)
    // A new signing key's user answers no credentials request either.
    return environment.signingKey?.requested !== undefined
      ? "done (new signing key): the replaced credentials are revoked"
      : "never rotated";
  if (rotation.state === "Done")
    return `done (${rotation.requested ?? "renewal"}): the replaced credentials are revoked`;
  // A renewal answers no request; a new signing key's credentials are what it asked for.
  const cause = environment.signingKey?.oldKey
    ? "new signing key"
    : (rotation.requested ?? "renewal");
  return (
    `overlapping (${cause}): new credentials in Secret ${environment.secret}; ` +
    `the replaced ones work until no connection uses them, at the latest ${rotation.revokeBy ?? "soon"}`
  );
}

/** The account's signing key, in a line. */
export function signingKeyLine(environment: EnvironmentStatus): string {
  const held = environment.signingKey;
  if (!held) return "never rotated";
  if (held.oldKey)
    return `${held.key}, new; the replaced ${held.oldKey} leaves with the credentials it signed`;
  const since = held.since ? ` since ${held.since}` : "";
  return `${held.key}${since}${held.rotateAt ? `, replaced at ${held.rotateAt}` : ""}`;
}

export const rotate: Command = {
  summary: "new credentials for an App's environments; the old ones are revoked once unused",
  usage:
    "nats-tenancy rotate APP [--env ENV] [--signing-key] [-n NS] [--no-wait]\n" +
    "  --env ENV        this environment only (default: every environment of the App)\n" +
    "  --signing-key    a new signing key for the account too, which signs the new credentials;\n" +
    "                   the old key leaves once the credentials it signed are unused\n" +
    "  --no-wait        ask, and return without waiting for the controller's answer\n" +
    "Pods that read NATS_CREDENTIALS_FILE again on reconnect need nothing; pods that read\n" +
    "NATS_CREDENTIALS from their environment get the new credentials when restarted.\n" +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    env: { type: "string" },
    "signing-key": { type: "boolean" },
    "no-wait": { type: "boolean" },
  },
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
    const signingKey = values["signing-key"] === true;
    const annotation = signingKey ? ROTATE_SIGNING_KEY_ANNOTATION : ROTATE_ANNOTATION;
    const value = rotationValue(only ? targets : [], new Date().toISOString());
    await cluster.custom.patchNamespacedCustomObject(
      {
        ...APP_RESOURCE,
        namespace,
        name,
        body: { metadata: { annotations: { [annotation]: value } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const what = signingKey ? "a new signing key and new credentials" : "new credentials";
    output.out(`App ${namespace}/${name}: asked for ${what} for ${targets.join(", ")}\n`);
    if (values["no-wait"] === true) return;
    let answered: EnvironmentStatus[] = [];
    try {
      await waitUntil(
        "the controller's answer",
        async () => {
          const app = await readApp(cluster, namespace, name);
          answered = environmentsOf(app, only).filter(
            (e) => (signingKey ? e.signingKey : e.rotation)?.requested === value,
          );
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
    for (const environment of answered) {
      output.out(`${environment.name}: ${rotationLine(environment)}\n`);
      if (signingKey) output.out(`  signing key: ${signingKeyLine(environment)}\n`);
    }
  },
};
