/**
 * The App reconciler's branches that the e2e tests reach only slowly or not at all, driven
 * through in-memory fakes of its dependencies: the key store, the NATS servers, the API writes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Secret } from "@kubernetes/client-node";
import { generateOperatorSeeds, loadOperatorIdentity } from "../../src/accounts/identities.ts";
import { accountFields, loadAccount } from "../../src/accounts/key-store.ts";
import { MemoryStore } from "./memory-store.ts";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { parseJwt } from "../../src/accounts/jwt.ts";
import { ResolverTimeoutError } from "../../src/accounts/resolver-client.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import {
  ROTATE_ANNOTATION,
  ROTATE_SIGNING_KEY_ANNOTATION,
} from "../../src/contract/credential-rotation.ts";
import { NO_CEILINGS, type Ceilings } from "../../src/accounts/ceilings.ts";
import {
  DEFAULT_CREDENTIAL_POLICY,
  type LifetimePolicy,
} from "../../src/accounts/credential-policy.ts";
import { AccountIndex } from "../../src/accounts/account-index.ts";
import {
  AppReconciler,
  CONFLICT_RECHECK_MS,
  PARTIAL_RECHECK_MS,
  RESTORED_GRACE_MS,
  type AccountServers,
} from "../../src/controller/apps/app-reconciler.ts";
import { FINALIZER } from "../../src/contract/app-object.ts";
import type { AppWrites } from "../../src/controller/apps/app-writes.ts";
import type { AppStatus } from "../../src/crds/app.ts";
import type { EventInput } from "../../src/kube/events.ts";

const identity = loadOperatorIdentity("test", generateOperatorSeeds());

/** Three servers that acknowledge everything while up (`running` of them), and time out while down. */
class FakeServers implements AccountServers {
  readonly accounts = new Map<string, string>();
  down = false;
  running = 3;
  pushes = 0;
  private acks() {
    return ["nats-0", "nats-1", "nats-2"]
      .slice(0, this.running)
      .map((server) => ({ server, code: 200, message: "jwt updated" }));
  }
  push: AccountServers["push"] = (jwt) => {
    if (this.down) return Promise.reject(new ResolverTimeoutError("push", 3, 2, []));
    this.pushes += 1;
    const sub = (
      JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString()) as {
        sub: string;
      }
    ).sub;
    this.accounts.set(sub, jwt);
    return Promise.resolve(this.acks());
  };
  delete: AccountServers["delete"] = (accounts) => {
    if (this.down) return Promise.reject(new ResolverTimeoutError("delete", 3, 2, []));
    for (const account of accounts) this.accounts.delete(account);
    return Promise.resolve(this.acks());
  };
  purgeJetStream: AccountServers["purgeJetStream"] = () => Promise.resolve();
  /** Connections per user public key; a user not listed has none. */
  readonly connections = new Map<string, number>();
  /** Some server does not answer connection listings. */
  userConnectionsUnknown = false;
  userConnections: AccountServers["userConnections"] = (_account, user) =>
    Promise.resolve(
      this.down || this.userConnectionsUnknown ? undefined : (this.connections.get(user) ?? 0),
    );
}

/** The API server as the reconciler sees it: Apps, Secrets (the operator's cached), Events. */
class FakeCluster implements AppWrites {
  readonly apps = new Map<string, AppObject>();
  readonly secrets = new Map<string, V1Secret>();
  readonly events: EventInput[] = [];
  writes = 0;

