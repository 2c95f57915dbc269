/**
 * The test node's figures: warm start (each milestone), pod start, how long a Secret change
 * takes to reach a mounted file, the components' memory, the stop, and the cache sizes.
 * Needs root (as the node does). Prints figures; asserts nothing.
 *
 * Run: node bench/node.ts [--starts 2] [--samples 5]
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { startNodeCluster, type NodeCluster } from "../src/embedded/node-cluster.ts";
import { cacheRoot, ensureToolchain } from "../src/embedded/toolchain.ts";
import { waitUntil } from "../src/embedded/wait.ts";
import { isReady } from "../test/e2e/fixtures/pods.ts";
import { probeContainer, probeImage } from "../test/e2e/fixtures/probe-image.ts";
import { rssMiB } from "./pod-memory.ts";

const { values } = parseArgs({
  options: { starts: { type: "string", default: "2" }, samples: { type: "string", default: "5" } },
});
const tools = await ensureToolchain();
const images = [probeImage()];

function shimPids(): number[] {
  return execFileSync("pgrep", ["-f", "containerd-shim-runc-v2"], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(Number);
}

async function probePod(core: CoreV1Api, name: string, spec: Partial<V1Pod["spec"]> = {}) {
  await core.createNamespacedPod({
    namespace: "default",
    body: {
      metadata: { name },
      spec: {
        containers: [probeContainer()],
        ...spec,
      },
    },
  });
}

async function readyPod(core: CoreV1Api, name: string): Promise<{ pod: V1Pod; runningMs: number }> {
  const started = Date.now();
  let runningMs = 0;
  let pod: V1Pod | undefined;
  await waitUntil(
    `pod ${name} ready`,
    async () => {
      pod = await core.readNamespacedPod({ name, namespace: "default" });
      if (!runningMs && pod.status?.phase === "Running") runningMs = Date.now() - started;
      return isReady(pod);
    },
    { timeoutMs: 60_000, intervalMs: 25 },
  );
  if (!pod) throw new Error("unreachable");
  return { pod, runningMs };
}

const fmt = (values: number[]): string =>
  `${Math.min(...values)}-${Math.max(...values)} ms (median ${[...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0})`;

let cluster: NodeCluster | undefined;
for (let start = 1; start <= Number(values.starts); start++) {
  const t0 = Date.now();
  cluster = await startNodeCluster({ toolchain: tools, images });
  console.log(
    `start ${start}: ${((Date.now() - t0) / 1000).toFixed(1)} s; milestones (s) ${JSON.stringify(cluster.timings)}`,
  );
  if (start < Number(values.starts)) {
    const s0 = Date.now();
    await cluster.stop();
    console.log(`stop (node idle): ${((Date.now() - s0) / 1000).toFixed(1)} s`);
  }
}
if (!cluster) throw new Error("--starts must be at least 1");
const core = cluster.kubeConfig().makeApiClient(CoreV1Api);

const running: number[] = [];
const ready: number[] = [];
for (let i = 0; i < Number(values.samples); i++) {
  const t0 = Date.now();
  await probePod(core, `start-${i}`);
  const { runningMs } = await readyPod(core, `start-${i}`);
  running.push(runningMs);
  ready.push(Date.now() - t0);
}
console.log(
  `pod create -> Running: ${fmt(running)}; -> Ready (1 s readiness period): ${fmt(ready)}`,
);

await core.createNamespacedSecret({
  namespace: "default",
  body: { metadata: { name: "s" }, stringData: { v: "0" } },
});
await probePod(core, "reader", {
  volumes: [{ name: "s", secret: { secretName: "s" } }],
  containers: [probeContainer({ volumeMounts: [{ name: "s", mountPath: "/s" }] })],
});
const { pod } = await readyPod(core, "reader");
const propagation: number[] = [];
for (let i = 1; i <= Number(values.samples); i++) {
  // Spread the changes over the kubelet's 10 s sync period.
  await new Promise((r) => setTimeout(r, 1000 + Math.random() * 10_000));
  const t0 = Date.now();
  await core.patchNamespacedSecret({
    name: "s",
    namespace: "default",
    body: [{ op: "replace", path: "/data/v", value: Buffer.from(String(i)).toString("base64") }],
  });
  await waitUntil(
    "mounted file changed",
    async () =>
      (await (await fetch(`http://${pod.status?.podIP ?? ""}:8080/file?path=/s/v`)).text()) ===
      String(i),
    { timeoutMs: 180_000, intervalMs: 50 },
  );
  propagation.push(Date.now() - t0);
}
console.log(
  `Secret change -> mounted file: ${fmt(propagation)} over ${propagation.length} changes`,
);

const rss = [...cluster.controlPlane.processes, ...cluster.processes].map(
  (p) => `${p.name} ${rssMiB(p.pid)}`,
);
const shims = shimPids();
console.log(
  `RSS (MiB) with ${shims.length} pods: ${rss.join(", ")}; shims ${shims.map(rssMiB).join("+")}`,
);

const s0 = Date.now();
await cluster.stop();
console.log(`stop (${shims.length} pods): ${((Date.now() - s0) / 1000).toFixed(1)} s`);

const du = (path: string): string =>
  execFileSync("du", ["-sh", path], { encoding: "utf8" }).split("\t")[0] ?? "?";
console.log(
  `cache: binaries ${du(join(cacheRoot(), "bin"))}, image archives ${du(join(cacheRoot(), "images"))}`,
);
