/**
 * `iterapp`: the App an `iterapp.toml` means, printed or server-side applied. Applying over an
 * App that has accounts which the file would remove (NATS off, or an environment gone) says
 * which before it does it, and does it only with --yes: their credentials stop working.
 */
import { readFileSync } from "node:fs";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { APP_RESOURCE, natsRequest } from "../../crds/app.ts";
import { iterappApp, type IterappApp } from "../../crds/iterapp-toml.ts";
import { readAppObject } from "../../contract/app-object.ts";
import {
  CLUSTER_OPTIONS,
  CLUSTER_USAGE,
  CommandError,
  UsageError,
  connectCluster,
  text,
  type Cluster,
  type Command,
} from "./command.ts";

const FIELD_MANAGER = "nats-tenancy-cli";

/** The namespace to print into: the caller's, when a kubeconfig says; else default. */
function namespaceFor(values: Record<string, string | boolean | undefined>): string {
  const explicit = text(values, "namespace");
  if (explicit) return explicit;
  try {
    return connectCluster(values).namespace;
  } catch {
    return "default";
  }
}

/** Environments of the stored App that have accounts the new spec no longer wants. */
async function accountsRemoved(cluster: Cluster, wanted: IterappApp): Promise<string[]> {
  const stored = await readAppObject(
    cluster.requests,
    wanted.metadata.namespace,
    wanted.metadata.name,
  );
  const keeps = natsRequest(wanted.spec) ? wanted.spec.environments : [];
  return (stored?.status?.environments ?? [])
    .filter((e) => e.account !== undefined && !keeps.includes(e.name))
    .map((e) => e.name);
}

export const iterapp: Command = {
  summary: "the App an iterapp.toml means: print it, or apply it with --apply",
  usage:
    "nats-tenancy iterapp [FILE] --app NAME [-n NS] [--environments a,b] [--apply [--yes]] [-o yaml|json]\n" +
    "  FILE                 default ./iterapp.toml\n" +
    "  --app NAME           the App's name\n" +
    "  --environments a,b   instead of the file's (default: prod, test and default_environment)\n" +
    "  --apply              server-side apply it instead of printing it\n" +
    "  --yes                also when that deletes accounts (NATS off, an environment gone)\n" +
    "  -o yaml|json         how to print it (default yaml)\n" +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    app: { type: "string" },
    environments: { type: "string" },
    apply: { type: "boolean" },
    yes: { type: "boolean" },
    output: { type: "string", short: "o" },
  },
  run: async (values, positionals, output) => {
    const [file = "iterapp.toml", ...extra] = positionals;
    if (extra.length > 0) throw new UsageError("give at most one FILE");
    const name = text(values, "app");
    if (!name) throw new UsageError("--app NAME is required");
    const format = text(values, "output") ?? "yaml";
    if (format !== "yaml" && format !== "json")
      throw new UsageError(`-o ${format}: choose yaml or json`);
    let source: string;
    try {
      source = readFileSync(file, "utf8");
    } catch (error) {
      throw new CommandError(
        `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const environments = text(values, "environments")
      ?.split(",")
      .map((e) => e.trim())
      .filter(Boolean);
    const apply = values.apply === true;
    const cluster = apply ? connectCluster(values) : undefined;
    const app = iterappApp({
      text: source,
      file,
      app: name,
      namespace: cluster?.namespace ?? namespaceFor(values),
      ...(environments ? { environments } : {}),
    });
    if (!cluster) {
      output.out(format === "json" ? `${JSON.stringify(app, null, 2)}\n` : stringify(app));
      return;
    }
    const where = `App ${app.metadata.namespace}/${app.metadata.name}`;
    const removed = await accountsRemoved(cluster, app);
    if (removed.length > 0) {
      const what = `deletes the NATS accounts of ${removed.join(", ")} (their credentials stop working)`;
      if (values.yes !== true)
        throw new CommandError(
          `applying ${file} to ${where} ${what}; run again with --yes to do it`,
        );
      output.out(`${where}: this ${what}\n`);
    }
    await cluster.custom.patchNamespacedCustomObject(
      {
        ...APP_RESOURCE,
        namespace: app.metadata.namespace,
        name: app.metadata.name,
        body: app,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
    const nats = natsRequest(app.spec) ? "on" : "off";
    output.out(
      `${where} applied: NATS ${nats}, environments ${app.spec.environments.join(", ")}\n`,
    );
  },
};