  app(namespace: string, name: string): AppObject {
    const app = this.apps.get(`${namespace}/${name}`);
    assert.ok(app, `no App ${namespace}/${name}`);
    return app;
  }
  private key(namespace: string | undefined, name: string | undefined): string {
    return `${namespace ?? ""}/${name ?? ""}`;
  }
  createSecret(secret: V1Secret) {
    this.writes += 1;
    const key = this.key(secret.metadata?.namespace, secret.metadata?.name);
    if (this.secrets.has(key)) return Promise.resolve(false);
    this.secrets.set(key, secret);
    return Promise.resolve(true);
  }
  applySecret(secret: V1Secret) {
    this.writes += 1;
    this.secrets.set(this.key(secret.metadata?.namespace, secret.metadata?.name), secret);
    return Promise.resolve();
  }
  deleteSecret(namespace: string, name: string) {
    this.writes += 1;
    this.secrets.delete(this.key(namespace, name));
    return Promise.resolve();
  }
  setFinalizer(app: AppObject, present: boolean) {
    this.writes += 1;
    const stored = this.app(app.metadata.namespace, app.metadata.name);
    const others = (stored.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
    stored.metadata.finalizers = present ? [...others, FINALIZER] : others;
    return Promise.resolve();
  }
  applyStatus(app: AppObject, status: AppStatus) {
    this.writes += 1;
    this.app(app.metadata.namespace, app.metadata.name).status = structuredClone(status);
    return Promise.resolve();
  }
  /** Workloads restarted, as namespace/app/environment@rotation: each once. */
  readonly restarts = new Set<string>();
  restartWorkloads(
    namespace: string,
    target: { app: string; environment: string; rotation: string },
  ) {
    const key = `${namespace}/${target.app}/${target.environment}@${target.rotation}`;
    if (this.restarts.has(key)) return Promise.resolve([]);
    this.writes += 1;
    this.restarts.add(key);
    return Promise.resolve([`Deployment/${target.app}-${target.environment}`]);
  }
  event(_app: AppObject, event: EventInput) {
    this.writes += 1;
    this.events.push(event);
    return Promise.resolve();
  }
}

const ROTATION_OVERLAP_MS = 600_000;

function setup(
  ceilings: Ceilings = NO_CEILINGS,
  lifetime: Partial<LifetimePolicy> = {},
  signingKeyMaxAgeSeconds = 0,
) {
  const store = new MemoryStore();
  const servers = new FakeServers();
  const cluster = new FakeCluster();
  const index = new AccountIndex();
  // The informer's cache holds only the operator's labelled Secrets.
  const ours = (secret: V1Secret | undefined) =>
    secret?.metadata?.labels?.["nats-tenancy.io/app"] ? secret : undefined;
  const ca = { bundle: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n" };
  /** How far the reconciler's clock runs ahead of the real one. */
  const clock = { aheadMs: 0 };
  const reconciler = new AppReconciler({
    identity: () => identity,
    caBundle: () => ca.bundle,
    appUrls: { url: "tls://nats:4222" },
    store,
    index,
    servers: () => servers,
    expectedServers: 3,
    ceilings,
    credentials: {
      rotationOverlapMs: ROTATION_OVERLAP_MS,
      lifetime: { ...DEFAULT_CREDENTIAL_POLICY.lifetime, ...lifetime },
      signingKeyMaxAgeSeconds,
    },
    namespaceApps: (namespace) =>
      [...cluster.apps.values()].filter((app) => app.metadata.namespace === namespace),
    getApp: (namespace, name) => structuredClone(cluster.apps.get(`${namespace}/${name}`)),
    readApp: (namespace, name) =>
      Promise.resolve(structuredClone(cluster.apps.get(`${namespace}/${name}`))),
    getSecret: (namespace, name) => ours(cluster.secrets.get(`${namespace}/${name}`)),
    readSecret: (namespace, name) => Promise.resolve(cluster.secrets.get(`${namespace}/${name}`)),
    writes: cluster,
    scrub: (text) => text,
    onPush: () => undefined,
    linked: () => undefined,
    now: () => Date.now() + clock.aheadMs,
  });
  const addApp = (name: string, spec: unknown, namespace = "shop"): void => {
    cluster.apps.set(`${namespace}/${name}`, {
      apiVersion: "nats-tenancy.io/v1alpha1",
      kind: "App",
      metadata: { name, namespace, uid: `uid-${name}`, generation: 1 },
      spec,
    });
  };
  const condition = (name: string, type: string) =>
    cluster.app("shop", name).status?.conditions?.find((c) => c.type === type);
  return { store, servers, cluster, index, reconciler, addApp, condition, ca, clock };
}

describe("the App reconciler", () => {
  test("a new App gets an account and a Secret per environment; a second run writes nothing", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod", "test"] });
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.servers.accounts.size, 2);
    assert.ok(s.cluster.secrets.has("shop/orders-prod-nats"));
    assert.ok(s.cluster.secrets.has("shop/orders-test-nats"));
    assert.deepEqual(s.cluster.app("shop", "orders").metadata.finalizers, [FINALIZER]);
    assert.equal(s.condition("orders", "Ready")?.status, "True");
    assert.deepEqual(
      s.cluster.events.map((e) => `${e.reason}: ${e.message}`),
      ["AccountCreated: NATS accounts of prod, test created on the NATS servers"],
    );

    const writes = s.cluster.writes;
    const pushes = s.servers.pushes;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.cluster.writes, writes, "an unchanged App was written again");
    assert.equal(s.servers.pushes, pushes, "an unchanged account was pushed again");
  });

