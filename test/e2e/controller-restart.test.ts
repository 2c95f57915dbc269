import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { V1Secret } from "@kubernetes/client-node";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { pino } from "pino";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import {
  OPERATOR_ENTRY,
  accountEntryName,
  appEntryName,
  entryAccounts,
  parseAccountEntryName,
  storedAccount,
} from "../../src/accounts/key-store.ts";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { parseJwt } from "../../src/accounts/jwt.ts";
import { CA_ENTRY } from "../../src/ca/ca-store.ts";
import { FINALIZER } from "../../src/contract/app-object.ts";
import { watchApps } from "../../src/runtime/informers.ts";
import { kubeConfigAccess } from "../../src/kube/kube-config.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  appManifest,
  appsApi,
  readyAtGeneration,
  secretValues,
  useOperatorStack,
  type OperatorStack,
  type RunningOperator,
} from "./operator-harness.ts";

const APPS = 50;

async function storedAccounts(s: OperatorStack): Promise<Map<string, string>> {
  const store = new KubernetesSecretStore(kubeConfigAccess(s.kc), s.stack.settings.namespace);
  const byName = new Map<string, string>();
  for await (const { name, data } of store.entries())
    for (const entry of entryAccounts(name, data))
      byName.set(
        `${entry.namespace}/${entry.app}/${entry.environment}`,
        parseJwt(storedAccount(name, entry.data).accountJwt).sub,
      );
  return byName;
}

async function allReady(s: OperatorStack, namespace: string, count: number): Promise<boolean> {
  const apps = appsApi(s.custom);
  for (let i = 0; i < count; i++) {
    const app = await apps.get(namespace, `app-${String(i)}`);
    if (!readyAtGeneration(app)) return false;
  }
  return true;
}

/**
 * One stored account per App of `namespace`, each App's status naming it, and every server
 * holding exactly the stored accounts (of every namespace).
 */
async function assertConverged(s: OperatorStack, namespace: string): Promise<void> {
  const apps = appsApi(s.custom);
  const stored = await storedAccounts(s);
  const fleet = [...stored].filter(([key]) => key.startsWith(`${namespace}/`));
  assert.equal(fleet.length, APPS, "one stored account per App");
  const wanted = new Set(fleet.map(([, pub]) => pub));
  for (let i = 0; i < APPS; i++) {
    const app = await apps.get(namespace, `app-${String(i)}`);
    assert.ok(
      wanted.has(app?.status?.environments?.[0]?.account ?? ""),
      `app-${String(i)} status names another account`,
    );
  }
  const resolver = await s.resolver();
  try {
    const held = await resolver.list();
    assert.equal(held.size, 3);
    const all = new Set(stored.values());
    for (const [server, accounts] of held) {
      const apps_ = accounts.filter((a) => a !== s.identity.systemAccount.publicKey);
      assert.deepEqual(new Set(apps_), all, `${server} holds a different set of accounts`);
    }
  } finally {
    await resolver.close();
  }
}

