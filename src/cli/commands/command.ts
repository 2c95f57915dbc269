/**
 * What every subcommand of the `nats-tenancy` tool shares: its flags (parsed with node's
 * parseArgs, strictly), the caller's cluster as kubectl would find it, and the two kinds of
 * failure, told apart by the exit code (1: it failed, 2: it was asked wrongly).
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import { JsonRequests } from "../../kube/json-requests.ts";
import { kubeConfigAccess } from "../../kube/kube-config.ts";

/** Asked wrongly: exit 2, with the command's usage. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Failed: exit 1, with this message. */
export class CommandError extends Error {
  override name = "CommandError";
}

export interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run: (
    values: Record<string, string | boolean | undefined>,
    positionals: string[],
    output: Output,
  ) => Promise<void>;
}

/** The flags that choose the cluster and namespace, as kubectl has them. */
export const CLUSTER_OPTIONS = {
  kubeconfig: { type: "string" },
  context: { type: "string" },
  namespace: { type: "string", short: "n" },
} as const satisfies Options;

export const CLUSTER_USAGE =
  "  --kubeconfig FILE   kubeconfig (default: KUBECONFIG, ~/.kube/config, in-cluster)\n" +
  "  --context NAME      kubeconfig context\n" +
  "  -n, --namespace NS  namespace (default: the context's, else default)\n";

export function parse(
  command: Command,
  args: string[],
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...command.options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
    return { values: values, positionals };
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

export interface Cluster {
  kubeConfig: KubeConfig;
  /** The same cluster for the operator's own modules (the key store, App and Secret reads). */
  access: ClusterAccess;
  requests: JsonRequests;
  namespace: string;
  core: CoreV1Api;
  custom: CustomObjectsApi;
}

export function connectCluster(values: Record<string, string | boolean | undefined>): Cluster {
  const kubeConfig = new KubeConfig();
  const file = values.kubeconfig;
  if (typeof file === "string") kubeConfig.loadFromFile(file);
  else kubeConfig.loadFromDefault();
  const context = values.context;
  if (typeof context === "string") {
    if (!kubeConfig.getContextObject(context))
      throw new UsageError(`--context ${context}: no such context in the kubeconfig`);
    kubeConfig.setCurrentContext(context);
  }
  const namespace =
    typeof values.namespace === "string"
      ? values.namespace
      : (kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace ?? "default");
  const access = kubeConfigAccess(kubeConfig);
  return {
    kubeConfig,
    access,
    requests: new JsonRequests(access),
    namespace,
    core: kubeConfig.makeApiClient(CoreV1Api),
    custom: kubeConfig.makeApiClient(CustomObjectsApi),
  };
}

export function text(values: Record<string, string | boolean | undefined>, name: string) {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

const DEFAULT_OPERATOR_NAMESPACE = "nats-tenancy-system";

/** For the platform team's commands, which read or write the operator's keys. */
export const OPERATOR_NAMESPACE_OPTION = { "operator-namespace": { type: "string" } } as const;
export const OPERATOR_NAMESPACE_USAGE = `  --operator-namespace NS   where the operator keeps its keys (default ${DEFAULT_OPERATOR_NAMESPACE})\n`;

export function operatorNamespace(values: Record<string, string | boolean | undefined>): string {
  return text(values, "operator-namespace") ?? DEFAULT_OPERATOR_NAMESPACE;
}
