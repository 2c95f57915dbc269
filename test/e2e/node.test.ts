/**
 * The test node is real: pods of images built here run, Services and cluster DNS route between
 * them, Secrets reach pods and follow changes, claims get volumes that outlive their pods.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import {
  AppsV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Container,
  type V1Pod,
} from "@kubernetes/client-node";
import { nodeImage } from "../../src/embedded/node-images.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { nodeSkipReason, useNodeCluster } from "./harness.ts";

const PROBE_IMAGE = "localhost/nats-tenancy/probe:1";
const probeSource = fileURLToPath(new URL("./fixtures/probe.ts", import.meta.url));
const { natsServers } = await ensureToolchain();

function probeContainer(extra: Partial<V1Container> = {}): V1Container {
  return {
    name: "probe",
    image: PROBE_IMAGE,
    imagePullPolicy: "Never",
    ports: [{ containerPort: 8080 }],
    readinessProbe: { httpGet: { path: "/", port: 8080 }, periodSeconds: 1 },
    ...extra,
  };
}

/** Asks a probe pod something over its pod IP (the test process sits on the node's bridge). */
async function ask(pod: V1Pod, path: string): Promise<string> {
  const response = await fetch(`http://${pod.status?.podIP ?? ""}:8080${path}`, {
    signal: AbortSignal.timeout(5000),
  });
  const body = await response.text();
  assert.equal(response.status, 200, `${path} on ${pod.metadata?.name ?? "?"}: ${body}`);
  return body;
}

async function readyPod(core: CoreV1Api, namespace: string, name: string): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await waitUntil(
    `pod ${namespace}/${name} ready`,
    async () => {
      pod = await core.readNamespacedPod({ name, namespace });
      return (
        pod.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false
      );
    },
    { timeoutMs: 60_000 },
  );
  if (!pod) throw new Error("unreachable");
  return pod;
}

async function podsOf(core: CoreV1Api, namespace: string, selector: string): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace, labelSelector: selector })).items;
}

async function createNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
}

