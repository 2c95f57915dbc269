/**
 * The chart's figures on the test node: the operator image's size, `helm install --wait` to
 * Ready, and each pod's memory at idle (after a minute, and with 20 Apps of 2 environments).
 * Needs root (as the node does). Prints figures; asserts nothing.
 *
 * Run: node bench/chart.ts [--apps 20]
 */
import { parseArgs } from "node:util";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { APP_RESOURCE } from "../src/crds/app.ts";
import { startNodeCluster } from "../src/embedded/node-cluster.ts";
import { buildOperatorImage } from "../src/embedded/operator-image.ts";
import { ensureToolchain } from "../src/embedded/toolchain.ts";
import { waitUntil } from "../src/embedded/wait.ts";
import {
  NAMESPACE,
  NATS_VERSION,
  chartImageValues,
  installArgs,
} from "../test/e2e/fixtures/chart.ts";
import { useHelm } from "../test/e2e/fixtures/helm.ts";
import { isReady } from "../test/e2e/fixtures/pods.ts";
import { podRssMiB } from "./pod-memory.ts";

const { values } = parseArgs({ options: { apps: { type: "string", default: "20" } } });
const apps = Number(values.apps);
const tools = await ensureToolchain();
const image = await buildOperatorImage({ log: console.log });
console.log(`operator image archive: ${(image.bytes / 1e6).toFixed(1)} MB (compressed layers)`);

const cluster = await startNodeCluster({ toolchain: tools, archives: [image], log: console.log });
const helm = useHelm(tools.helms.at(-1)?.path ?? tools.helm, cluster.kubeconfigPath);
try {
  const kc = cluster.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const memory = async (label: string): Promise<void> => {
    const pods = (await core.listNamespacedPod({ namespace: NAMESPACE })).items;
    const figures = pods.map(
      (p) => `${p.metadata?.name ?? "?"} ${podRssMiB(p.metadata?.uid ?? "")}`,
    );
    console.log(`RSS (MiB) ${label}: ${figures.join(", ")}`);
  };

  const started = Date.now();
  await helm.run(
    installArgs(chartImageValues(image, cluster.images.natsServers[NATS_VERSION] ?? "")),
  );
  console.log(`helm install --wait: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await new Promise((resolve) => setTimeout(resolve, 60_000));
  await memory("after a minute idle");

  await core.createNamespace({ body: { metadata: { name: "bench" } } });
  const created = Date.now();
  for (let i = 0; i < apps; i++) {
    await custom.createNamespacedCustomObject({
      ...APP_RESOURCE,
      namespace: "bench",
      body: {
        apiVersion: `${APP_RESOURCE.group}/${APP_RESOURCE.version}`,
        kind: "App",
        metadata: { name: `app-${String(i)}` },
        spec: { nats: true, environments: ["prod", "test"] },
      },
    });
  }
  await waitUntil(
    `${String(apps)} Apps Ready`,
    async () => {
      const list = (await custom.listNamespacedCustomObject({
        ...APP_RESOURCE,
        namespace: "bench",
      })) as { items: Parameters<typeof isReady>[0][] };
      return list.items.every(isReady);
    },
    { timeoutMs: 300_000 },
  );
  console.log(
    `${String(apps)} Apps x 2 environments Ready ${((Date.now() - created) / 1000).toFixed(1)} s after the first was created`,
  );
  await new Promise((resolve) => setTimeout(resolve, 30_000));
  await memory(`idle with ${String(apps)} Apps`);
} finally {
  helm.release();
  await cluster.stop();
}