  test("an environment as its status and Secret record it reads no keys; what changed since is put right", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod", "test"] });
    await s.reconciler.reconcile("shop/orders");
    const decoded = (key: string) =>
      Buffer.from(
        s.cluster.secrets.get("shop/orders-prod-nats")?.data?.[key] ?? "",
        "base64",
      ).toString("utf8");
    const unchanged = async (why: string) => {
      const { writes } = s.cluster;
      const { pushes } = s.servers;
      s.store.reads = 0;
      assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
      assert.equal(s.store.reads, 0, `${why}: stored keys were read`);
      assert.equal(s.cluster.writes, writes, `${why}: something was written`);
      assert.equal(s.servers.pushes, pushes, `${why}: something was pushed`);
    };
    await unchanged("as created");

    s.ca.bundle = "-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n";
    await s.reconciler.reconcile("shop/orders");
    assert.equal(decoded("ca.crt"), s.ca.bundle);
    await unchanged("after the CA bundle reached the Secrets");

    const secret = s.cluster.secrets.get("shop/orders-prod-nats");
    assert.ok(secret?.data);
    secret.data.NATS_URL = Buffer.from("nats://elsewhere:4222").toString("base64");
    await s.reconciler.reconcile("shop/orders");
    assert.equal(decoded("NATS_URL"), "tls://nats:4222", "an edited Secret was left as it is");
    await unchanged("after the edited Secret was put right");

    const app = s.cluster.app("shop", "orders");
    const revision = app.status?.environments?.[0]?.revision;
    app.spec = { nats: { connections: 5 }, environments: ["prod", "test"] };
    app.metadata.generation = 2;
    const { pushes } = s.servers;
    await s.reconciler.reconcile("shop/orders");
    assert.equal(s.servers.pushes, pushes + 2, "a new limit was not pushed");
    assert.notEqual(s.cluster.app("shop", "orders").status?.environments?.[0]?.revision, revision);
    await unchanged("after the new limit");

    // Keys replaced by hand with another account's: the stored keys decide, not the status.
    const replacement = mintAppAccount(
      { namespace: "shop", app: "orders", environment: "prod", limits: { connections: 5 } },
      identity,
    );
    const entry = s.store.data.get("nats-app.shop.orders") ?? {};
    for (const [key, value] of Object.entries(accountFields(replacement.stored)))
      entry[`prod.${key}`] = value;
    s.store.set("nats-app.shop.orders", entry);
    s.index.add("shop", "orders", "prod", replacement.publicKey);
    await s.reconciler.reconcile("shop/orders");
    assert.equal(
      s.cluster.app("shop", "orders").status?.environments?.[0]?.account,
      replacement.publicKey,
    );
    await unchanged("after the replaced keys");
  });

  test("someone else's Secret in the way: the other environment proceeds, the App looks again later, one Event", async () => {
    const s = setup();
    s.cluster.secrets.set("shop/web-prod-nats", {
      metadata: { name: "web-prod-nats", namespace: "shop" },
      data: { mine: "eWVz" },
    });
    s.addApp("web", { nats: true, environments: ["prod", "test"] });
    const outcome = await s.reconciler.reconcile("shop/web");
    assert.equal(outcome.kind, "requeueAfter");
    assert.equal(outcome.ms, CONFLICT_RECHECK_MS);
    assert.match(outcome.why, /^SecretConflict: Secret shop\/web-prod-nats already exists/);
    assert.deepEqual(s.cluster.secrets.get("shop/web-prod-nats")?.data, { mine: "eWVz" });
    assert.ok(s.cluster.secrets.has("shop/web-test-nats"));
    assert.equal(s.condition("web", "Degraded")?.reason, "SecretConflict");
    const environments = s.cluster.app("shop", "web").status?.environments ?? [];
    assert.deepEqual(
      environments.map((e) => [e.name, e.ready]),
      [
        ["prod", false],
        ["test", true],
      ],
    );
    const warnings = () => s.cluster.events.filter((e) => e.type === "Warning").length;
    assert.equal(warnings(), 1);
    assert.equal((await s.reconciler.reconcile("shop/web")).kind, "requeueAfter");
    assert.equal(warnings(), 1, "the same conflict was announced twice");

    s.cluster.secrets.delete("shop/web-prod-nats");
    assert.deepEqual(await s.reconciler.reconcile("shop/web"), { kind: "done" });
    assert.equal(s.condition("web", "Ready")?.status, "True");
  });

  test("a spec stored before the schema tightened is reported, and working environments keep their accounts", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    await s.reconciler.reconcile("shop/orders");
    const app = s.cluster.app("shop", "orders");
    app.spec = { nats: "yes", environments: ["prod", "Not A Label"] };
    app.metadata.generation = 2;
    const accounts = s.store.data.size;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    const degraded = s.condition("orders", "Degraded");
    assert.ok(degraded);
    assert.equal(degraded.reason, "InvalidSpec");
    assert.match(degraded.message, /spec\.nats: must be true, false, or an object/);
    assert.match(degraded.message, /spec\.environments\[1\]: must be a DNS label/);
    assert.equal(degraded.observedGeneration, 2);
    assert.deepEqual(
      s.cluster.app("shop", "orders").status?.environments?.map((e) => e.name),
      ["prod"],
    );
    assert.equal(s.store.data.size, accounts, "keys were removed");
    assert.equal(s.servers.accounts.size, 1, "the account left the servers");
    assert.ok(s.cluster.secrets.has("shop/orders-prod-nats"));
  });

  test("NATS away for one environment: the other is ready, the App is retried, the status says why", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    await s.reconciler.reconcile("shop/orders");
    s.cluster.app("shop", "orders").spec = { nats: true, environments: ["prod", "test"] };
    s.servers.down = true;
    const outcome = await s.reconciler.reconcile("shop/orders");
    assert.equal(outcome.kind, "retry");
    assert.ok(outcome.error instanceof ResolverTimeoutError);
    assert.equal(s.condition("orders", "Degraded")?.reason, "NatsUnavailable");
    assert.deepEqual(
      s.cluster.app("shop", "orders").status?.environments?.map((e) => [e.name, e.ready]),
      [
        ["prod", true],
        ["test", false],
      ],
    );
    s.servers.down = false;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.ok(s.cluster.secrets.has("shop/orders-test-nats"));
  });

  test("a server down: the account counts once a majority has it, the status says so, and it is pushed again until all three do", async () => {
    const s = setup();
    s.servers.running = 2;
    s.addApp("orders", { nats: true, environments: ["prod"] });
    const outcome = await s.reconciler.reconcile("shop/orders");
    assert.equal(outcome.kind, "requeueAfter");
    assert.equal(outcome.ms, PARTIAL_RECHECK_MS);
    const ready = s.condition("orders", "Ready");
    assert.ok(ready);
    assert.equal(ready.status, "True");
    assert.match(ready.message, /prod on 2 of 3 NATS servers so far/);
    assert.equal(s.condition("orders", "Degraded")?.status, "False");
    assert.equal(s.cluster.app("shop", "orders").status?.environments?.[0]?.servers, 2);

    s.servers.running = 3;
    const pushes = s.servers.pushes;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.servers.pushes, pushes + 1, "the same account pushed again");
    assert.equal(s.cluster.app("shop", "orders").status?.environments?.[0]?.servers, 3);
    assert.equal(s.condition("orders", "Ready")?.message, "1 of 1 environment ready");
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.servers.pushes, pushes + 1, "a complete account was pushed again");
  });

  test("over a ceiling: a new App gets nothing; a working App keeps its account as it is, its Secret kept current", async () => {
    const ceilings: Ceilings = { limits: {} };
    const s = setup(ceilings);
    s.addApp("orders", { nats: { connections: 50 }, environments: ["prod"] });
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    const stored = structuredClone(s.store.data.get("nats-app.shop.orders"));
    assert.ok(stored);
    const pushes = s.servers.pushes;

    ceilings.limits.connections = 10;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    const degraded = s.condition("orders", "Degraded");
    assert.ok(degraded);
    assert.equal(degraded.reason, "OverCeiling");
    assert.match(
      degraded.message,
      /spec\.nats\.connections is 50, over the ceiling of 10 \(--max-connections/,
    );
    assert.deepEqual(s.store.data.get("nats-app.shop.orders"), stored);
    assert.equal(s.servers.pushes, pushes, "the account was pushed with other limits");
    assert.equal(s.cluster.app("shop", "orders").status?.environments?.[0]?.ready, true);
    s.ca.bundle = "-----BEGIN CERTIFICATE-----\nrotated\n-----END CERTIFICATE-----\n";
    await s.reconciler.reconcile("shop/orders");
    const ca = s.cluster.secrets.get("shop/orders-prod-nats")?.data?.["ca.crt"] ?? "";
    assert.match(
      Buffer.from(ca, "base64").toString(),
      /rotated/,
      "the held App's Secret missed the new CA",
    );
    assert.deepEqual(s.store.data.get("nats-app.shop.orders"), stored);

    s.addApp("web", { nats: true, environments: ["prod"] });
    assert.deepEqual(await s.reconciler.reconcile("shop/web"), { kind: "done" });
    assert.equal(s.condition("web", "Degraded")?.reason, "OverCeiling");
    assert.equal(s.store.data.has("nats-app.shop.web"), false);
    assert.equal(s.cluster.secrets.has("shop/web-prod-nats"), false);

    ceilings.limits.connections = 1000;
    assert.deepEqual(await s.reconciler.reconcile("shop/web"), { kind: "done" });
    assert.equal(s.condition("web", "Ready")?.status, "True");
  });

  test("deleting an App waits for its accounts to leave the servers; then keys, Secrets and the finalizer go", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod", "test"] });
    await s.reconciler.reconcile("shop/orders");
    s.cluster.app("shop", "orders").metadata.deletionTimestamp = new Date();
    s.servers.down = true;
    const blocked = await s.reconciler.reconcile("shop/orders");
    assert.equal(blocked.kind, "retry");
    assert.equal(s.condition("orders", "Degraded")?.reason, "DeletionBlocked");
    assert.deepEqual(s.cluster.app("shop", "orders").metadata.finalizers, [FINALIZER]);
    assert.deepEqual(s.index.environments("shop", "orders"), ["prod", "test"]);
    assert.equal(s.servers.accounts.size, 2);

    s.servers.down = false;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.deepEqual(s.cluster.app("shop", "orders").metadata.finalizers, []);
    assert.equal(s.servers.accounts.size, 0);
    assert.equal(s.cluster.secrets.size, 0);
    assert.deepEqual(s.index.environments("shop", "orders"), []);
    assert.deepEqual(
      [...s.store.data.keys()].filter((k) => k.startsWith("nats-")),
      [],
    );
  });

  test("an App's keys are one entry, written once for all its environments; dropping one rewrites it", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod", "test", "dev"] });
    await s.reconciler.reconcile("shop/orders");
    assert.deepEqual([...s.store.data.keys()], ["nats-app.shop.orders"]);
    assert.equal(s.store.writes, 1);
    const accounts = s.cluster.app("shop", "orders").status?.environments?.map((e) => e.account);
    for (const [i, environment] of ["prod", "test", "dev"].entries()) {
      const stored = await loadAccount(s.store, { namespace: "shop", app: "orders", environment });
      assert.equal(parseJwt(stored?.accountJwt ?? "").sub, accounts?.[i], environment);
    }
    s.cluster.app("shop", "orders").spec = { nats: true, environments: ["prod"] };
    await s.reconciler.reconcile("shop/orders");
    assert.equal(s.store.writes, 2);
    assert.deepEqual(
      Object.keys(s.store.data.get("nats-app.shop.orders") ?? {}).map((k) => k.split(".")[0]),
      // The five keys and JWTs, and when the signing key was made.
      Array(6).fill("prod"),
    );
    assert.equal(s.servers.accounts.size, 1);
  });

  test("accounts stored one per entry keep working as they are, and move into the App's entry with its next write", async () => {
    const s = setup();
    const legacy = mintAppAccount(
      { namespace: "shop", app: "orders", environment: "prod", limits: {} },
      identity,
    );
    s.store.set("nats-account.shop.orders.prod", accountFields(legacy.stored));
    s.index.add("shop", "orders", "prod", legacy.publicKey);
    s.addApp("orders", { nats: true, environments: ["prod"] });
    const writes = s.store.writes;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(
      s.cluster.app("shop", "orders").status?.environments?.[0]?.account,
      legacy.publicKey,
    );
    assert.equal(s.store.writes, writes, "keys that were fine as they are were written");

    s.cluster.app("shop", "orders").spec = { nats: true, environments: ["prod", "test"] };
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.deepEqual([...s.store.data.keys()], ["nats-app.shop.orders"]);
    assert.deepEqual(
      await loadAccount(s.store, { namespace: "shop", app: "orders", environment: "prod" }),
      legacy.stored,
    );
    assert.equal(
      s.cluster.app("shop", "orders").status?.environments?.[0]?.account,
      legacy.publicKey,
    );
  });

  test("keys another leader stored meanwhile are never replaced: the next run uses them", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    const theirs = mintAppAccount(
      { namespace: "shop", app: "orders", environment: "prod", limits: {} },
      identity,
    );
    const entry = Object.fromEntries(
      Object.entries(theirs.stored).map(([key, value]) => [`prod.${key}`, value]),
    );
    s.store.set("nats-app.shop.orders", entry);
    const conflict = await s.reconciler.reconcile("shop/orders");
    assert.equal(conflict.kind, "retry");
    assert.equal(s.condition("orders", "Degraded")?.reason, "KeyStoreConflict");
    assert.deepEqual(s.store.data.get("nats-app.shop.orders"), entry);
    assert.equal(s.servers.accounts.size, 0, "an account was pushed without its keys stored");
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(
      s.cluster.app("shop", "orders").status?.environments?.[0]?.account,
      theirs.publicKey,
    );
  });

  test("keys of an App that is gone are orphans, removed from the servers and the store", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    await s.reconciler.reconcile("shop/orders");
    s.cluster.apps.delete("shop/orders");
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.servers.accounts.size, 0);
    assert.deepEqual(s.index.apps(), []);
  });
});

