/**
 * Pod webhook latency: AdmissionReviews of a labelled pod (the injecting path, the heaviest) at a
 * fixed rate over TLS on loopback with keep-alive, as the API server sends them; in the same run
 * an empty fastify TLS handler for comparison. The client runs in a worker thread so its work
 * does not queue behind the server's. Prints figures; asserts nothing.
 * Goal: p99 at most 5 ms and at most 1.5x the empty handler.
 *
 * Run: node bench/webhook.ts [--rate 200] [--seconds 10]
 */
import { Worker } from "node:worker_threads";
import { parseArgs } from "node:util";
import Fastify from "fastify";
import pino from "pino";
import { DAY_MS, DEFAULT_CA_POLICY, caBundle, stepCa } from "../src/ca/authority.ts";
import { ensureLeaf, webhookLeaf } from "../src/ca/leaves.ts";
import { decide } from "../src/webhook/pod-injection.ts";
import { MUTATE_PODS_PATH } from "../src/contract/webhook-registration.ts";
import { startWebhookServer } from "../src/webhook/webhook-server.ts";

const { values } = parseArgs({
  options: {
    rate: { type: "string", default: "200" },
    seconds: { type: "string", default: "10" },
  },
});
const rate = Number(values.rate);
const count = rate * Number(values.seconds);

const { state } = await stepCa(undefined, DEFAULT_CA_POLICY, Date.now(), false);
const { leaf } = await ensureLeaf(
  undefined,
  webhookLeaf("nats-tenancy-webhook", "ops", 30 * DAY_MS, true),
  state,
  Date.now(),
);
const excluded = new Set(["kube-system"]);
const webhook = await startWebhookServer({
  host: "127.0.0.1",
  port: 0,
  certificate: leaf,
  decide: (review) =>
    decide(review.pod, review.namespace, excluded, () => ({
      environments: ["prod", "test"],
      secretName: (env) => `orders-${env}-nats`,
    })),
  logger: pino({ level: "silent" }),
});
const empty = Fastify({ https: { cert: leaf.certificatePem, key: leaf.privateKeyPem } });
empty.post(MUTATE_PODS_PATH, () => ({}));
const emptyUrl = await empty.listen({ host: "127.0.0.1", port: 0 });

// A pod as a Deployment creates it: a few containers' worth of spec.
const review = JSON.stringify({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "bench",
    kind: { group: "", version: "v1", kind: "Pod" },
    resource: { group: "", version: "v1", resource: "pods" },
    namespace: "shop",
    operation: "CREATE",
    object: {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        generateName: "orders-6d5f7c9b8-",
        labels: { "nats-tenancy.io/app": "orders", "nats-tenancy.io/environment": "prod" },
        ownerReferences: [
          {
            apiVersion: "apps/v1",
            kind: "ReplicaSet",
            name: "orders-6d5f7c9b8",
            uid: "u",
            controller: true,
          },
        ],
      },
      spec: {
        containers: [
          {
            name: "app",
            image: "registry.example/orders:1.2.3",
            ports: [{ containerPort: 8080 }],
            env: [{ name: "LOG_LEVEL", value: "info" }],
            resources: { requests: { cpu: "100m", memory: "128Mi" } },
          },
          { name: "sidecar", image: "registry.example/proxy:2" },
        ],
        initContainers: [{ name: "migrate", image: "registry.example/orders-migrate:1.2.3" }],
      },
    },
  },
});

const client = `
const { workerData, parentPort } = require("node:worker_threads");
const https = require("node:https");
const { url, ca, body, rate, count } = workerData;
const agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca });
const target = new URL(url);
const send = () => new Promise((resolve, reject) => {
  const start = process.hrtime.bigint();
  const req = https.request({ host: target.hostname, port: target.port, path: "${MUTATE_PODS_PATH}",
    method: "POST", agent, headers: { "content-type": "application/json" } }, (res) => {
    res.resume();
    res.on("end", () => resolve(Number(process.hrtime.bigint() - start) / 1e6));
  });
  req.on("error", reject);
  req.end(body);
});
(async () => {
  for (let i = 0; i < 50; i++) await send();
  const times = [];
  const began = Date.now();
  const pending = [];
  for (let i = 0; i < count; i++) {
    const due = began + (i * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(send().then((ms) => times.push(ms)));
  }
  await Promise.all(pending);
  agent.destroy();
  parentPort.postMessage(times);
})();
`;

function measure(url: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(client, {
      eval: true,
      workerData: { url, ca: caBundle(state), body: review, rate, count },
    });
    worker.once("message", (times: number[]) => {
      resolve(times);
    });
    worker.once("error", reject);
  });
}

function summary(times: number[]): { p50: number; p99: number } {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (p: number): number => sorted[Math.floor((sorted.length - 1) * p)] ?? 0;
  return { p50: at(0.5), p99: at(0.99) };
}

const injected = summary(await measure(webhook.url));
const baseline = summary(await measure(emptyUrl));
const ms = (v: number): string => `${v.toFixed(2)} ms`;
console.log(
  `${String(count)} reviews at ${String(rate)}/s over TLS: webhook p50 ${ms(injected.p50)} p99 ${ms(injected.p99)};` +
    ` empty handler p50 ${ms(baseline.p50)} p99 ${ms(baseline.p99)};` +
    ` p99 ratio ${(injected.p99 / baseline.p99).toFixed(2)}x (goal: p99 <= 5 ms and <= 1.5x)`,
);
await webhook.close();
await empty.close();
