import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { generateIdentity, identityToRecipient } from "age-encryption";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { loadOperatorIdentity } from "../../src/accounts/identities.ts";
import {
  BackupError,
  createBackup,
  openBackup,
  restoreBackup,
} from "../../src/backup/key-backup.ts";
import {
  accountFields,
  appEntryName,
  ensureOperatorSeeds,
  noKeys,
  saveAppKeys,
} from "../../src/accounts/key-store.ts";
import { MemoryStore } from "./memory-store.ts";

async function filledStore(): Promise<{ store: MemoryStore; account: string }> {
  const store = new MemoryStore();
  const operator = loadOperatorIdentity("t", await ensureOperatorSeeds(store));
  const minted = mintAppAccount(
    { namespace: "shop", app: "orders", environment: "prod" },
    operator,
  );
  await saveAppKeys(store, noKeys({ namespace: "shop", app: "orders" }), {
    put: new Map([["prod", minted.stored]]),
  });
  store.set("nats-tenancy-ca", { "active.crt": "pem", "active.key": "secret" });
  return { store, account: minted.publicKey };
}

describe("key backup", () => {
  test("sealed for a recipient: a manifest of public keys in clear, every entry back with the identity", async () => {
    const { store, account } = await filledStore();
    const identity = await generateIdentity();
    const file = await createBackup(store, { recipients: [await identityToRecipient(identity)] });
    const text = JSON.stringify(file);
    assert.doesNotMatch(text.replace(file.sealed, ""), /\bS[OAU][A-Z2-7]{50,}|secret|eyJ/);
    const accounts = file.manifest.entries.find((e) => e.kind === "accounts");
    assert.deepEqual(accounts?.publicKeys, [account]);
    assert.deepEqual(accounts.accounts, ["shop/orders/prod"]);
    assert.equal(file.manifest.entries.find((e) => e.kind === "operator")?.publicKeys.length, 2);

    const opened = await openBackup(text, { identity });
    const target = new MemoryStore();
    await restoreBackup(target, opened.entries, false, 1234);
    const marked = new Map(store.data);
    const app = appEntryName({ namespace: "shop", app: "orders" });
    marked.set(app, { ...store.data.get(app), restoredAt: "1234" });
    assert.deepEqual(target.data, marked);
    // The restored account entry is the very account.
    const prod = target.data.get(appEntryName({ namespace: "shop", app: "orders" })) ?? {};
    assert.equal(
      prod["prod.accountSeed"],
      store.data.get("nats-app.shop.orders")?.["prod.accountSeed"],
    );
    assert.ok(
      Object.keys(
        accountFields(
          mintAppAccount(
            { namespace: "a", app: "b", environment: "c" },
            loadOperatorIdentity("t", await ensureOperatorSeeds(store)),
          ).stored,
        ),
      ).length > 0,
    );
  });

  test("a wrong key, a changed manifest or sealed part, and a namespace with keys are refused; nothing is written", async () => {
    const { store } = await filledStore();
    const identity = await generateIdentity();
    const file = await createBackup(store, { recipients: [await identityToRecipient(identity)] });
    const refusal = async (text: string, key: Parameters<typeof openBackup>[1], message: RegExp) =>
      assert.rejects(
        openBackup(text, key),
        (e: unknown) => e instanceof BackupError && message.test(e.message),
      );

    await refusal(
      JSON.stringify(file),
      { identity: await generateIdentity() },
      /wrong passphrase, or not the identity/,
    );
    const manifest = structuredClone(file.manifest);
    manifest.entries[0] = {
      ...manifest.entries[0],
      name: "renamed",
      kind: "other",
      publicKeys: [],
    };
    await refusal(JSON.stringify({ ...file, manifest }), { identity }, /manifest was changed/);
    // The last line of the armor before its end: the payload, past the header.
    const lines = file.sealed.split("\n");
    const at = lines.length - 3;
    const last = lines[at] ?? "";
    lines[at] = `${last.slice(0, 5)}${last[5] === "A" ? "B" : "A"}${last.slice(6)}`;
    await refusal(
      JSON.stringify({ ...file, sealed: lines.join("\n") }),
      { identity },
      /damaged or was changed/,
    );
    await refusal("{}", { identity }, /not a nats-tenancy key backup/);

    const opened = await openBackup(JSON.stringify(file), { identity });
    const occupied = new MemoryStore();
    occupied.set("nats-tenancy-operator", { operatorSeed: "other" });
    const writes = occupied.writes;
    await assert.rejects(
      restoreBackup(occupied, opened.entries, false),
      /already holds keys \(nats-tenancy-operator\).*--force/,
    );
    assert.equal(occupied.writes, writes);
    await restoreBackup(occupied, opened.entries, true);
    assert.deepEqual([...occupied.data.keys()].sort(), [...store.data.keys()].sort());
  });

  test("sealed with a passphrase, opened only with it", async () => {
    const { store } = await filledStore();
    const file = JSON.stringify(await createBackup(store, { passphrase: "correct horse battery" }));
    assert.equal(
      (await openBackup(file, { passphrase: "correct horse battery" })).entries.length,
      3,
    );
    await assert.rejects(
      openBackup(file, { passphrase: "wrong horse battery" }),
      /wrong passphrase/,
    );
  });
});