describe("credential rotation", () => {
  const credsOf = (s: ReturnType<typeof setup>, environment: string): string => {
    const secret = s.cluster.secrets.get(`shop/orders-${environment}-nats`);
    return Buffer.from(secret?.data?.["nats.creds"] ?? "", "base64").toString();
  };
  const userOf = (creds: string): string => {
    const jwt = /-----BEGIN NATS USER JWT-----\n([^\n]+)\n/.exec(creds)?.[1] ?? "";
    return parseJwt(jwt).sub;
  };
  const rotationOf = (s: ReturnType<typeof setup>, environment: string) =>
    s.cluster.app("shop", "orders").status?.environments?.find((e) => e.name === environment)
      ?.rotation;
  const revocations = async (s: ReturnType<typeof setup>, environment: string) => {
    const stored = await loadAccount(s.store, { namespace: "shop", app: "orders", environment });
    return parseJwt<{ revocations?: Record<string, number> }>(stored?.accountJwt ?? "").nats
      .revocations;
  };
  const annotate = (s: ReturnType<typeof setup>, value: string) => {
    s.cluster.app("shop", "orders").metadata.annotations = { [ROTATE_ANNOTATION]: value };
  };

  async function rotated() {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod", "test"] });
    await s.reconciler.reconcile("shop/orders");
    const before = { prod: credsOf(s, "prod"), test: credsOf(s, "test") };
    annotate(s, "prod=1");
    s.servers.connections.set(userOf(before.prod), 2);
    const outcome = await s.reconciler.reconcile("shop/orders");
    return { s, before, outcome };
  }

  test("a rotation puts a new user in the Secret and keeps the old one working while it is in use", async () => {
    const { s, before, outcome } = await rotated();
    assert.equal(outcome.kind, "requeueAfter");
    assert.notEqual(userOf(credsOf(s, "prod")), userOf(before.prod));
    assert.equal(credsOf(s, "test"), before.test, "an environment not named was rotated");
    const rotation = rotationOf(s, "prod");
    assert.equal(rotation?.state, "Overlapping");
    assert.equal(rotation.requested, "prod=1");
    assert.equal(rotation.oldUser, userOf(before.prod));
    assert.equal(rotationOf(s, "test"), undefined);
    assert.equal(await revocations(s, "prod"), undefined, "revoked while still in use");
    assert.ok(s.cluster.events.some((e) => e.reason === "CredentialsRotated"));

    // Still in use: nothing changes, nothing is written.
    const writes = s.cluster.writes + s.store.writes;
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    assert.equal(s.cluster.writes + s.store.writes, writes);
  });

  test("the old user is revoked once no connection uses it, and nothing is rotated again", async () => {
    const { s, before } = await rotated();
    const creds = credsOf(s, "prod");
    s.servers.connections.delete(userOf(before.prod));
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.deepEqual(Object.keys((await revocations(s, "prod")) ?? {}), [userOf(before.prod)]);
    const pushed = s.servers.accounts.get(s.index.account("shop", "orders", "prod") ?? "") ?? "";
    assert.ok(
      pushed.includes(".") && JSON.stringify(parseJwt(pushed)).includes(userOf(before.prod)),
    );
    assert.deepEqual(rotationOf(s, "prod"), { requested: "prod=1", state: "Done" });
    const revoked = s.cluster.events.find((e) => e.reason === "CredentialsRevoked");
    assert.equal(revoked?.type, "Normal");
    assert.equal(credsOf(s, "prod"), creds);

    const writes = s.cluster.writes + s.store.writes;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.cluster.writes + s.store.writes, writes, "a settled rotation wrote again");
  });

  test("the longest overlap revokes the old user even while in use, with a warning", async () => {
    const { s, before } = await rotated();
    s.clock.aheadMs = ROTATION_OVERLAP_MS;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.ok(userOf(before.prod) in ((await revocations(s, "prod")) ?? {}));
    const revoked = s.cluster.events.find((e) => e.reason === "CredentialsRevoked");
    assert.equal(revoked?.type, "Warning");
  });

  test("while the servers cannot say, the old user waits for the deadline", async () => {
    const { s } = await rotated();
    s.servers.connections.clear();
    s.servers.userConnectionsUnknown = true;
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    assert.equal(rotationOf(s, "prod")?.state, "Overlapping");
  });

  test("a new rotation during an overlap revokes the first old user at once", async () => {
    const { s, before } = await rotated();
    const second = credsOf(s, "prod");
    annotate(s, "prod=2");
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    assert.deepEqual(Object.keys((await revocations(s, "prod")) ?? {}), [userOf(before.prod)]);
    assert.equal(rotationOf(s, "prod")?.oldUser, userOf(second));
    assert.notEqual(userOf(credsOf(s, "prod")), userOf(second));
  });

  test("an App created with the annotation answers it without a rotation", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    annotate(s, "7");
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.deepEqual(rotationOf(s, "prod"), { requested: "7", state: "Done" });
    assert.ok(!s.cluster.events.some((e) => e.reason === "CredentialsRotated"));
  });
});

