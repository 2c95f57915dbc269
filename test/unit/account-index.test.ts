import assert from "node:assert/strict";
import { test } from "node:test";
import { AccountIndex } from "../../src/accounts/account-index.ts";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { generateOperatorSeeds, loadOperatorIdentity } from "../../src/accounts/identities.ts";
import { accountFields, type SecretStore, type StoreEntry } from "../../src/accounts/key-store.ts";

/** A store holding these entries, each with the data given (none by default). */
function storeOf(entries: Record<string, Record<string, string>>): SecretStore {
  return {
    async *entries(): AsyncIterable<StoreEntry> {
      await Promise.resolve();
      for (const [name, data] of Object.entries(entries)) yield { name, data };
    },
  } as unknown as SecretStore;
}

test("the index counts each stored account once, through adds, repeats and removals", async () => {
  const store = storeOf({
    "nats-account.shop.orders.prod": {},
    "nats-account.shop.orders.test": {},
    "nats-account.web.api.prod": {},
    "nats-tenancy-operator": {},
  });
  const index = await AccountIndex.load(store);
  assert.equal(index.size, 3);
  assert.deepEqual(index.environments("shop", "orders"), ["prod", "test"]);
  index.add("shop", "orders", "prod");
  assert.equal(index.size, 3, "a repeated add counted twice");
  index.remove("shop", "orders", "staging");
  index.remove("nowhere", "x", "prod");
  assert.equal(index.size, 3, "removing what is not there changed the count");
  index.remove("shop", "orders", "prod");
  index.remove("shop", "orders", "test");
  assert.equal(index.size, 1);
  assert.deepEqual(index.apps(), ["web/api"]);
});

test("the index learns each account's public key without losing it to a later add", async () => {
  const store = storeOf({ "nats-account.shop.orders.prod": {} });
  const index = await AccountIndex.load(store);
  assert.deepEqual(index.accounts(), [
    { namespace: "shop", app: "orders", environment: "prod", account: undefined },
  ]);
  index.add("shop", "orders", "prod", "APUBLIC");
  index.add("shop", "orders", "prod");
  index.add("shop", "orders", "test", "ATEST");
  assert.equal(index.size, 2);
  assert.deepEqual(
    index.accounts().map((a) => `${a.environment}=${String(a.account)}`),
    ["prod=APUBLIC", "test=ATEST"],
  );
});

test("loading the index learns each complete stored account's public key from its JWT", async () => {
  const operator = loadOperatorIdentity("test", generateOperatorSeeds());
  const mint = (app: string, environment: string) =>
    mintAppAccount({ namespace: "shop", app, environment, limits: {} }, operator);
  const [prod, web, api] = [mint("orders", "prod"), mint("web", "prod"), mint("web", "dev")];
  const grouped = (environment: string, data: Record<string, string>) =>
    Object.fromEntries(Object.entries(data).map(([k, v]) => [`${environment}.${k}`, v]));
  const index = await AccountIndex.load(
    storeOf({
      "nats-account.shop.orders.prod": accountFields(prod.stored),
      "nats-account.shop.orders.test": { accountJwt: "damaged" },
      "nats-account.shop.orders.staging": { accountJwt: prod.stored.accountJwt },
      "nats-app.shop.web": {
        ...grouped("prod", accountFields(web.stored)),
        ...grouped("dev", accountFields(api.stored)),
        ...grouped("test", { accountJwt: api.stored.accountJwt }),
      },
    }),
  );
  assert.deepEqual(
    index.accounts().map((a) => `${a.app}/${a.environment}=${String(a.account)}`),
    [
      `orders/prod=${prod.publicKey}`,
      "orders/test=undefined",
      "orders/staging=undefined",
      `web/prod=${web.publicKey}`,
      `web/dev=${api.publicKey}`,
      "web/test=undefined",
    ],
  );
});
