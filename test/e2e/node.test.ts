/**
 * The test node is real: pods of images built here run, Services and cluster DNS route between
 * them, Secrets reach pods and follow changes, claims get volumes that outlive their pods.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, test } from "node:test";
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { HOST_NAME_PREFIX, isolationDrops } from "../../src/embedded/node-host.ts";
import { ManagedProcess } from "../../src/embedded/process.ts";
import { ownedTempDir } from "../../src/embedded/tempdir.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { PROBE_IMAGE, probeContainer, probeImage } from "./fixtures/probe-image.ts";
import { useHelm } from "./fixtures/helm.ts";
import { ask, isReady, podsOf, readyPod } from "./fixtures/pods.ts";
import { nodeSkipReason, useNodeCluster } from "./harness.ts";

const { natsServers, helms, kubectl, versions } = await ensureToolchain();
const run = promisify(execFile);

async function createNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name } } });
}

describe("a real node", { skip: nodeSkipReason() }, () => {
  const cluster = useNodeCluster({
    images: [probeImage()],
  });
  const clients = (): { core: CoreV1Api; apps: AppsV1Api; kc: KubeConfig } => {
    const kc = cluster().kubeConfig();
    return { core: kc.makeApiClient(CoreV1Api), apps: kc.makeApiClient(AppsV1Api), kc };
  };

  test("the node is Ready and runs a Deployment of a Node.js image built here; its log is read through the API", async () => {
    const { core, apps, kc } = clients();
    const node = await core.readNode({ name: cluster().nodeName });
    assert.ok(isReady(node));
    assert.equal(node.status?.nodeInfo?.kubeletVersion, versions.kubernetes);
    assert.equal(
      node.status.nodeInfo.containerRuntimeVersion,
      `containerd://${versions.containerd.replace(/^v/, "")}`,
    );
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

  test("kubectl reads the node and its pods' logs with the admin kubeconfig", async () => {
    const { stdout } = await run(kubectl, [
      "--kubeconfig",
      cluster().kubeconfigPath,
      "get",
      "nodes",
      "-o",
      "jsonpath={.items[*].status.nodeInfo.kubeletVersion}",
    ]);
    assert.equal(stdout, versions.kubernetes);
    const logs = await run(kubectl, [
      "--kubeconfig",
      cluster().kubeconfigPath,
      "logs",
      "-n",
      "kube-system",
      "deployment/coredns",
    ]);
    assert.ok(logs.stdout.includes(`CoreDNS-${versions.coredns.replace(/^v/, "")}`), logs.stdout);
  });

  for (const helm of helms) {
    test(`${helm.label} installs a chart with --wait and uninstalls it`, async () => {
      const helmRun = useHelm(helm.path, cluster().kubeconfigPath);
      try {
        const chart = join(helmRun.dir, "chart");
        mkdirSync(join(chart, "templates"), { recursive: true });
        writeFileSync(join(chart, "Chart.yaml"), "apiVersion: v2\nname: probe\nversion: 0.1.0\n");
        writeFileSync(join(chart, "values.yaml"), `image: ${PROBE_IMAGE}\n`);
        writeFileSync(
          join(chart, "templates", "deployment.yaml"),
          JSON.stringify({
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "{{ .Release.Name }}" },
            spec: {
              replicas: 2,
              selector: { matchLabels: { app: "{{ .Release.Name }}" } },
              template: {
                metadata: { labels: { app: "{{ .Release.Name }}" } },
                spec: { containers: [probeContainer({ image: "{{ .Values.image }}" })] },
              },
            },
          }),
        );
        const namespace = helm.label.replaceAll(".", "-");
        const started = Date.now();
        await helmRun.run([
          "install",
          "probe",
          chart,
          "-n",
          namespace,
          "--create-namespace",
          "--wait",
          "--timeout",
          "120s",
        ]);
        const waited = Date.now() - started;
        const { apps } = clients();
        const deployment = await apps.readNamespacedDeployment({ name: "probe", namespace });
        assert.equal(
          deployment.status?.availableReplicas,
          2,
          "--wait returned once both pods were ready",
        );
        const status = await helmRun.run(["status", "probe", "-n", namespace, "-o", "json"]);
        assert.equal(
          (JSON.parse(status.stdout) as { info: { status: string } }).info.status,
          "deployed",
        );
        process.stderr.write(`${helm.label} install --wait: ${waited} ms\n`);
        await helmRun.run(["uninstall", "probe", "-n", namespace, "--wait", "--timeout", "120s"]);
        await assert.rejects(apps.readNamespacedDeployment({ name: "probe", namespace }));
      } finally {
        helmRun.release();
      }
    });
  }

  test("no pod packet leaves the bridge: a listener beyond it that the node reaches gets nothing from a pod", async () => {
    const { core, kc } = clients();
    // "Beyond the bridge" is a network namespace of our own behind a veth pair: if the rule
    // failed, the pod's packets would still stay on this machine.
    const outside = `${HOST_NAME_PREFIX}-outside`;
    const [hostEnd, farEnd] = [`${HOST_NAME_PREFIX}o0`, `${HOST_NAME_PREFIX}o1`];
    const ip = (...args: string[]) => run("ip", args);
    const work = ownedTempDir("outside");
    let listener: ManagedProcess | undefined;
    try {
      await ip("netns", "add", outside);
      await ip("link", "add", hostEnd, "type", "veth", "peer", "name", farEnd, "netns", outside);
      await ip("addr", "add", "10.245.0.1/24", "dev", hostEnd);
      await ip("link", "set", hostEnd, "up");
      await ip("-n", outside, "addr", "add", "10.245.0.2/24", "dev", farEnd);
      await ip("-n", outside, "link", "set", farEnd, "up");
      // A way back for any pod packet that got through, so a leak would complete a connection.
      await ip("-n", outside, "route", "add", "default", "via", "10.245.0.1");
      listener = ManagedProcess.start({
        name: "outside listener",
        command: "ip",
        args: [
          "netns",
          "exec",
          outside,
          process.execPath,
          "-e",
          'require("node:http").createServer((q, r) => { console.log("request from", q.socket.remoteAddress); r.end("outside"); }).listen(8080, "10.245.0.2");',
        ],
        logFile: join(work.dir, "listener.log"),
      });
      await waitUntil(
        "the node reaches the listener",
        async () => (await (await fetch("http://10.245.0.2:8080/")).text()) === "outside",
        { timeoutMs: 10_000, processes: [listener] },
      );
      await createNamespace(kc, "isolation");
      await core.createNamespacedPod({
        namespace: "isolation",
        body: { metadata: { name: "prisoner" }, spec: { containers: [probeContainer()] } },
      });
      const pod = await readyPod(core, "isolation", "prisoner");
      const dropsBefore = isolationDrops();
      const response = await fetch(
        `http://${pod.status?.podIP ?? ""}:8080/fetch?url=http://10.245.0.2:8080/`,
      );
      assert.equal(response.status, 500, await response.text());
      assert.ok(isolationDrops() > dropsBefore, "the rule dropped the pod's packets");
      assert.doesNotMatch(
        listener.tail(),
        /request from 10\.244\./,
        "no request from a pod arrived",
      );
      assert.match(listener.tail(), /request from 10\.245\.0\.1/, "the node's own request did");
    } finally {
      await listener?.stop();
      await ip("netns", "del", outside).catch(() => undefined);
      work.release();
    }
  });
});