describe("signing-key rotation", () => {
  const prodStatus = (s: ReturnType<typeof setup>) =>
    s.cluster.app("shop", "orders").status?.environments?.find((e) => e.name === "prod");
  const pushedKeys = (s: ReturnType<typeof setup>) => {
    const jwt = s.servers.accounts.get(s.index.account("shop", "orders", "prod") ?? "") ?? "";
    return (parseJwt<{ signing_keys?: { key: string }[] }>(jwt).nats.signing_keys ?? []).map(
      (k) => k.key,
    );
  };
  const podsUser = async (s: ReturnType<typeof setup>) => {
    const stored = await loadAccount(s.store, {
      namespace: "shop",
      app: "orders",
      environment: "prod",
    });
    return parseJwt(stored?.userJwt ?? "");
  };

  test("on request: a new key and user, both keys pushed while the old user is in use, then the old key leaves", async () => {
    const s = setup();
    s.addApp("orders", { nats: true, environments: ["prod"] });
    await s.reconciler.reconcile("shop/orders");
    assert.equal(prodStatus(s)?.signingKey, undefined, "nothing to say before any request");
    const before = await podsUser(s);
    s.servers.connections.set(before.sub, 1);
    s.cluster.app("shop", "orders").metadata.annotations = {
      [ROTATE_SIGNING_KEY_ANNOTATION]: "prod=1",
    };
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    const after = await podsUser(s);
    assert.notEqual(after.iss, before.iss);
    assert.deepEqual(pushedKeys(s), [after.iss, before.iss]);
    const held = prodStatus(s)?.signingKey;
    assert.equal(held?.key, after.iss);
    assert.equal(held.oldKey, before.iss);
    assert.equal(held.requested, "prod=1");
    assert.equal(prodStatus(s)?.rotation?.oldUser, before.sub);
    assert.ok(s.cluster.events.some((e) => e.reason === "SigningKeyRotated"));

    s.servers.connections.delete(before.sub);
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.deepEqual(pushedKeys(s), [after.iss]);
    assert.deepEqual(prodStatus(s)?.signingKey, {
      key: after.iss,
      requested: "prod=1",
      since: held.since,
    });
    // It answered no credentials request: like a renewal, nothing is left to say.
    assert.equal(prodStatus(s)?.rotation, undefined);
    const writes = s.cluster.writes + s.store.writes;
    assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
    assert.equal(s.cluster.writes + s.store.writes, writes, "a settled rotation wrote again");
  });

  test("on a schedule: the App waits for the key's age, then the key is replaced", async () => {
    const s = setup(NO_CEILINGS, {}, 3000);
    s.addApp("orders", { nats: true, environments: ["prod"] });
    const first = await s.reconciler.reconcile("shop/orders");
    assert.equal(first.kind, "requeueAfter");
    assert.ok(first.ms > 2_990_000 && first.ms <= 3_000_000);
    const rotateAt = prodStatus(s)?.signingKey?.rotateAt;
    assert.ok(rotateAt);
    const before = await podsUser(s);
    s.clock.aheadMs = 3_000_000;
    await s.reconciler.reconcile("shop/orders");
    assert.notEqual((await podsUser(s)).iss, before.iss);
    assert.ok(Date.parse(prodStatus(s)?.signingKey?.rotateAt ?? "") > Date.parse(rotateAt));
  });
});