describe("a real node", { skip: nodeSkipReason() }, () => {
  const cluster = useNodeCluster({
    images: [
      nodeImage(PROBE_IMAGE, [{ source: probeSource, path: "/app/probe.ts" }], ["/app/probe.ts"]),
    ],
  });
  const clients = (): { core: CoreV1Api; apps: AppsV1Api; kc: KubeConfig } => {
    const kc = cluster().kubeConfig();
    return { core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), kc };
  };

  test("the node is Ready and runs a Deployment of a Node.js image built here; its log is read through the API", async () => {
    const { core, apps, kc } = clients();
    const node = await core.readNode({ name: cluster().nodeName });
    assert.ok(node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"));
    process.stderr.write(`node start timings (s): ${JSON.stringify(cluster().timings)}\n`);
    await createNamespace(kc, "deploy");
    const labels = { app: "probe" };
    const created = Date.now();
    await apps.createNamespacedDeployment({
      namespace: "deploy",
      body: {
        metadata: { name: "probe" },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: { metadata: { labels }, spec: { containers: [probeContainer()] } },
        },
      },
    });
    await waitUntil(
      "Deployment probe available",
      async () => {
        const d = await apps.readNamespacedDeployment({ name: "probe", namespace: "deploy" });
        return d.status?.availableReplicas === 2;
      },
      { timeoutMs: 60_000 },
    );
    process.stderr.write(`2-replica Deployment available after ${Date.now() - created} ms\n`);
    const pods = await podsOf(core, "deploy", "app=probe");
    assert.equal(pods.length, 2);
    for (const pod of pods) {
      const name = pod.metadata?.name ?? "";
      const log = await core.readNamespacedPodLog({ name, namespace: "deploy" });
      assert.match(log, new RegExp(`probe started on ${name} with node v24\\.`));
      assert.equal(await ask(pod, "/"), name);
    }
  });

  test("a ClusterIP Service and cluster DNS take one pod to another", async () => {
    const { core, kc } = clients();
    await createNamespace(kc, "svc");
    for (const name of ["client", "server"]) {
      await core.createNamespacedPod({
        namespace: "svc",
        body: {
          metadata: { name, labels: { role: name } },
          spec: { containers: [probeContainer()] },
        },
      });
    }
    await core.createNamespacedService({
      namespace: "svc",
      body: {
        metadata: { name: "server" },
        spec: { selector: { role: "server" }, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    const client = await readyPod(core, "svc", "client");
    await readyPod(core, "svc", "server");
    const service = await core.readNamespacedService({ name: "server", namespace: "svc" });
    const dnsName = "server.svc.svc.cluster.local";
    assert.equal(await ask(client, `/lookup?name=${dnsName}`), service.spec?.clusterIP);
    await waitUntil(
      "the Service answers from the client pod",
      async () => (await ask(client, `/fetch?url=http://${dnsName}/`)) === "200 server",
      { timeoutMs: 30_000 },
    );
    // Names outside the cluster get no answer: no query leaves the machine.
    const outside = await fetch(
      `http://${client.status?.podIP ?? ""}:8080/lookup?name=example.com`,
    );
    assert.equal(outside.status, 500);
    assert.match(await outside.text(), /ENOTFOUND/);
  });

  for (const server of natsServers) {
    test(`a 3-pod nats-server ${server.label} StatefulSet forms its route mesh by DNS names`, async () => {
      const { core, apps, kc } = clients();
      const namespace = `nats-${server.label.replaceAll(".", "-")}`;
      await createNamespace(kc, namespace);
      const labels = { app: "nats" };
      await core.createNamespacedService({
        namespace,
        body: {
          metadata: { name: "nats" },
          spec: {
            clusterIP: "None",
            publishNotReadyAddresses: true,
            selector: labels,
            ports: [
              { name: "client", port: 4222 },
              { name: "cluster", port: 6222 },
              { name: "monitor", port: 8222 },
            ],
          },
        },
      });
      const routes = [0, 1, 2]
        .map((i) => `nats://nats-${i}.nats.${namespace}.svc.cluster.local:6222`)
        .join(",");
      const started = Date.now();
      await apps.createNamespacedStatefulSet({
        namespace,
        body: {
          metadata: { name: "nats" },
          spec: {
            serviceName: "nats",
            replicas: 3,
            podManagementPolicy: "Parallel",
            selector: { matchLabels: labels },
            template: {
              metadata: { labels },
              spec: {
                containers: [
                  {
                    name: "nats",
                    image: cluster().images.natsServers[server.label] ?? "",
                    imagePullPolicy: "Never",
                    env: [
                      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                    ],
                    args: [
                      "--name=$(POD_NAME)",
                      "--http_port=8222",
                      "--cluster_name=mesh",
                      "--cluster=nats://0.0.0.0:6222",
                      `--routes=${routes}`,
                    ],
                    readinessProbe: { httpGet: { path: "/healthz", port: 8222 }, periodSeconds: 1 },
                  },
                ],
              },
            },
          },
        },
      });
      interface Routez {
        num_routes: number;
        routes: { remote_name?: string }[];
      }
      await waitUntil(
        "every nats pod routes to both others",
        async () => {
          const pods = await podsOf(core, namespace, "app=nats");
          if (pods.length !== 3 || pods.some((p) => !p.status?.podIP)) return false;
          for (const pod of pods) {
            const response = await fetch(`http://${pod.status?.podIP ?? ""}:8222/routez`);
            const routez = (await response.json()) as Routez;
            const peers = new Set(routez.routes.map((r) => r.remote_name));
            const others = pods
              .map((p) => p.metadata?.name)
              .filter((n) => n !== pod.metadata?.name);
            if (!others.every((o) => peers.has(o))) return false;
          }
          return true;
        },
        { timeoutMs: 60_000 },
      );
      process.stderr.write(
        `nats ${server.label}: full mesh ${Date.now() - started} ms after create\n`,
      );
      const varz = (await (
        await fetch(
          `http://${(await podsOf(core, namespace, "app=nats"))[0]?.status?.podIP ?? ""}:8222/varz`,
        )
      ).json()) as { version: string };
      assert.equal(`v${varz.version}`, server.label);
    });
  }

  test("a pod reads a Secret through secretKeyRef and a volume, and the file follows a change", async () => {
    const { core, kc } = clients();
    await createNamespace(kc, "secret");
    await core.createNamespacedSecret({
      namespace: "secret",
      body: { metadata: { name: "creds" }, stringData: { password: "first" } },
    });
    await core.createNamespacedPod({
      namespace: "secret",
      body: {
        metadata: { name: "reader" },
        spec: {
          containers: [
            probeContainer({
              env: [
                {
                  name: "PASSWORD",
                  valueFrom: { secretKeyRef: { name: "creds", key: "password" } },
                },
              ],
              volumeMounts: [{ name: "creds", mountPath: "/creds", readOnly: true }],
            }),
          ],
          volumes: [{ name: "creds", secret: { secretName: "creds" } }],
        },
      },
    });
    const pod = await readyPod(core, "secret", "reader");
    assert.equal(await ask(pod, "/env?name=PASSWORD"), "first");
    assert.equal(await ask(pod, "/file?path=/creds/password"), "first");
    const changed = Date.now();
    await core.patchNamespacedSecret({
      name: "creds",
      namespace: "secret",
      body: [
        { op: "replace", path: "/data/password", value: Buffer.from("second").toString("base64") },
      ],
    });
    await waitUntil(
      "the mounted file changed",
      async () => (await ask(pod, "/file?path=/creds/password")) === "second",
      { timeoutMs: 180_000, intervalMs: 250 },
    );
    process.stderr.write(
      `Secret change reached the mounted file after ${Date.now() - changed} ms\n`,
    );
    // A variable is read once, at container start.
    assert.equal(await ask(pod, "/env?name=PASSWORD"), "first");
  });

  test("a claim binds and its data outlives the pod", async () => {
    const { core, kc } = clients();
    await createNamespace(kc, "pvc");
    await core.createNamespacedPersistentVolumeClaim({
      namespace: "pvc",
      body: {
        metadata: { name: "data" },
        spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
      },
    });
    const writer = (): V1Pod => ({
      metadata: { name: "writer" },
      spec: {
        containers: [
          probeContainer({
            env: [{ name: "DATA_FILE", value: "/data/log" }],
            volumeMounts: [{ name: "data", mountPath: "/data" }],
          }),
        ],
        volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data" } }],
      },
    });
    await core.createNamespacedPod({ namespace: "pvc", body: writer() });
    const first = await readyPod(core, "pvc", "writer");
    const claim = await core.readNamespacedPersistentVolumeClaim({
      name: "data",
      namespace: "pvc",
    });
    assert.equal(claim.status?.phase, "Bound");
    const firstUid = first.metadata?.uid;
    await core.deleteNamespacedPod({ name: "writer", namespace: "pvc", gracePeriodSeconds: 0 });
    await waitUntil(
      "the first pod is gone",
      async () => {
        try {
          await core.readNamespacedPod({ name: "writer", namespace: "pvc" });
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 60_000 },
    );
    await core.createNamespacedPod({ namespace: "pvc", body: writer() });
    const second = await readyPod(core, "pvc", "writer");
    assert.notEqual(second.metadata?.uid, firstUid);
    assert.equal(
      await ask(second, "/file?path=/data/log"),
      "written by writer\nwritten by writer\n",
    );
  });
});
