import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { test } from "node:test";
import { DAY_MS, caBundle, stepCa, type CaPolicy, type CaState } from "../../src/ca/authority.ts";
import { ensureLeaf, natsServerLeaf, reissueReason } from "../../src/ca/leaves.ts";
import type { KeyAndCertificate } from "../../src/pki/certificates.ts";

const policy: CaPolicy = {
  caLifetimeMs: 30 * DAY_MS,
  overlapMs: 2 * DAY_MS,
  commonName: "test CA",
};
const names = {
  service: "nats",
  headlessService: "nats-headless",
  statefulSet: "nats",
  namespace: "nats-system",
  replicas: 3,
  clusterDomain: "cluster.local",
};
const spec = natsServerLeaf(names, 9 * DAY_MS);

function verifies(bundle: string, leaf: KeyAndCertificate): boolean {
  const cert = new X509Certificate(leaf.certificatePem);
  return bundle
    .split(/(?=-----BEGIN CERTIFICATE-----)/)
    .some(
      (pem) =>
        cert.checkIssued(new X509Certificate(pem)) &&
        cert.verify(new X509Certificate(pem).publicKey),
    );
}

test("a full rotation: every bundle a client may hold verifies every leaf a server may present next", async () => {
  const t0 = Date.UTC(2027, 0, 1);
  let state: CaState | undefined;
  let leaf: KeyAndCertificate | undefined;
  const events: string[] = [];
  let previousBundle: string | undefined;
  for (let day = 0; day <= 40; day += 0.5) {
    const now = t0 + day * DAY_MS;
    const leavesCurrent =
      state !== undefined &&
      leaf !== undefined &&
      reissueReason(leaf, spec, state, now) !== "issued by another CA";
    const step = await stepCa(state, policy, now, leavesCurrent);
    if (step.reason) events.push(`${day}:${step.reason}`);
    state = step.state;
    const ensured = await ensureLeaf(leaf, spec, state, now);
    if (ensured.reason && leaf) events.push(`${day}:leaf ${ensured.reason}`);
    leaf = ensured.leaf;
    const bundle = caBundle(state);
    assert.ok(verifies(bundle, leaf), `day ${day}: the current bundle verifies the current leaf`);
    // A client that has not re-read its CA file since the last step still verifies the server.
    if (previousBundle)
      assert.ok(
        verifies(previousBundle, leaf),
        `day ${day}: yesterday's bundle verifies today's leaf`,
      );
    previousBundle = bundle;
    assert.ok(
      new X509Certificate(leaf.certificatePem).validToDate.getTime() > now,
      `day ${day}: the leaf is valid`,
    );
  }
  assert.deepEqual(
    events.filter((e) => !e.includes("due for renewal")),
    [
      "0:created",
      "20:next-created",
      "22:promoted",
      "22:leaf issued by another CA",
      "24:retired-dropped",
      "40:next-created",
    ],
  );
  assert.ok(
    events.some((e) => e.endsWith("leaf due for renewal")),
    "leaves renew at 2/3 of their life",
  );
});

test("leaves carry the Service names, every pod's name, and loopback only when asked", async () => {
  const { state } = await stepCa(undefined, policy, Date.now(), false);
  const { leaf } = await ensureLeaf(undefined, spec, state, Date.now());
  const cert = new X509Certificate(leaf.certificatePem);
  for (const host of [
    "nats",
    "nats.nats-system.svc",
    "nats.nats-system.svc.cluster.local",
    "nats-2.nats-headless.nats-system.svc.cluster.local",
  ]) {
    assert.equal(cert.checkHost(host), host);
  }
  assert.equal(cert.checkIP("127.0.0.1"), undefined);
  const loop = await ensureLeaf(
    undefined,
    natsServerLeaf({ ...names, loopback: true }, DAY_MS),
    state,
    Date.now(),
  );
  assert.equal(new X509Certificate(loop.leaf.certificatePem).checkIP("127.0.0.1"), "127.0.0.1");
  assert.equal(
    reissueReason(leaf, natsServerLeaf({ ...names, replicas: 4 }, DAY_MS), state, Date.now()),
    "names changed",
  );
});

test("external names: the server certificate names them, an address as an address; a changed list reissues it, an unchanged IPv6 address does not", async () => {
  const { state } = await stepCa(undefined, policy, Date.now(), false);
  const external = ["nats.example.test", "10.244.0.1", "FD00::0:1"];
  const exposed = natsServerLeaf({ ...names, external }, DAY_MS);
  const { leaf } = await ensureLeaf(undefined, exposed, state, Date.now());
  const cert = new X509Certificate(leaf.certificatePem);
  assert.equal(cert.checkHost("nats.example.test"), "nats.example.test");
  assert.equal(cert.checkIP("10.244.0.1"), "10.244.0.1");
  assert.equal(cert.checkIP("fd00::1"), "fd00::1");
  assert.equal(cert.checkHost("10.244.0.1"), undefined, "an address is no DNS name");
  assert.equal(reissueReason(leaf, exposed, state, Date.now()), undefined);
  assert.equal(
    reissueReason(
      leaf,
      natsServerLeaf({ ...names, external: ["nats.example.test"] }, DAY_MS),
      state,
      Date.now(),
    ),
    "names changed",
  );
  assert.equal(reissueReason(leaf, spec, state, Date.now()), "names changed", "unexposed");
});
