import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { test } from "node:test";
import { renewalTime } from "../../src/ca/authority.ts";
import { createCa, issueLeaf } from "../../src/pki/certificates.ts";

const HOUR = 60 * 60 * 1000;

test("a leaf carries its SANs and usages, is signed by the CA, and its key matches", async () => {
  const ca = await createCa({ commonName: "test CA", lifetimeMs: 24 * HOUR });
  const leaf = await issueLeaf(ca, {
    commonName: "server",
    dnsNames: ["nats.example.svc", "localhost"],
    ipAddresses: ["127.0.0.1"],
    client: true,
    lifetimeMs: HOUR,
  });
  const caCert = new X509Certificate(ca.certificatePem);
  const cert = new X509Certificate(leaf.certificatePem);
  assert.ok(caCert.ca);
  assert.ok(!cert.ca);
  assert.ok(cert.verify(caCert.publicKey), "signed by the CA");
  assert.ok(cert.checkIssued(caCert));
  assert.equal(cert.checkHost("nats.example.svc"), "nats.example.svc");
  assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
  assert.equal(cert.checkHost("other.example.svc"), undefined);
  assert.deepEqual([...cert.keyUsage].sort(), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.privateKeyPem)));
  assert.equal(createPublicKey(leaf.privateKeyPem).asymmetricKeyDetails?.namedCurve, "prime256v1");
  // Backdated for clock skew, and lives as long as asked.
  const notBefore = new Date(cert.validFrom).getTime();
  const notAfter = new Date(cert.validTo).getTime();
  assert.ok(notBefore < Date.now() - 60_000);
  assert.ok(Math.abs(notAfter - (Date.now() + HOUR)) < 5_000);
});

test("serial numbers are random and positive", async () => {
  const ca = await createCa({ commonName: "test CA", lifetimeMs: HOUR });
  const serials = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const leaf = await issueLeaf(ca, { commonName: `leaf ${i}`, lifetimeMs: HOUR });
    const serial = new X509Certificate(leaf.certificatePem).serialNumber;
    assert.equal(serial.length, 32, serial);
    const first = Number.parseInt(serial.slice(0, 2), 16);
    assert.ok(first >= 1 && first < 0x80, serial);
    serials.add(serial);
  }
  assert.equal(serials.size, 100);
});

test("a client-only certificate for the API server carries its organization", async () => {
  const ca = await createCa({ commonName: "test CA", lifetimeMs: HOUR });
  const admin = await issueLeaf(ca, {
    commonName: "admin",
    organization: "system:masters",
    server: false,
    client: true,
    lifetimeMs: HOUR,
  });
  const cert = new X509Certificate(admin.certificatePem);
  assert.match(cert.subject, /O=system:masters/);
  assert.match(cert.subject, /CN=admin/);
  assert.deepEqual(cert.keyUsage, ["1.3.6.1.5.5.7.3.2"]);
});

test("a short-lived leaf is not due for renewal when issued: its backdate is a tenth of its life at most", async () => {
  const ca = await createCa({ commonName: "test CA", lifetimeMs: HOUR });
  const issued = Date.now();
  const leaf = await issueLeaf(ca, { commonName: "short", lifetimeMs: 120_000 });
  const due = renewalTime(leaf.certificatePem);
  // 2/3 of 132 s from 12 s before issuance: 76 s after it.
  assert.ok(
    Math.abs(due - (issued + 76_000)) < 3_000,
    `due ${String(due - issued)} ms after issue`,
  );
});