describe("pods credentials' lifetime", () => {
  const prodStatus = (s: ReturnType<typeof setup>) =>
    s.cluster.app("shop", "orders").status?.environments?.find((e) => e.name === "prod");

  test("credentials expire after the platform's default, are renewed at 2/3 of it, and the App waits for that", async () => {
    const s = setup(NO_CEILINGS, { defaultSeconds: 3000, minSeconds: 60 });
    s.addApp("orders", { nats: true, environments: ["prod"] });
    const first = await s.reconciler.reconcile("shop/orders");
    assert.equal(first.kind, "requeueAfter");
    assert.ok(first.ms > 1_990_000 && first.ms <= 2_000_000);
    const held = prodStatus(s)?.credentials;
    assert.equal(held?.lifetimeSeconds, 3000);
    const secret = s.cluster.secrets.get("shop/orders-prod-nats");

    s.clock.aheadMs = 2_000_000;
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    assert.notDeepEqual(s.cluster.secrets.get("shop/orders-prod-nats"), secret);
    assert.equal(prodStatus(s)?.rotation?.state, "Overlapping");
    assert.equal(prodStatus(s)?.rotation?.requested, undefined);
    assert.ok(s.cluster.events.some((e) => e.reason === "CredentialsRenewed"));
    assert.ok(Date.parse(prodStatus(s)?.credentials?.expires ?? "") > Date.parse(held.expires));
  });

  test("a lifetime outside the platform's bounds is reported and the working credentials are kept", async () => {
    const s = setup(NO_CEILINGS, { defaultSeconds: 3000, minSeconds: 600, maxSeconds: 86_400 });
    s.addApp("orders", { nats: true, environments: ["prod"] });
    await s.reconciler.reconcile("shop/orders");
    const secret = s.cluster.secrets.get("shop/orders-prod-nats");
    s.addApp("orders", {
      nats: true,
      environments: ["prod"],
      credentials: { lifetimeSeconds: 60 },
    });
    assert.equal((await s.reconciler.reconcile("shop/orders")).kind, "requeueAfter");
    const degraded = s.condition("orders", "Degraded");
    assert.equal(degraded?.reason, "CredentialLifetime");
    assert.match(
      degraded.message,
      /spec\.credentials\.lifetimeSeconds: 60 s is under the shortest lifetime allowed, 600 s/,
    );
    assert.deepEqual(s.cluster.secrets.get("shop/orders-prod-nats"), secret);
    assert.equal(prodStatus(s)?.ready, true);
  });
});

