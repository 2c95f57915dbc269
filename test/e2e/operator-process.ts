/**
 * The operator as it runs in production, in its own process (`src/cli/main.ts` with flags),
 * against the local stack, and what tests and benchmarks observe it with: its metrics, the
 * API server's audit log (writes made with the operator's own client certificate) and a
 * system-account subscriber counting pushes. Free of node:test so benchmarks can use it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import {
  loadOperatorIdentity,
  type OperatorIdentity,
  type OperatorSeeds,
} from "../../src/accounts/identities.ts";
import { OPERATOR_ENTRY } from "../../src/accounts/key-store.ts";
import type { LocalStack } from "../../src/embedded/local-stack.ts";
import { JsonRequests } from "../../src/kube/json-requests.ts";
import { readSecretData } from "../../src/kube/read-secret.ts";
import { freePort } from "../../src/embedded/ports.ts";
import { ManagedProcess, runCommand } from "../../src/embedded/process.ts";
import { cacheRoot } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import { systemUserCreds } from "./fixtures/system-user.ts";

export const OPERATOR_USER = "nats-tenancy-operator";
const MAIN = join(import.meta.dirname, "../../src/cli/main.ts");
/** The Node.js options the chart runs the operator with, so it runs here as it does there. */
const CHART_NODE_OPTIONS = (
  (
    parseYaml(
      readFileSync(join(import.meta.dirname, "../../deploy/helm/nats-tenancy/values.yaml"), "utf8"),
    ) as { operator?: { nodeOptions?: string } }
  ).operator?.nodeOptions ?? ""
)
  .split(" ")
  .filter(Boolean);

/**
 * The image runs the operator with Node's compile cache filled at build time (see the
 * Dockerfile), so that a process never loads the type stripper: here too, filled the same way
 * (by a `--help` run) before the first operator starts.
 */
const COMPILE_CACHE_ENV = { NODE_COMPILE_CACHE: join(cacheRoot(), "node-compile-cache") };
let compileCacheFilled: Promise<string> | undefined;

export interface RunningOperator {
  process: ManagedProcess;
  healthUrl: string;
  metric: (name: string, labels?: Record<string, string>) => Promise<number>;
  waitReady: () => Promise<void>;
  /** Waits until the queue has been empty for `quietMs` with no reconcile in between. */
  waitSettled: (quietMs?: number) => Promise<void>;
  stop: () => Promise<void>;
}

export interface OperatorFlags {
  resyncSeconds?: number;
  stuckSeconds?: number;
  concurrency?: number;
  identity?: string;
  leaseSeconds?: number;
  logLevel?: string;
  /**
   * The webhook (pods and Apps): where this process serves it, and the URL it registers (one URL per stack,
   * so that a restarted operator finds the registration it wrote unchanged). Off when absent.
   */
  webhook?: { port: number; registeredPort: number };
  /** Options for node itself, such as --cpu-prof for a benchmark. */
  nodeArgs?: string[];
  /** More operator flags (ceilings...). */
  args?: string[];
}

/**
 * A kubeconfig for the operator's own user (so the audit log tells its writes apart) and the
 * identity its bootstrap made, read back from its namespace.
 */
export async function operatorAccess(
  stack: LocalStack,
): Promise<{ kubeconfig: string; identity: OperatorIdentity }> {
  const kubeconfig = await stack.controlPlane.kubeconfigFor(OPERATOR_USER, "system:masters");
  const requests = new JsonRequests(stack.controlPlane.access());
  const seeds = await readSecretData(requests, stack.settings.namespace, OPERATOR_ENTRY);
  if (!seeds) throw new Error(`${OPERATOR_ENTRY} is missing: the bootstrap did not run`);
  const identity = loadOperatorIdentity(
    stack.settings.operatorName,
    seeds as unknown as OperatorSeeds,
  );
  return { kubeconfig, identity };
}

