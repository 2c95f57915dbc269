/**
 * Time to issue one ECDSA P-256 leaf certificate from the operator's CA (key generation,
 * signing, PEM export). Prints figures; asserts nothing. Run: node bench/leaf.ts
 */
import { DAY_MS, stepCa, DEFAULT_CA_POLICY } from "../src/ca/authority.ts";
import { ensureLeaf, natsServerLeaf, webhookLeaf } from "../src/ca/leaves.ts";

const { state } = await stepCa(undefined, DEFAULT_CA_POLICY, Date.now(), false);
const specs = {
  "NATS server leaf (3 replicas, 10 SANs)": natsServerLeaf(
    {
      service: "nats",
      headlessService: "nats-headless",
      statefulSet: "nats",
      namespace: "nats-system",
      replicas: 3,
      clusterDomain: "cluster.local",
    },
    90 * DAY_MS,
  ),
  "webhook serving leaf": webhookLeaf("nats-tenancy-webhook", "nats-system", 90 * DAY_MS),
};
for (const [label, spec] of Object.entries(specs)) {
  for (let i = 0; i < 20; i++) await ensureLeaf(undefined, spec, state, Date.now());
  const n = 300;
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await ensureLeaf(undefined, spec, state, Date.now());
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const q = (p: number): string => (times[Math.floor((times.length - 1) * p)] ?? 0).toFixed(2);
  console.log(`${label.padEnd(42)} p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  (${n} issues)`);
}
