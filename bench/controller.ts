/**
 * The controller at scale on the local stack (real API server, real 3-node NATS cluster, the
 * operator in its own process as in production). Prints figures; asserts nothing.
 *
 * 1. The floor: a plain client creating as many Secrets (of the app Secrets' size) as there
 *    are environments, `--parallel` at a time.
 * 2. N Apps x 2 environments created at once: time until every App is Ready, and the ratio to
 *    the floor (goal: at most 3).
 * 3. A restart over those accounts: time until the new leader is ready and idle, and the API
 *    writes and NATS pushes it made (goal: none).
 *    The drift repair the new term starts with (every server's accounts compared with the
 *    stored ones) runs beside the restart's reconciles: its time is printed (goal: 5 s).
 * 4. Steady state: `--samples` new Apps one after another while 10 changes of existing Apps
 *    a second run in the background; time from create to Ready, p50 and p99 (goals: 100 ms and
 *    500 ms).
 * 5. A plain pooled client issuing writes of the same kinds and count as the operator's in the
 *    burst, with the operator's concurrency: the ratio of all Ready to its time (goal: 1.5).
 * 6. The operator's resident memory, and its CPU time per app-environment during the burst
 *    (from /proc, user + system).
 *
 * The webhook runs in a process of its own, as the chart runs it (new Apps get their finalizer
 * at admission); the operator figures are the controller's.
 * Each run starts a fresh stack; with --runs N the figures are summed up as min/median/max.
 *
 * Run: node bench/controller.ts [--apps 1000] [--runs 3] [--samples 100] [--parallel 16]
 *      [--concurrency 32] [--cpu-prof <dir>] [--node-option <flag>]...
 */
import { readFileSync, readdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api, CustomObjectsApi, type V1Secret } from "@kubernetes/client-node";
import { APP_API_VERSION, APP_KIND, APP_RESOURCE, appPath } from "../src/crds/app.ts";
import { startLocalStack } from "../src/embedded/local-stack.ts";
import { freePort } from "../src/embedded/ports.ts";
import { ensureToolchain } from "../src/embedded/toolchain.ts";
import { waitUntil } from "../src/embedded/wait.ts";
import { createLogger } from "../src/observability/logger.ts";
import { watchApps } from "../src/runtime/informers.ts";
import { kubeConfigAccess } from "../src/kube/kube-config.ts";
import { PooledKubeConfig } from "./pooled-kube-config.ts";
import { createSecret } from "../src/kube/apply-secret.ts";
import { JsonRequests, MERGE_PATCH_TYPE, corePath } from "../src/kube/json-requests.ts";
import {
  OPERATOR_USER,
  auditWrites,
  countPushes,
  launchOperator,
  operatorAccess,
  readyAtGeneration,
  type AuditedRequest,
  type RunningOperator,
} from "../test/e2e/operator-process.ts";

const { values } = parseArgs({
  options: {
    apps: { type: "string", default: "1000" },
    parallel: { type: "string", default: "16" },
    concurrency: { type: "string", default: "32" },
    runs: { type: "string", default: "1" },
    samples: { type: "string", default: "100" },
    /** Writes a CPU profile of each operator process into this directory. */
    "cpu-prof": { type: "string" },
    /** A Node.js option for the controller process (repeatable), e.g. a V8 heap setting. */
    "node-option": { type: "string", multiple: true, default: [] },
  },
});
const APPS = Number(values.apps);
const RUNS = Number(values.runs);
const PARALLEL = Number(values.parallel);
const SAMPLES = Number(values.samples);
/** Background App changes per second during the steady-state phase. */
const CHANGES_PER_SECOND = 10;
const NAMESPACES = 10;
/** How long after the burst the settled RSS is read: V8's memory reducer starts after 8 s idle. */
const SETTLE_MS = 20_000;

