import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { loadOperatorIdentity } from "../../src/accounts/identities.ts";
import {
  KeyStoreError,
  OPERATOR_ENTRY,
  accountEntryName,
  ensureOperatorSeeds,
  forgetAccount,
  loadAccount,
  saveAccount,
} from "../../src/accounts/key-store.ts";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import { useControlPlane } from "./harness.ts";

const NAMESPACE = "nats-tenancy-system";

describe("key store on Kubernetes Secrets (real API server)", () => {
  const controlPlane = useControlPlane();

  const setup = async (): Promise<{ core: CoreV1Api; store: () => KubernetesSecretStore }> => {
    const kc = controlPlane().kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } }).catch(() => undefined);
    return { core, store: () => new KubernetesSecretStore(controlPlane().kubeConfig(), NAMESPACE) };
  };

  test("two replicas starting together end with one operator identity", async () => {
    const { store } = await setup();
    const results = await Promise.all(
      Array.from({ length: 4 }, () => ensureOperatorSeeds(store())),
    );
    for (const seeds of results) assert.deepEqual(seeds, results[0]);
    assert.deepEqual(await ensureOperatorSeeds(store()), results[0]);
  });

  test("account keys round-trip, one Secret per (namespace, app, environment), only in the operator's namespace", async () => {
    const { core, store } = await setup();
    const s = store();
    const operator = loadOperatorIdentity("test", await ensureOperatorSeeds(s));
    // Dashes make these two collide in a naive "<ns>-<app>-<env>" name.
    const a = { namespace: "a-b", app: "c", environment: "prod" };
    const b = { namespace: "a", app: "b-c", environment: "prod" };
    const mintedA = mintAppAccount(a, operator);
    const mintedB = mintAppAccount(b, operator);
    await saveAccount(s, a, mintedA.stored);
    await saveAccount(s, b, mintedB.stored);
    assert.notEqual(accountEntryName(a), accountEntryName(b));
    assert.deepEqual(await loadAccount(s, a), mintedA.stored);
    assert.deepEqual(await loadAccount(s, b), mintedB.stored);
    const again = mintAppAccount(a, operator, await loadAccount(s, a));
    assert.equal(again.changed, false, "restored keys re-mint nothing");

    const secret = await core.readNamespacedSecret({
      name: accountEntryName(a),
      namespace: NAMESPACE,
    });
    assert.equal(secret.type, "Opaque");
    assert.equal(secret.metadata?.labels?.["nats-tenancy.io/keys"], "true");
    assert.ok(
      secret.metadata.managedFields?.some(
        (f) => f.manager === "nats-tenancy" && f.operation === "Apply",
      ),
    );
    assert.deepEqual(
      (await s.list()).sort(),
      [OPERATOR_ENTRY, accountEntryName(b), accountEntryName(a)].sort(),
    );

    // No seed anywhere but the operator's namespace.
    const all = await core.listSecretForAllNamespaces();
    for (const item of all.items) {
      const text = Object.values(item.data ?? {})
        .map((v) => Buffer.from(v, "base64").toString())
        .join("\n");
      if (item.metadata?.namespace !== NAMESPACE) assert.ok(!/\bS[OAU][A-Z2-7]{40,}/.test(text));
    }

    await forgetAccount(s, a);
    assert.equal(await loadAccount(s, a), undefined);
    await forgetAccount(s, a);
  });

  test("a damaged entry is reported, not replaced", async () => {
    const { store } = await setup();
    const s = store();
    const spec = { namespace: "x", app: "broken", environment: "prod" };
    await s.put(accountEntryName(spec), { accountSeed: "SA..." });
    await assert.rejects(
      loadAccount(s, spec),
      (e: unknown) => e instanceof KeyStoreError && /missing signingSeed/.test(e.message),
    );
    assert.deepEqual(await s.get(accountEntryName(spec)), { accountSeed: "SA..." });
  });
});