describe("operator restarts", () => {
  const stack = useOperatorStack();

  test("SIGKILL while applying 50 Apps: the next operator converges with no duplicate and no orphaned account", async () => {
    const s = stack();
    await s.core.createNamespace({ body: { metadata: { name: "fleet" } } });
    const first = await s.startOperator({ identity: "first" });
    await first.waitReady();
    const apps = appsApi(s.custom);
    await Promise.all(
      Array.from({ length: APPS }, (_, i) =>
        apps.create(
          "fleet",
          appManifest("fleet", `app-${String(i)}`, { nats: true, environments: ["prod"] }),
        ),
      ),
    );
    // Killed mid-way: some Apps done, some accounts saved but maybe not pushed or not recorded.
    await waitUntil("some accounts stored", async () => (await storedAccounts(s)).size >= 10, {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    await first.process.kill();
    const atKill = (await storedAccounts(s)).size;
    assert.ok(
      atKill < APPS,
      `all ${String(APPS)} were done before the kill; the test proves nothing`,
    );

    const second = await s.startOperator({ identity: "second" });
    await second.waitReady();
    await waitUntil("all 50 Apps Ready", () => allReady(s, "fleet", APPS), { timeoutMs: 120_000 });

    await assertConverged(s, "fleet");
    await second.stop();
  });

  test("the App list the informer starts from walks every page", async () => {
    const s = stack();
    const cluster = s.stack.controlPlane.access();
    const apps = watchApps({
      cluster,
      label: "apps",
      pageSize: 7,
      onChange: () => undefined,
      logger: pino({ level: "silent" }),
    });
    await apps.start();
    await apps.waitSynced();
    await apps.stop();
    await cluster.close();
    const names = apps.list("fleet").map((a) => a.metadata.name);
    assert.equal(names.length, APPS, "a list that stops at its first page caches 7");
    assert.equal(new Set(names).size, APPS);
  });

  test("a restart with everything in place makes zero API writes and zero pushes", async () => {
    const s = stack();
    const writesBefore = s.operatorWrites().length;
    const pushes = await s.pushCounter();
    try {
      const third = await s.startOperator({ identity: "third" });
      await third.waitReady();
      await third.waitSettled(3000);
      const reconciles = await third.metric("nats_tenancy_reconcile_total");
      assert.ok(
        reconciles >= APPS,
        `only ${String(reconciles)} reconciles: the restart did not look at every App`,
      );
      const writes = s.operatorWrites().slice(writesBefore);
      assert.deepEqual(writes, [], "the restarted operator wrote to the API server");
      assert.equal(pushes.updates(), 0, "the restarted operator pushed account JWTs");
      assert.equal(pushes.deletes(), 0, "the restarted operator deleted accounts");
      await third.stop();
    } finally {
      await pushes.close();
    }
  });

  test("a restart with everything in place reads no account's keys, nor signs anything", async () => {
    const s = stack();
    const readsBefore = s.operatorSecretReads().length;
    const operator = await s.startOperator({ identity: "fourth" });
    await operator.waitReady();
    await operator.waitSettled(3000);
    assert.ok((await operator.metric("nats_tenancy_reconcile_total")) >= APPS);
    const accountReads = s
      .operatorSecretReads()
      .slice(readsBefore)
      .filter((r) => parseAccountEntryName(r.name));
    assert.deepEqual(accountReads, [], "the restarted operator read stored accounts one by one");
    await operator.stop();
  });

  test("accounts an earlier version stored one per entry: a restart writes nothing, they keep working, and move into their App's entry with its next change", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    const store = new KubernetesSecretStore(kubeConfigAccess(s.kc), s.stack.settings.namespace);
    await s.core.createNamespace({ body: { metadata: { name: "earlier" } } });
    const first = await s.startOperator({ identity: "earlier-a" });
    await first.waitReady();
    await apps.create(
      "earlier",
      appManifest("earlier", "old", { nats: true, environments: ["prod", "test"] }),
    );
    await waitUntil("old Ready", async () => readyAtGeneration(await apps.get("earlier", "old")), {
      timeoutMs: 30_000,
    });
    await first.stop();
    const accounts = (await apps.get("earlier", "old"))?.status?.environments?.map(
      (e) => e.account,
    );
    // Laid out as before keys were kept per App: one entry per account.
    const group = appEntryName({ namespace: "earlier", app: "old" });
    const entry = await store.read(group);
    assert.ok(entry);
    const own = entryAccounts(group, entry.data);
    assert.equal(own.length, 2);
    for (const account of own) await store.put(accountEntryName(account), account.data);
    assert.ok(await store.delete(group, entry.version));

    const writesBefore = s.operatorWrites().length;
    const second = await s.startOperator({ identity: "earlier-b" });
    await second.waitReady();
    await second.waitSettled(3000);
    assert.deepEqual(s.operatorWrites().slice(writesBefore), [], "the restart wrote");
    const prod = await secretValues(s.core, "earlier", "old-prod-nats");
    const nc = await connect({
      servers: s.stack.nats.tlsUrls,
      authenticator: credsAuthenticator(new TextEncoder().encode(prod?.NATS_CREDENTIALS ?? "")),
      tls: { caFile: s.stack.nats.caFile },
      reconnect: false,
    });
    await nc.close();

    await apps.patchSpec("earlier", "old", { nats: true, environments: ["prod", "test", "dev"] });
    await waitUntil(
      "old Ready with dev",
      async () => {
        const app = await apps.get("earlier", "old");
        return readyAtGeneration(app) && app?.status?.environments?.length === 3;
      },
      { timeoutMs: 30_000 },
    );
    const after = (await apps.get("earlier", "old"))?.status?.environments?.map((e) => e.account);
    assert.deepEqual(after?.slice(0, 2), accounts, "the stored accounts were not kept");
    const names: string[] = [];
    for await (const { name } of store.entries())
      if (parseAccountEntryName(name)?.namespace === "earlier") names.push(name);
    assert.deepEqual(names, [group], "the accounts' own entries were left behind");
    const moved = await store.read(group);
    assert.deepEqual(
      entryAccounts(group, moved?.data ?? {})
        .map((a) => a.environment)
        .sort(),
      ["dev", "prod", "test"],
    );
    await second.stop();
  });

  test("a server that lost its resolver directory gets its accounts back at the next resync", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "resync", resyncSeconds: 2 });
    await operator.waitReady();
    const node = s.stack.nats.nodes[1];
    assert.ok(node);
    await node.stop();
    rmSync(join(node.address.dir, "jwt"), { recursive: true, force: true });
    node.start();
    await s.stack.nats.waitReady();
    const stored = new Set((await storedAccounts(s)).values());
    await waitUntil(
      `${node.address.name} holds every account again`,
      async () => {
        const resolver = await s.resolver();
        try {
          const held = (await resolver.list()).get(node.address.name) ?? [];
          return [...stored].every((a) => held.includes(a));
        } finally {
          await resolver.close();
        }
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    // The servers also sync with each other, every 2 minutes: this proves the operator did it.
    const pushed = await operator.metric("nats_tenancy_nats_pushes_total", { operation: "update" });
    assert.ok(
      pushed >= stored.size,
      `the operator pushed ${String(pushed)} of ${String(stored.size)}`,
    );
    await operator.stop();
  });

  test("an account no App owns leaves every server at the next resync, disabled first as a normal delete does", async () => {
    const s = stack();
    // As a server that missed a delete still holds it.
    const rogue = mintAppAccount(
      { namespace: "ghost", app: "gone", environment: "prod" },
      s.identity,
    );
    const account = rogue.publicKey;
    const resolver = await s.resolver();
    const counter = await s.pushCounter();
    try {
      await resolver.push(rogue.stored.accountJwt, s.identity);
      await waitUntil(
        "the counter saw the rogue push",
        () => Promise.resolve(counter.updates() >= 1),
        {
          timeoutMs: 5000,
          intervalMs: 50,
        },
      );
      const updatesBefore = counter.updates();
      const operator = await s.startOperator({ identity: "sweeper", resyncSeconds: 1 });
      await operator.waitReady();
      await waitUntil(
        "no server holds the rogue account",
        async () => [...(await resolver.list()).values()].every((held) => !held.includes(account)),
        { timeoutMs: 30_000, intervalMs: 500 },
      );
      assert.ok(counter.updates() > updatesBefore, "no disabled copy was pushed before the delete");
      assert.ok(counter.deletes() >= 1);
      await operator.stop();
    } finally {
      await counter.close();
      await resolver.close();
    }
  });

  test("while NATS is down a deleted App stays terminating with DeletionBlocked; it finishes once NATS is back", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "outage" });
    await operator.waitReady();
    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "outage" } } });
    await apps.create(
      "outage",
      appManifest("outage", "web", { nats: true, environments: ["prod"] }),
    );
    let account = "";
    await waitUntil(
      "web Ready",
      async () => {
        const app = await apps.get("outage", "web");
        account = app?.status?.environments?.[0]?.account ?? "";
        return (
          app?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true
        );
      },
      { timeoutMs: 30_000 },
    );
    const nodes = s.stack.nats.nodes;
    await Promise.all(nodes.map((n) => n.stop()));
    try {
      await apps.delete("outage", "web");
      await waitUntil(
        "DeletionBlocked",
        async () => {
          const app = await apps.get("outage", "web");
          const degraded = app?.status?.conditions?.find((c) => c.type === "Degraded");
          return degraded?.status === "True" && degraded.reason === "DeletionBlocked";
        },
        { timeoutMs: 30_000 },
      );
      const app = await apps.get("outage", "web");
      assert.ok(app?.metadata.deletionTimestamp, "the App is terminating");
      assert.deepEqual(app.metadata.finalizers, [FINALIZER]);
      const message = app.status?.conditions?.find((c) => c.type === "Degraded")?.message ?? "";
      assert.match(message, /accounts cannot be deleted yet/);
      assert.ok(
        await s.core.readNamespacedSecret({ namespace: "outage", name: "web-prod-nats" }),
        "the Secret went before the account",
      );
      assert.ok(
        (await storedAccounts(s)).has("outage/web/prod"),
        "the keys went before the account",
      );
      // What an alert reads: a key in backoff, retries counted.
      await waitUntil(
        "the blocked App counted in backoff",
        async () => (await operator.metric("nats_tenancy_queue_backoff")) >= 1,
        { timeoutMs: 10_000 },
      );
      assert.ok((await operator.metric("nats_tenancy_reconcile_retries_total")) >= 1);
    } finally {
      for (const node of nodes) node.start();
      await s.stack.nats.waitReady();
    }
    await waitUntil("App gone", async () => (await apps.get("outage", "web")) === undefined, {
      timeoutMs: 90_000,
    });
    const resolver = await s.resolver();
    try {
      for (const [server, accounts] of await resolver.list())
        assert.ok(!accounts.includes(account), `${server} still holds the account`);
    } finally {
      await resolver.close();
    }
    assert.ok(!(await storedAccounts(s)).has("outage/web/prod"));
    await operator.stop();
  });

  test("with the identity Secret deleted nothing is re-minted: tenants keep working, /readyz says why, restoring it heals", async () => {
    const s = stack();
    const namespace = s.stack.settings.namespace;
    const natsConfig = () => secretValues(s.core, namespace, s.stack.settings.natsConfigSecret);
    const readyzSays = async (operator: RunningOperator, pattern: RegExp): Promise<boolean> => {
      const answer = await fetch(`${operator.healthUrl}/readyz`);
      return answer.status === 503 && pattern.test(await answer.text());
    };
    const missing =
      /operator identity Secret .*nats-tenancy-operator is missing.*Restore the Secret from a backup/;
    const first = await s.startOperator({ identity: "keeper", resyncSeconds: 1 });
    await first.waitReady();
    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "keep" } } });
    await apps.create("keep", appManifest("keep", "web", { nats: true, environments: ["prod"] }));
    let creds: Record<string, string> | undefined;
    await waitUntil(
      "web's Secret",
      async () => (creds = await secretValues(s.core, "keep", "web-prod-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );
    const trusted = (await natsConfig())?.["operator.jwt"];
    assert.ok(trusted);
    const saved = await s.core.readNamespacedSecret({ namespace, name: OPERATOR_ENTRY });
    /** Puts a deleted Secret back as a backup would: name, labels, type and data. */
    const restore = async (backup: V1Secret): Promise<void> => {
      await s.core.createNamespacedSecret({
        namespace,
        body: {
          metadata: { name: backup.metadata?.name ?? "", labels: backup.metadata?.labels ?? {} },
          type: backup.type ?? "Opaque",
          data: backup.data ?? {},
        },
      });
    };
    const tenantWorks = async (): Promise<void> => {
      const nc = await connect({
        servers: s.stack.nats.tlsUrls,
        authenticator: credsAuthenticator(new TextEncoder().encode(creds?.NATS_CREDENTIALS ?? "")),
        tls: { caFile: s.stack.nats.caFile },
        reconnect: false,
      });
      await nc.close();
    };

    await s.core.deleteNamespacedSecret({ namespace, name: OPERATOR_ENTRY });
    // The running leader's next renewal (every second here) refuses to make a new identity.
    await waitUntil(
      "the leader's /readyz names the missing Secret",
      () => readyzSays(first, missing),
      {
        timeoutMs: 15_000,
      },
    );
    await first.stop();
    // Nor does a leader starting without it.
    const second = await s.startOperator({ identity: "keeper-2", resyncSeconds: 1 });
    await waitUntil(
      "a new leader's /readyz names the missing Secret",
      () => readyzSays(second, missing),
      {
        timeoutMs: 30_000,
      },
    );
    assert.equal(
      await secretValues(s.core, namespace, OPERATOR_ENTRY),
      undefined,
      "an identity was minted",
    );
    assert.equal(
      (await natsConfig())?.["operator.jwt"],
      trusted,
      "the servers were given another operator",
    );
    await tenantWorks();

    await restore(saved);
    await second.waitReady();
    await apps.create("keep", appManifest("keep", "later", { nats: true, environments: ["prod"] }));
    await waitUntil(
      "an App made after the restore gets its Secret",
      async () => (await secretValues(s.core, "keep", "later-prod-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );
    assert.equal((await natsConfig())?.["operator.jwt"], trusted);
    await tenantWorks();

    // The CA likewise: a new one would break every client's TLS.
    const bundle = (await natsConfig())?.["ca.crt"];
    const savedCa = await s.core.readNamespacedSecret({ namespace, name: CA_ENTRY });
    await s.core.deleteNamespacedSecret({ namespace, name: CA_ENTRY });
    await waitUntil(
      "/readyz names the missing CA",
      () => readyzSays(second, /CA Secret .*nats-tenancy-ca is missing/),
      { timeoutMs: 15_000 },
    );
    assert.equal(await secretValues(s.core, namespace, CA_ENTRY), undefined, "a CA was minted");
    assert.equal((await natsConfig())?.["ca.crt"], bundle);
    await tenantWorks();
    await restore(savedCa);
    await second.waitReady();
    await second.stop();
  });
  test("/healthz fails while a reconcile runs past --stuck-seconds, and recovers with it", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "stuck", stuckSeconds: 1 });
    await operator.waitReady();
    const healthz = async (): Promise<number> =>
      (await fetch(`${operator.healthUrl}/healthz`)).status;
    assert.equal(await healthz(), 200);
    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "stuck" } } });
    // Paused servers keep their connections open and answer nothing: a push waits out its
    // 5 s timeout, far past the 1 s the operator allows a reconcile.
    const nodes = s.stack.nats.nodes;
    for (const node of nodes) node.process?.signal("SIGSTOP");
    try {
      await apps.create(
        "stuck",
        appManifest("stuck", "web", { nats: true, environments: ["prod"] }),
      );
      await waitUntil("/healthz failing", async () => (await healthz()) === 503, {
        timeoutMs: 10_000,
        intervalMs: 100,
      });
    } finally {
      for (const node of nodes) node.process?.signal("SIGCONT");
    }
    await waitUntil(
      "web's Secret once NATS answers",
      async () => (await secretValues(s.core, "stuck", "web-prod-nats")) !== undefined,
      { timeoutMs: 60_000 },
    );
    await waitUntil("/healthz passing again", async () => (await healthz()) === 200, {
      timeoutMs: 10_000,
    });
    await operator.stop();
  });

  for (const component of ["kube-apiserver", "etcd"] as const) {
    test(`${component} restarted while 50 Apps are applied: the operator recovers on its own, no duplicate or orphaned account`, async () => {
      const s = stack();
      const namespace = `through-${component}`;
      await s.core.createNamespace({ body: { metadata: { name: namespace } } });
      const operator = await s.startOperator({ identity: namespace });
      await operator.waitReady();
      const apps = appsApi(s.custom);
      try {
        await Promise.all(
          Array.from({ length: APPS }, (_, i) =>
            apps.create(
              namespace,
              appManifest(namespace, `app-${String(i)}`, { nats: true, environments: ["prod"] }),
            ),
          ),
        );
        // The outage starts while the operator is still making the accounts.
        const store = new KubernetesSecretStore(kubeConfigAccess(s.kc), s.stack.settings.namespace);
        const beforeOutage = (await store.list()).filter(
          (name) => parseAccountEntryName(name)?.namespace === namespace,
        ).length;
        assert.ok(
          beforeOutage < APPS,
          `all ${String(APPS)} were done first; the test proves nothing`,
        );
        await s.stack.controlPlane.restart(component);
        await waitUntil(`all ${String(APPS)} Apps Ready`, () => allReady(s, namespace, APPS), {
          timeoutMs: 120_000,
        });
        assert.ok(operator.process.running, "the operator had to be restarted");
        if (component === "kube-apiserver")
          assert.ok(
            (await operator.metric("nats_tenancy_watch_restarts_total")) > 0,
            "the watches never noticed the API server going away",
          );
        await assertConverged(s, namespace);
      } finally {
        await operator.stop();
      }
    });
  }
});