/** Runs `task(i)` for i in [0, n) with at most `parallel` in flight. */
async function pool(n: number, parallel: number, task: (i: number) => Promise<unknown>) {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** What the V8 heap and buffers outside it hold, from the operator's metrics. */
async function memoryParts(operator: RunningOperator): Promise<string> {
  const mib = async (name: string) =>
    String(Math.round((await operator.metric(`nats_tenancy_nodejs_${name}`)) / 2 ** 20));
  return (
    `heap in use ${await mib("heap_size_used_bytes")} of ${await mib("heap_size_total_bytes")},` +
    ` external ${await mib("external_memory_bytes")} MiB`
  );
}

function rssMiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${String(pid)}/status`, "utf8"));
  return line?.[1] ? Math.round(Number(line[1]) / 1024) : Number.NaN;
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
  } catch {
    return Number.NaN;
  }
  // Fields after the command name (which may hold spaces) start at the state, field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds of every process on the machine, summed by what it is. */
function cpuByProcess(names: Map<number, string>): Map<string, number> {
  const sums = new Map<string, number>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let name = names.get(pid);
    if (!name) {
      try {
        name = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      } catch {
        continue;
      }
    }
    const seconds = cpuSeconds(pid);
    if (Number.isFinite(seconds)) sums.set(name, (sums.get(name) ?? 0) + seconds);
  }
  return sums;
}

/** The processes that used the most CPU between two readings of cpuByProcess. */
function cpuSpent(before: Map<string, number>, after: Map<string, number>): string {
  return [...after]
    .map(([name, seconds]) => [name, seconds - (before.get(name) ?? 0)] as const)
    .filter(([, seconds]) => seconds >= 0.1)
    .sort((a, b) => b[1] - a[1])
    .map(([name, seconds]) => `${name} ${seconds.toFixed(1)} s`)
    .join(", ");
}

const tools = await ensureToolchain(() => undefined);
const natsServer = tools.natsServers.at(-1);
if (!natsServer) throw new Error("no nats-server");
const natsBinary = natsServer.path;

/** One run's figures, in the units printed. */
interface Figures {
  floorS: number;
  readyS: number;
  ratio: number;
  writesPerEnv: number;
  cpuMsPerEnv: number;
  restartS: number;
  restartWrites: number;
  rssIdleMiB: number;
  rssBurstMiB: number;
  rssSettledMiB: number;
  rssRestartMiB: number;
  /** V8's heap in use: what RSS holds beyond it is the heap's slack, code and buffers. */
  heapRestartMiB: number;
  driftS: number;
  /** All Ready over the time a plain client takes for the same writes. */
  replayRatio: number;
  steadyP50Ms: number;
  steadyP99Ms: number;
}

/** "create secrets 400, patch apps/status 200, ...": what the writes were. */
function byKind(writes: AuditedRequest[]): string {
  const counts = new Map<string, number>();
  for (const { verb, resource, subresource } of writes) {
    const kind = `${verb} ${resource}${subresource ? `/${subresource}` : ""}`;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].map(([kind, n]) => `${kind} ${String(n)}`).join(", ");
}

/** The value at quantile q of sorted values (nearest rank). */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN;
}

/**
 * Issues writes of the same kinds and count as `writes` (Secret creates, Event creates, App
 * status patches) as plain JSON requests, `--concurrency` at a time, and returns how long
 * they took. The Apps whose status is patched are made first, untimed, in a namespace of their
 * own.
 */
async function replay(
  core: CoreV1Api,
  custom: CustomObjectsApi,
  lean: JsonRequests,
  writes: AuditedRequest[],
  payload: string,
): Promise<number> {
  const namespace = "replay";
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  const statusPatches = writes.filter((w) => w.resource === "apps").length;
  await pool(statusPatches, PARALLEL, (i) =>
    custom.createNamespacedCustomObject({
      ...APP_RESOURCE,
      namespace,
      body: {
        apiVersion: APP_API_VERSION,
        kind: APP_KIND,
        metadata: { name: `app-${String(i)}`, namespace },
        spec: { nats: false, environments: ["prod"] },
      },
    }),
  );
  let [secrets, events, statuses] = [0, 0, 0];
  const write = (w: AuditedRequest): Promise<unknown> => {
    if (w.resource === "secrets")
      return createSecret(lean, {
        metadata: { name: `s-${String(secrets++)}`, namespace },
        data: { payload },
      });
    if (w.resource === "events") {
      const n = events++;
      return lean.send({
        method: "POST",
        path: corePath("events", namespace),
        body: {
          metadata: { name: `e-${String(n)}` },
          involvedObject: {
            apiVersion: APP_API_VERSION,
            kind: APP_KIND,
            name: `app-${String(n)}`,
            namespace,
          },
          reason: "AccountCreated",
          message: "NATS accounts of prod, test created on the NATS servers",
          type: "Normal",
          source: { component: "bench" },
        },
      });
    }
    if (w.resource === "apps")
      return lean.send({
        method: "PATCH",
        path: `${appPath(namespace, `app-${String(statuses++)}`)}/status`,
        contentType: MERGE_PATCH_TYPE,
        body: {
          status: {
            conditions: [
              {
                type: "Ready",
                status: "True",
                reason: "Ready",
                message: "2 of 2 environments ready",
                lastTransitionTime: new Date().toISOString(),
                observedGeneration: 1,
              },
            ],
          },
        },
      });
    throw new Error(`the replay has no write like ${w.verb} ${w.resource}`);
  };
  const started = Date.now();
  await pool(writes.length, Number(values.concurrency), (i) => write(writes[i] as AuditedRequest));
  return Date.now() - started;
}

async function run(): Promise<Figures> {
  const stack = await startLocalStack({ toolchain: tools, natsBinary });
  let webhookServer: RunningOperator | undefined;
  try {
    const kc = stack.controlPlane.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `bench-${String(i)}`);
    for (const name of [...namespaces, "floor"])
      await core.createNamespace({ body: { metadata: { name } } });
    const environments = APPS * 2;

    // An app Secret holds a .creds text (~1 KiB) and the CA bundle (~0.7 KiB) besides the URL.
    const payload = Buffer.from("x".repeat(2_600)).toString("base64");
    const floor = async (label: string, create: (secret: V1Secret) => Promise<unknown>) => {
      const start = Date.now();
      await pool(environments, PARALLEL, (i) =>
        create({
          metadata: { name: `${label}-${String(i)}`, namespace: "floor" },
          data: { payload },
        }),
      );
      return Date.now() - start;
    };
    const pooled = new PooledKubeConfig();
    pooled.loadFromFile(stack.controlPlane.kubeconfigPath);
    const pooledCore = pooled.makeApiClient(CoreV1Api);
    const pooledCustom = pooled.makeApiClient(CustomObjectsApi);
    // The lean path the operator's own hot writes take, over pooled connections: the floor.
    // client-node's calls over the same connections are printed beside it.
    const lean = new JsonRequests(kubeConfigAccess(pooled));
    const clientNodeMs = await floor("client-node", (body) =>
      pooledCore.createNamespacedSecret({ namespace: "floor", body }),
    );
    const floorMs = await floor("lean", (body) => createSecret(lean, body));
    console.log(
      `floor: ${String(environments)} Secret creates, ${String(PARALLEL)} at a time: ${seconds(floorMs)}` +
        ` as plain JSON requests (${seconds(clientNodeMs)} through client-node's CoreV1Api),` +
        ` both over pooled connections`,
    );

    const { kubeconfig: operatorKubeconfig, identity } = await operatorAccess(stack);
    // As the chart runs them: the controller registers the webhook, which serves in a process
    // of its own (new Apps get their finalizer there); the figures are the controller's.
    const webhookPort = await freePort();
    const webhook = { port: webhookPort, registeredPort: webhookPort };
    const flags = {
      webhook,
      args: ["--role=controller"],
      concurrency: Number(values.concurrency),
      logLevel: "warn",
      resyncSeconds: 3600,
      nodeArgs: [
        ...values["node-option"],
        ...(values["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${values["cpu-prof"]}`] : []),
      ],
    };
    const first = await launchOperator(stack, operatorKubeconfig, flags);
    await first.waitReady();
    webhookServer = await launchOperator(stack, operatorKubeconfig, {
      identity: "webhook",
      logLevel: "warn",
      webhook,
      args: ["--role=webhook"],
    });
    const { healthUrl, process: webhookProcess } = webhookServer;
    await waitUntil(
      "the webhook serving",
      async () => (await fetch(`${healthUrl}/readyz`)).status === 200,
      { timeoutMs: 60_000, processes: [webhookProcess] },
    );
    const rssIdle = rssMiB(first.process.pid);
    console.log(`operator RSS idle, leading with no App: ${String(rssIdle)} MiB (goal <= 120 MiB)`);

    // Watched, not listed: listing every App each second is load on the API server that grows
    // with the number of Apps and the time they take, and the floor has none of it.
    const ready = new Set<string>();
    const allReady = Promise.withResolvers<undefined>();
    const waiting = new Map<string, () => void>();
    const apps = watchApps({
      cluster: stack.controlPlane.access(),
      label: "bench apps",
      logger: createLogger({ level: "silent" }),
      onChange: (app) => {
        const key = `${app.metadata.namespace}/${app.metadata.name}`;
        if (readyAtGeneration(app)) {
          ready.add(key);
          waiting.get(key)?.();
        } else ready.delete(key);
        if (ready.size === APPS) allReady.resolve(undefined);
      },
    });
    const appBody = (namespace: string, name: string) => ({
      apiVersion: APP_API_VERSION,
      kind: APP_KIND,
      metadata: { name, namespace },
      spec: { nats: true, environments: ["prod", "test"] },
    });
    await apps.start();
    await apps.waitSynced();

    const cpuBefore = cpuSeconds(first.process.pid);
    const gcSeconds = () => first.metric("nats_tenancy_nodejs_gc_duration_seconds_sum");
    const gcBefore = await gcSeconds();
    const roles = new Map([
      [first.process.pid ?? 0, "controller"],
      [webhookProcess.pid ?? 0, "webhook"],
      [process.pid, "benchmark client"],
    ]);
    const machineBefore = cpuByProcess(roles);
    // Only the burst's: the leader's start-up writes (webhook registration, certificates) are not.
    const writesBeforeBurst = auditWrites(stack.controlPlane.auditLog, OPERATOR_USER).length;
    let started = Date.now();
    await pool(APPS, PARALLEL, (i) => {
      const namespace = namespaces[i % NAMESPACES] ?? "";
      return pooledCustom.createNamespacedCustomObject({
        ...APP_RESOURCE,
        namespace,
        body: appBody(namespace, `app-${String(i)}`),
      });
    });
    const createdMs = Date.now() - started;
    await allReady.promise;
    const readyMs = Date.now() - started;
    const firstWriteList = auditWrites(stack.controlPlane.auditLog, OPERATOR_USER).slice(
      writesBeforeBurst,
    );
    const firstWrites = firstWriteList.length;
    const cpuMs = ((cpuSeconds(first.process.pid) - cpuBefore) * 1000) / environments;
    const rssBurst = rssMiB(first.process.pid);
    const machineSpent = cpuSpent(machineBefore, cpuByProcess(roles));
    const burstMemory = await memoryParts(first);
    const gcMs = ((await gcSeconds()) - gcBefore) * 1000;
    console.log(
      `${String(APPS)} Apps x 2 environments: created in ${seconds(createdMs)}, all Ready after ${seconds(readyMs)}` +
        ` (${(readyMs / floorMs).toFixed(2)}x the floor; goal <= 3x); ${String(firstWrites)} API writes` +
        ` (${(firstWrites / environments).toFixed(2)} per environment: ${byKind(firstWriteList)});` +
        ` operator CPU ${cpuMs.toFixed(1)} ms` +
        ` per environment (goal <= 3 ms; garbage collection ${(gcMs / environments).toFixed(2)} ms of it);` +
        ` operator RSS ${String(rssBurst)} MiB (${burstMemory})`,
    );
    console.log(`CPU during the burst, by process: ${machineSpent}`);
    // What a platform engineer's `kubectl top` shows once the burst is over: whether V8's memory
    // reducer, which runs once the process is quiet, gives back the heap the burst grew.
    await first.waitSettled(2000);
    await sleep(SETTLE_MS);
    const rssSettled = rssMiB(first.process.pid);
    console.log(
      `${String(SETTLE_MS / 1000)} s after the burst settled: operator RSS ${String(rssSettled)} MiB` +
        ` (${await memoryParts(first)}; goal <= 256 MiB)`,
    );
    await first.stop();

    const pushes = await countPushes(stack, identity);
    const writesBefore = auditWrites(stack.controlPlane.auditLog, OPERATOR_USER).length;
    started = Date.now();
    const second = await launchOperator(stack, operatorKubeconfig, flags);
    await second.waitReady();
    // Ready and leading comes before the term's loops have listed anything: a quiet queue then
    // is not convergence, so every App must have been looked at first.
    await waitUntil(
      "every App reconciled after the restart",
      async () => (await second.metric("nats_tenancy_reconcile_total")) >= APPS,
      { timeoutMs: 600_000, intervalMs: 100, processes: [second.process] },
    );
    await second.waitSettled(2000);
    // waitSettled ends after 2 s without a reconcile: that quiet time is not convergence.
    const convergedMs = Date.now() - started - 2000;
    const rssRestart = rssMiB(second.process.pid);
    const heapRestart = Math.round(
      (await second.metric("nats_tenancy_nodejs_heap_size_used_bytes")) / 2 ** 20,
    );
    const restartWriteList = auditWrites(stack.controlPlane.auditLog, OPERATOR_USER).slice(
      writesBefore,
    );
    const restartWrites = restartWriteList.length;
    await waitUntil(
      "the term's first drift repair",
      async () => (await second.metric("nats_tenancy_drift_repair_duration_seconds_count")) >= 1,
      { timeoutMs: 120_000, processes: [second.process] },
    );
    const driftS =
      (await second.metric("nats_tenancy_drift_repair_duration_seconds_sum")) /
      (await second.metric("nats_tenancy_drift_repair_duration_seconds_count"));
    console.log(
      `restart over ${String(environments)} accounts: converged in ${seconds(convergedMs)}` +
        ` (process start to idle), ${String(restartWrites)} API writes and` +
        ` ${String(pushes.updates() + pushes.deletes())} NATS pushes (goal: none);` +
        (restartWrites > 0 ? ` writes: ${byKind(restartWriteList)};` : "") +
        ` operator RSS ${String(rssRestart)} MiB (heap in use ${String(heapRestart)} MiB);` +
        ` its drift repair over ${String(environments)} accounts took ${driftS.toFixed(2)} s` +
        ` beside those reconciles (goal <= 5 s)`,
    );
    await pushes.close();

    // Steady state: existing Apps change in the background (each a new limit, so a re-issued
    // account, a push and two Secret writes) while new Apps are created one at a time.
    const changes = { made: 0, failed: 0 };
    const changing = new AbortController();
    const changer = (async () => {
      const start = Date.now();
      for (let k = 0; !changing.signal.aborted; k++) {
        await sleep(Math.max(0, start + (k * 1000) / CHANGES_PER_SECOND - Date.now()));
        const i = k % APPS;
        lean
          .send({
            method: "PATCH",
            path: appPath(namespaces[i % NAMESPACES] ?? "", `app-${String(i)}`),
            contentType: MERGE_PATCH_TYPE,
            body: { spec: { nats: { connections: 500 + (k % 100) } } },
          })
          .then(
            () => changes.made++,
            () => changes.failed++,
          );
      }
    })();
    const latencies: number[] = [];
    for (let j = 0; j < SAMPLES; j++) {
      const namespace = namespaces[j % NAMESPACES] ?? "";
      const name = `new-${String(j)}`;
      const isReady = new Promise<void>((resolve) => waiting.set(`${namespace}/${name}`, resolve));
      const createdAt = performance.now();
      await pooledCustom.createNamespacedCustomObject({
        ...APP_RESOURCE,
        namespace,
        body: appBody(namespace, name),
      });
      await isReady;
      latencies.push(performance.now() - createdAt);
    }
    changing.abort();
    await changer;
    await apps.stop();
    latencies.sort((a, b) => a - b);
    const [p50, p99] = [quantile(latencies, 0.5), quantile(latencies, 0.99)];
    console.log(
      `steady state: ${String(SAMPLES)} new Apps one at a time while ${String(changes.made)}` +
        ` App changes ran (${String(CHANGES_PER_SECOND)}/s, ${String(changes.failed)} refused):` +
        ` create to Ready p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms,` +
        ` max ${(latencies.at(-1) ?? Number.NaN).toFixed(0)} ms (goals <= 100 / 500 ms)`,
    );
    await second.stop();

    // The operator's burst writes again, from a plain pooled client with the operator's
    // concurrency, onto objects of their own (Apps no operator reconciles now).
    const replayMs = await replay(pooledCore, pooledCustom, lean, firstWriteList, payload);
    console.log(
      `a plain pooled client issuing the burst's ${String(firstWrites)} writes` +
        ` (${byKind(firstWriteList)}), ${values.concurrency} at a time: ${seconds(replayMs)};` +
        ` all Ready took ${(readyMs / replayMs).toFixed(2)}x that (goal <= 1.5x)`,
    );
    await pooled.closeConnections();
    return {
      floorS: floorMs / 1000,
      readyS: readyMs / 1000,
      ratio: readyMs / floorMs,
      writesPerEnv: firstWrites / environments,
      cpuMsPerEnv: cpuMs,
      restartS: convergedMs / 1000,
      restartWrites: restartWrites + pushes.updates() + pushes.deletes(),
      rssIdleMiB: rssIdle,
      rssBurstMiB: rssBurst,
      rssSettledMiB: rssSettled,
      rssRestartMiB: rssRestart,
      heapRestartMiB: heapRestart,
      driftS,
      replayRatio: readyMs / replayMs,
      steadyP50Ms: p50,
      steadyP99Ms: p99,
    };
  } finally {
    await webhookServer?.stop();
    await stack.stop();
  }
}

const runs: Figures[] = [];
for (let i = 0; i < RUNS; i++) runs.push(await run());
if (RUNS > 1) {
  const spread = (key: keyof Figures, digits: number): string => {
    const sorted = runs.map((r) => r[key]).sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
    const [min = Number.NaN, max = Number.NaN] = [sorted[0], sorted.at(-1)];
    return [min, median, max].map((v) => v.toFixed(digits)).join(" / ");
  };
  console.log(`${String(RUNS)} runs of ${String(APPS)} Apps x 2 environments, min / median / max:`);
  for (const [label, key, digits] of [
    ["floor (s)", "floorS", 1],
    ["all Ready (s)", "readyS", 1],
    ["ratio to the floor", "ratio", 2],
    ["ratio to a plain client's same writes", "replayRatio", 2],
    ["API writes per environment", "writesPerEnv", 2],
    ["operator CPU per environment (ms)", "cpuMsPerEnv", 1],
    ["restart converged (s)", "restartS", 1],
    ["restart writes + pushes", "restartWrites", 0],
    ["operator RSS idle (MiB)", "rssIdleMiB", 0],
    ["operator RSS when all were Ready (MiB)", "rssBurstMiB", 0],
    ["operator RSS once the burst settled (MiB)", "rssSettledMiB", 0],
    ["operator RSS after the restart (MiB)", "rssRestartMiB", 0],
    ["operator heap in use after the restart (MiB)", "heapRestartMiB", 0],
    ["drift repair at the restart (s)", "driftS", 2],
    ["steady state, new App to Ready p50 (ms)", "steadyP50Ms", 0],
    ["steady state, new App to Ready p99 (ms)", "steadyP99Ms", 0],
  ] as const)
    console.log(`  ${label}: ${spread(key, digits)}`);
}