test("keys restored from a backup wait a day for their App before they are orphans", async () => {
  const s = setup();
  s.addApp("orders", { nats: true, environments: ["prod"] });
  await s.reconciler.reconcile("shop/orders");
  s.cluster.apps.delete("shop/orders");
  const entry = s.store.data.get("nats-app.shop.orders") ?? {};
  s.store.set("nats-app.shop.orders", { ...entry, restoredAt: String(Date.now()) });
  const waiting = await s.reconciler.reconcile("shop/orders");
  assert.equal(waiting.kind, "requeueAfter");
  assert.ok(waiting.ms > RESTORED_GRACE_MS - 60_000);
  assert.equal(s.servers.accounts.size, 1, "a restored account was taken for an orphan");
  s.clock.aheadMs = RESTORED_GRACE_MS;
  assert.deepEqual(await s.reconciler.reconcile("shop/orders"), { kind: "done" });
  assert.equal(s.servers.accounts.size, 0);
});

test("an App that asks for it gets its environment's workloads restarted once per rotation", async () => {
  const s = setup();
  s.addApp("orders", {
    nats: true,
    environments: ["prod", "test"],
    credentials: { restartWorkloads: true },
  });
  await s.reconciler.reconcile("shop/orders");
  assert.equal(s.cluster.restarts.size, 0, "restarted without a rotation");
  s.cluster.app("shop", "orders").metadata.annotations = { [ROTATE_ANNOTATION]: "prod=1" };
  // The old user stays in use: the second run still overlaps.
  s.servers.userConnectionsUnknown = true;
  await s.reconciler.reconcile("shop/orders");
  await s.reconciler.reconcile("shop/orders");
  assert.equal(s.cluster.restarts.size, 1);
  assert.match([...s.cluster.restarts][0] ?? "", /^shop\/orders\/prod@\d+$/);
  assert.equal(s.cluster.events.filter((e) => e.reason === "WorkloadsRestarted").length, 1);
});
