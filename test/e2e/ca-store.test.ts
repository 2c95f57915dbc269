import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describe, test } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import { CaCorruptError, DAY_MS, caBundle, type CaPolicy } from "../../src/ca/authority.ts";
import { CA_ENTRY, ensureCa } from "../../src/ca/ca-store.ts";
import { ensureLeaf, webhookLeaf } from "../../src/ca/leaves.ts";
import { applyTlsSecret, tlsSecret } from "../../src/ca/tls-secret.ts";
import { createCa } from "../../src/pki/certificates.ts";
import { useControlPlane } from "./harness.ts";

const NAMESPACE = "nats-tenancy-system";
const policy: CaPolicy = {
  caLifetimeMs: 30 * DAY_MS,
  overlapMs: 2 * DAY_MS,
  commonName: "nats-tenancy CA",
};

describe("the CA in a Secret (real API server)", () => {
  const controlPlane = useControlPlane();
  const store = (): KubernetesSecretStore =>
    new KubernetesSecretStore(controlPlane().access(), NAMESPACE);
  const core = (): CoreV1Api => controlPlane().kubeConfig().makeApiClient(CoreV1Api);

  test("replicas starting together end with one CA, and a restart writes nothing", async () => {
    await core().createNamespace({ body: { metadata: { name: NAMESPACE } } });
    const now = Date.now();
    const results = await Promise.all(
      Array.from({ length: 4 }, () => ensureCa(store(), policy, now, true)),
    );
    const serials = new Set(
      results.map((r) => new X509Certificate(r.state.active.certificatePem).serialNumber),
    );
    assert.equal(serials.size, 1);
    const before = await core().readNamespacedSecret({ name: CA_ENTRY, namespace: NAMESPACE });
    const again = await ensureCa(store(), policy, now + DAY_MS, true);
    assert.deepEqual(again.steps, []);
    const after = await core().readNamespacedSecret({ name: CA_ENTRY, namespace: NAMESPACE });
    assert.equal(after.metadata?.resourceVersion, before.metadata?.resourceVersion);
  });

  test("rotation steps are saved: a new CA appears before the old one expires and both are in the bundle", async () => {
    const later = Date.now() + 21 * DAY_MS;
    const { state, steps } = await ensureCa(store(), policy, later, true);
    assert.deepEqual(steps, ["next-created"]);
    assert.ok(state.next);
    const reloaded = await ensureCa(store(), policy, later, true);
    assert.equal(reloaded.state.next?.certificatePem, state.next.certificatePem);
    assert.equal(caBundle(reloaded.state).match(/BEGIN CERTIFICATE/g)?.length, 2);
  });

  test("the webhook's certificate lands in a kubernetes.io/tls Secret with the bundle as ca.crt", async () => {
    const { state } = await ensureCa(store(), policy, Date.now() + 21 * DAY_MS, true);
    const { leaf } = await ensureLeaf(
      undefined,
      webhookLeaf("nats-tenancy-webhook", NAMESPACE, 30 * DAY_MS),
      state,
      Date.now(),
    );
    await applyTlsSecret(
      controlPlane().access(),
      tlsSecret("nats-tenancy-webhook-tls", NAMESPACE, leaf, caBundle(state)),
    );
    const secret = await core().readNamespacedSecret({
      name: "nats-tenancy-webhook-tls",
      namespace: NAMESPACE,
    });
    assert.equal(secret.type, "kubernetes.io/tls");
    const decode = (key: string): string =>
      Buffer.from(secret.data?.[key] ?? "", "base64").toString();
    const cert = new X509Certificate(decode("tls.crt"));
    assert.equal(
      cert.checkHost("nats-tenancy-webhook.nats-tenancy-system.svc"),
      "nats-tenancy-webhook.nats-tenancy-system.svc",
    );
    assert.ok(cert.verify(new X509Certificate(state.active.certificatePem).publicKey));
    assert.equal(decode("ca.crt"), caBundle(state));
  });

  test("a corrupted CA is reported with the way to regenerate it, and left untouched", async () => {
    const s = store();
    const good = await s.get(CA_ENTRY);
    assert.ok(good);
    const other = await createCa({ commonName: "someone else", lifetimeMs: DAY_MS });
    for (const [label, damage, message] of [
      [
        "bad PEM",
        { "active.crt": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n" },
        /not valid PEM/,
      ],
      ["foreign key", { "active.key": other.privateKeyPem }, /does not match the certificate/],
    ] as const) {
      const broken: Record<string, string> = { ...good, ...damage };
      await s.put(CA_ENTRY, broken);
      await assert.rejects(
        ensureCa(s, policy, Date.now(), true),
        (error: unknown) =>
          error instanceof CaCorruptError &&
          message.test(error.message) &&
          /delete the Secret nats-tenancy-ca/.test(error.message),
        label,
      );
      assert.deepEqual(await s.get(CA_ENTRY), broken, `${label}: not replaced`);
    }
    await s.put(CA_ENTRY, good);
  });
});
