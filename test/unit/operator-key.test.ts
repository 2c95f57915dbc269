import assert from "node:assert/strict";
import { test } from "node:test";
import {
  buildOperatorArtifacts,
  loadOperatorIdentity,
  trustedSigningKeysOf,
} from "../../src/accounts/identities.ts";
import { parseJwt } from "../../src/accounts/jwt.ts";
import {
  KeyStoreError,
  OPERATOR_ENTRY,
  ensureOperatorSeeds,
  saveOperatorKeys,
} from "../../src/accounts/key-store.ts";
import { accountFields, appEntryName } from "../../src/accounts/key-store.ts";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import {
  accountSignedBy,
  applyOperatorKeyStep,
  operatorKeyStep,
  type OperatorKeyWorld,
} from "../../src/accounts/operator-key-rotation.ts";
import { MemoryStore } from "./memory-store.ts";

const T = 1_790_000_000_000;

function world(more: Partial<OperatorKeyWorld> = {}): OperatorKeyWorld {
  return {
    request: undefined,
    maxAgeSeconds: 0,
    nowMs: T,
    serversTrust: undefined,
    signedBy: () => Promise.resolve(true),
    ...more,
  };
}

test("a new operator key is trusted first, signs once every server trusts it, and the old one leaves once nothing it signed is stored; the operator JWT changes only twice", async () => {
  const store = new MemoryStore();
  const first = await ensureOperatorSeeds(store);
  const identity = (entry: typeof first) => loadOperatorIdentity("t", entry);
  const artifacts0 = buildOperatorArtifacts(identity(first), {}, T);
  const oldKey = identity(first).signing.publicKey;
  assert.equal(await operatorKeyStep(first, world()), undefined);

  assert.equal(await operatorKeyStep(first, world({ request: "1" })), "introduce");
  const introduced = applyOperatorKeyStep(first, "introduce", { request: "1", nowMs: T });
  await saveOperatorKeys(store, first, introduced);
  assert.deepEqual(await ensureOperatorSeeds(store), introduced);
  const newKey = identity(introduced).nextSigning?.publicKey ?? assert.fail();
  assert.equal(identity(introduced).signing.publicKey, oldKey, "it does not sign yet");
  const artifacts1 = buildOperatorArtifacts(identity(introduced), artifacts0, T + 1000);
  assert.deepEqual(trustedSigningKeysOf(artifacts1.operatorJwt), [oldKey, newKey].sort());
  assert.equal(artifacts1.systemAccountJwt, artifacts0.systemAccountJwt);

  // Until every server runs an operator JWT that trusts it, nothing moves.
  const waiting = world({ request: "1", serversTrust: [oldKey] });
  assert.equal(await operatorKeyStep(introduced, waiting), undefined);
  const trusting = world({ request: "1", serversTrust: [oldKey, newKey], nowMs: T + 2000 });
  assert.equal(await operatorKeyStep(introduced, trusting), "promote");
  const promoted = applyOperatorKeyStep(introduced, "promote", trusting);
  assert.equal(identity(promoted).signing.publicKey, newKey);
  assert.equal(promoted.retiringSigningKey, oldKey);
  const artifacts2 = buildOperatorArtifacts(identity(promoted), artifacts1, T + 2000);
  assert.equal(artifacts2.operatorJwt, artifacts1.operatorJwt, "promoting restarts no server");
  assert.equal(parseJwt(artifacts2.systemAccountJwt).iss, newKey);

  // The old key stays while any account it signed is stored.
  assert.equal(await operatorKeyStep(promoted, world({ request: "1" })), undefined);
  const resigned = world({ request: "1", signedBy: () => Promise.resolve(false) });
  assert.equal(await operatorKeyStep(promoted, resigned), "retire");
  const retired = applyOperatorKeyStep(promoted, "retire", resigned);
  assert.equal(retired.retiringSigningKey, undefined);
  assert.equal(retired.droppedSigningKey, oldKey);
  const artifacts3 = buildOperatorArtifacts(identity(retired), artifacts2, T + 3000);
  assert.deepEqual(trustedSigningKeysOf(artifacts3.operatorJwt), [newKey]);
  // Done once every server runs without it.
  assert.equal(
    await operatorKeyStep(retired, { ...resigned, serversTrust: [oldKey, newKey] }),
    undefined,
  );
  const dropped = { ...resigned, serversTrust: [newKey] };
  assert.equal(await operatorKeyStep(retired, dropped), "forget");
  const done = applyOperatorKeyStep(retired, "forget", dropped);
  assert.equal(done.droppedSigningKey, undefined);
  assert.equal(done.signingRotatedFor, "1");
  // Answered: the same request does not rotate again.
  assert.equal(await operatorKeyStep(done, dropped), undefined);
});

test("a schedule replaces the operator key once it is old; a key of unknown age is counted from now", async () => {
  const store = new MemoryStore();
  const first = await ensureOperatorSeeds(store);
  const schedule = world({ maxAgeSeconds: 86_400 });
  assert.equal(await operatorKeyStep(first, schedule), "count");
  const counted = applyOperatorKeyStep(first, "count", schedule);
  assert.equal(counted.signingSince, T / 1000);
  assert.equal(await operatorKeyStep(counted, world({ maxAgeSeconds: 86_400 })), undefined);
  const later = world({ maxAgeSeconds: 86_400, nowMs: T + 86_400_000 });
  assert.equal(await operatorKeyStep(counted, later), "introduce");
});

test("the operator entry is replaced only as it was read", async () => {
  const store = new MemoryStore();
  const first = await ensureOperatorSeeds(store);
  const introduced = applyOperatorKeyStep(first, "introduce", { request: "1", nowMs: T });
  await saveOperatorKeys(store, first, introduced);
  await assert.rejects(saveOperatorKeys(store, first, introduced), KeyStoreError);
  assert.ok(store.data.get(OPERATOR_ENTRY)?.nextSigningSeed);
});

test("the old key is still in use while a server holds an account it signed, or cannot say", async () => {
  const store = new MemoryStore();
  const first = await ensureOperatorSeeds(store);
  const promoted = applyOperatorKeyStep(
    applyOperatorKeyStep(first, "introduce", { request: "1", nowMs: T }),
    "promote",
    { request: "1", nowMs: T },
  );
  const oldKey = promoted.retiringSigningKey ?? assert.fail();
  const spec = { namespace: "shop", app: "orders", environment: "prod", limits: {} };
  const before = mintAppAccount(spec, loadOperatorIdentity("t", first), undefined, T);
  const after = mintAppAccount(spec, loadOperatorIdentity("t", promoted), before.stored, T + 1000);
  const put = (jwt: typeof before) => {
    const fields = accountFields(jwt.stored);
    store.set(
      appEntryName(spec),
      Object.fromEntries(Object.entries(fields).map(([k, v]) => [`prod.${k}`, v])),
    );
  };
  const servers = (copies: string[]) => ({ lookup: () => Promise.resolve(copies), expected: 3 });
  const { accountJwt: oldJwt } = before.stored;
  const { accountJwt: newJwt } = after.stored;
  put(before);
  assert.equal(await accountSignedBy(store, oldKey, servers([newJwt, newJwt, newJwt])), true);
  put(after);
  assert.equal(await accountSignedBy(store, oldKey, servers([newJwt, oldJwt, newJwt])), true);
  assert.equal(await accountSignedBy(store, oldKey, servers([newJwt, newJwt])), undefined);
  assert.equal(await accountSignedBy(store, oldKey, servers([newJwt, newJwt, newJwt])), false);
});