export async function launchOperator(
  stack: LocalStack,
  kubeconfig: string,
  flags: OperatorFlags,
): Promise<RunningOperator> {
  const port = await freePort();
  const identity = flags.identity ?? `operator-${port}`;
  compileCacheFilled ??= runCommand(globalThis.process.execPath, [MAIN, "--help"], {
    env: { ...globalThis.process.env, ...COMPILE_CACHE_ENV },
  });
  await compileCacheFilled;
  const process = ManagedProcess.start({
    name: identity,
    env: { ...globalThis.process.env, ...COMPILE_CACHE_ENV },
    command: globalThis.process.execPath,
    args: [
      ...CHART_NODE_OPTIONS,
      ...(flags.nodeArgs ?? []),
      MAIN,
      `--kubeconfig=${kubeconfig}`,
      `--namespace=${stack.settings.namespace}`,
      `--nats-url=${stack.settings.natsUrls.join(",")}`,
      `--app-nats-url=${stack.settings.appUrls.url}`,
      `--nats-replicas=${String(stack.settings.expectedServers)}`,
      "--loopback-names",
      `--health-address=127.0.0.1:${String(port)}`,
      `--resync-seconds=${String(flags.resyncSeconds ?? 300)}`,
      ...(flags.stuckSeconds ? [`--stuck-seconds=${String(flags.stuckSeconds)}`] : []),
      `--concurrency=${String(flags.concurrency ?? 8)}`,
      `--lease-seconds=${String(flags.leaseSeconds ?? 4)}`,
      `--identity=${identity}`,
      `--log-level=${flags.logLevel ?? "debug"}`,
      ...(flags.webhook
        ? [
            `--webhook-address=127.0.0.1:${String(flags.webhook.port)}`,
            `--webhook-url=https://127.0.0.1:${String(flags.webhook.registeredPort)}/mutate-pods`,
          ]
        : ["--webhook-address=off"]),
      ...(flags.args ?? []),
    ],
    logFile: join(stack.controlPlane.dir, `${identity}.log`),
  });
  const healthUrl = `http://127.0.0.1:${String(port)}`;
  const metricsText = async (): Promise<string> => (await fetch(`${healthUrl}/metrics`)).text();
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    let total = 0;
    for (const line of (await metricsText()).split("\n")) {
      if (!line.startsWith(name) || line.startsWith("#")) continue;
      const match = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!match || match[1] !== name) continue;
      const have = Object.fromEntries(
        (match[2] ?? "")
          .split(",")
          .filter(Boolean)
          .map((pair) => {
            const [k = "", v = ""] = pair.split("=");
            return [k, v.replace(/^"|"$/g, "")];
          }),
      );
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(match[3]);
    }
    return total;
  };
  const waitReady = (): Promise<void> =>
    waitUntil(
      `${identity} ready and leading`,
      async () =>
        (await fetch(`${healthUrl}/readyz`)).status === 200 &&
        (await metric("nats_tenancy_leader")) === 1,
      { timeoutMs: 30_000, processes: [process] },
    );
  const waitSettled = async (quietMs = 1500): Promise<void> => {
    let last = -1;
    let quietSince = Date.now();
    await waitUntil(
      `${identity} settled`,
      async () => {
        const reconciles = await metric("nats_tenancy_reconcile_total");
        const depth = await metric("nats_tenancy_queue_depth");
        if (reconciles !== last || depth > 0) {
          last = reconciles;
          quietSince = Date.now();
          return false;
        }
        return Date.now() - quietSince >= quietMs;
      },
      { timeoutMs: 120_000, processes: [process], intervalMs: 250 },
    );
  };
  return {
    process,
    healthUrl,
    metric,
    waitReady,
    waitSettled,
    stop: async () => {
      await process.stop();
    },
  };
}

interface AuditEvent {
  verb: string;
  stage: string;
  user?: { username?: string };
  objectRef?: {
    resource?: string;
    subresource?: string;
    namespace?: string;
    name?: string;
    apiGroup?: string;
  };
  responseStatus?: { code?: number };
}

/** Ready, and for the App's current generation (not a status left from before a change). */
export function readyAtGeneration(app: AppObject | undefined): boolean {
  const ready = app?.status?.conditions?.find((c) => c.type === "Ready");
  return ready?.status === "True" && ready.observedGeneration === app?.metadata.generation;
}

const WRITE_VERBS = new Set(["create", "update", "patch", "delete", "deletecollection"]);

export interface AuditedRequest {
  verb: string;
  resource: string;
  /** "status" for a status write; empty for the object itself. */
  subresource: string;
  namespace: string;
  name: string;
}

/** Every write `user` made, from the API server's audit log. */
export function auditWrites(path: string, user: string): AuditedRequest[] {
  return auditedRequests(path, user).filter((r) => WRITE_VERBS.has(r.verb));
}

/** Every Secret `user` read one by one. */
export function auditSecretReads(path: string, user: string): AuditedRequest[] {
  return auditedRequests(path, user).filter((r) => r.verb === "get" && r.resource === "secrets");
}

function auditedRequests(path: string, user: string): AuditedRequest[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent)
    .filter(
      (e) =>
        e.stage === "ResponseComplete" &&
        e.user?.username === user &&
        // Leader election renews its Lease every few seconds whatever else happens.
        e.objectRef?.resource !== "leases",
    )
    .map((e) => ({
      verb: e.verb,
      resource: e.objectRef?.resource ?? "",
      subresource: e.objectRef?.subresource ?? "",
      namespace: e.objectRef?.namespace ?? "",
      name: e.objectRef?.name ?? "",
    }));
}

/** A system-account user allowed to listen to the resolver's request subjects. */
export async function countPushes(
  stack: LocalStack,
  identity: OperatorIdentity,
): Promise<{ updates: () => number; deletes: () => number; close: () => Promise<void> }> {
  const creds = systemUserCreds(identity.systemAccount, ["_INBOX.>"], ["$SYS.REQ.CLAIMS.>"]);
  const nc: NatsConnection = await connect({
    servers: stack.nats.tlsUrls,
    authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
    tls: { caFile: stack.nats.caFile },
    name: "push-counter",
  });
  let updates = 0;
  let deletes = 0;
  nc.subscribe("$SYS.REQ.CLAIMS.UPDATE", {
    callback: () => {
      updates++;
    },
  });
  nc.subscribe("$SYS.REQ.CLAIMS.DELETE", {
    callback: () => {
      deletes++;
    },
  });
  await nc.flush();
  return { updates: () => updates, deletes: () => deletes, close: () => nc.close() };
}
