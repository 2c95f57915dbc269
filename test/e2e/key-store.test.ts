import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { loadOperatorIdentity } from "../../src/accounts/identities.ts";
import {
  KeyStoreError,
  OPERATOR_ENTRY,
  accountEntryName,
  accountFields,
  appEntryName,
  ensureOperatorSeeds,
  loadAccount,
  loadAppKeys,
  noKeys,
  saveAppKeys,
} from "../../src/accounts/key-store.ts";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import { useControlPlane } from "./harness.ts";

const NAMESPACE = "nats-tenancy-system";

describe("key store on Kubernetes Secrets (real API server)", () => {
  const controlPlane = useControlPlane();

  const setup = async (): Promise<{ core: CoreV1Api; store: () => KubernetesSecretStore }> => {
    const core = controlPlane().kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } }).catch(() => undefined);
    return { core, store: () => new KubernetesSecretStore(controlPlane().access(), NAMESPACE) };
  };

  test("two replicas starting together end with one operator identity", async () => {
    const { store } = await setup();
    const results = await Promise.all(
      Array.from({ length: 4 }, () => ensureOperatorSeeds(store())),
    );
    for (const seeds of results) assert.deepEqual(seeds, results[0]);
    assert.deepEqual(await ensureOperatorSeeds(store()), results[0]);
  });

  test("account keys round-trip, one Secret per (namespace, app), only in the operator's namespace", async () => {
    const { core, store } = await setup();
    const s = store();
    const operator = loadOperatorIdentity("test", await ensureOperatorSeeds(s));
    // Dashes make these two collide in a naive "<ns>-<app>" name.
    const a = { namespace: "a-b", app: "c" };
    const b = { namespace: "a", app: "b-c" };
    const mint = (ref: typeof a, environment: string) =>
      mintAppAccount({ ...ref, environment }, operator).stored;
    const [aProd, aTest, bProd] = [mint(a, "prod"), mint(a, "test"), mint(b, "prod")];
    const savedA = await saveAppKeys(s, noKeys(a), {
      put: new Map([
        ["prod", aProd],
        ["test", aTest],
      ]),
    });
    assert.ok(savedA);
    assert.ok(await saveAppKeys(s, noKeys(b), { put: new Map([["prod", bProd]]) }));
    assert.notEqual(appEntryName(a), appEntryName(b));
    assert.deepEqual(await loadAccount(s, { ...a, environment: "prod" }), aProd);
    assert.deepEqual(await loadAccount(s, { ...a, environment: "test" }), aTest);
    assert.deepEqual(await loadAccount(s, { ...b, environment: "prod" }), bProd);
    const again = mintAppAccount(
      { ...a, environment: "prod" },
      operator,
      await loadAccount(s, { ...a, environment: "prod" }),
    );
    assert.equal(again.changed, false, "restored keys re-mint nothing");

    const secret = await core.readNamespacedSecret({ name: appEntryName(a), namespace: NAMESPACE });
    assert.equal(secret.type, "Opaque");
    assert.equal(secret.metadata?.labels?.["nats-tenancy.io/keys"], "true");
    assert.ok(secret.metadata.managedFields?.some((f) => f.manager === "nats-tenancy"));
    assert.deepEqual(
      (await s.list()).sort(),
      [OPERATOR_ENTRY, appEntryName(b), appEntryName(a)].sort(),
    );

    // No seed anywhere but the operator's namespace.
    const all = await core.listSecretForAllNamespaces();
    for (const item of all.items) {
      const text = Object.values(item.data ?? {})
        .map((v) => Buffer.from(v, "base64").toString())
        .join("\n");
      if (item.metadata?.namespace !== NAMESPACE) assert.ok(!/\bS[OAU][A-Z2-7]{40,}/.test(text));
    }

    // A copy read before a's last write is stale: it writes nothing.
    const stale = await loadAppKeys(s, a, ["prod", "test"]);
    assert.ok(await saveAppKeys(s, savedA, { drop: ["test"] }));
    assert.equal(await saveAppKeys(s, stale, { drop: ["prod"] }), undefined);
    assert.deepEqual(await loadAccount(s, { ...a, environment: "prod" }), aProd);
    assert.equal(await loadAccount(s, { ...a, environment: "test" }), undefined);
    const current = await loadAppKeys(s, a, ["prod"]);
    assert.equal(await saveAppKeys(s, stale, { drop: ["prod"] }), undefined, "a stale delete");
    assert.ok(await saveAppKeys(s, current, { drop: ["prod"] }));
    assert.deepEqual(
      (await s.list()).sort(),
      [OPERATOR_ENTRY, appEntryName(b)].sort(),
      "an App's entry with no account left stayed",
    );
    // Created meanwhile by someone else: not overwritten.
    assert.equal(await saveAppKeys(s, noKeys(b), { put: new Map([["prod", aProd]]) }), undefined);
    assert.deepEqual(await loadAccount(s, { ...b, environment: "prod" }), bProd);
  });

  test("an account in an entry of its own is read as it is, and moves into its App's entry with the next write", async () => {
    const { store } = await setup();
    const s = store();
    const operator = loadOperatorIdentity("test", await ensureOperatorSeeds(s));
    const ref = { namespace: "old", app: "orders" };
    const prod = mintAppAccount({ ...ref, environment: "prod" }, operator).stored;
    const test_ = mintAppAccount({ ...ref, environment: "test" }, operator).stored;
    await s.put(accountEntryName({ ...ref, environment: "prod" }), accountFields(prod));
    assert.deepEqual(await loadAccount(s, { ...ref, environment: "prod" }), prod);
    const keys = await loadAppKeys(s, ref, ["prod"]);
    assert.deepEqual([...keys.separate], ["prod"]);
    assert.ok(await saveAppKeys(s, keys, { put: new Map([["test", test_]]) }));
    assert.equal(await s.get(accountEntryName({ ...ref, environment: "prod" })), undefined);
    const moved = await loadAppKeys(s, ref, ["prod", "test"]);
    assert.deepEqual(Object.fromEntries(moved.accounts), { prod, test: test_ });
    assert.equal(moved.separate.size, 0);
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
