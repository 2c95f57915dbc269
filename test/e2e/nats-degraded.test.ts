import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import type { AppObject } from "../../src/contract/app-object.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  appManifest,
  appsApi,
  readyAtGeneration,
  secretValues,
  useOperatorStack,
} from "./operator-harness.ts";

describe("NATS degraded, not blocked", () => {
  const stack = useOperatorStack();

  /** Every server that answers, and the app accounts each holds (the system account left out). */
  async function held(): Promise<Map<string, Set<string>>> {
    const s = stack();
    const resolver = await s.resolver();
    try {
      const result = new Map<string, Set<string>>();
      for (const [server, accounts] of await resolver.list())
        result.set(
          server,
          new Set(accounts.filter((a) => a !== s.identity.systemAccount.publicKey)),
        );
      return result;
    } finally {
      await resolver.close();
    }
  }

  async function heldExactly(accounts: Set<string>): Promise<boolean> {
    const lists = await held();
    return (
      lists.size === 3 &&
      [...lists.values()].every(
        (set) => set.size === accounts.size && [...accounts].every((a) => set.has(a)),
      )
    );
  }

  async function createApps(namespace: string, names: string[]): Promise<void> {
    const apps = appsApi(stack().custom);
    for (const name of names)
      await apps.create(
        namespace,
        appManifest(namespace, name, { nats: true, environments: ["prod"] }),
      );
  }

  async function waitReady(
    namespace: string,
    names: string[],
    timeoutMs = 60_000,
  ): Promise<AppObject[]> {
    const apps = appsApi(stack().custom);
    let found: AppObject[] = [];
    await waitUntil(
      `${String(names.length)} Apps in ${namespace} Ready`,
      async () => {
        found = await Promise.all(names.map(async (name) => apps.get(namespace, name))).then(
          (list) => list.filter((app): app is AppObject => app !== undefined),
        );
        return found.length === names.length && found.every(readyAtGeneration);
      },
      { timeoutMs, intervalMs: 500 },
    );
    return found;
  }

  test("one server stopped: 20 Apps become Ready, 5 deleted go; the returning server converges to exactly the 15 live accounts and the deleted ones never work again", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "degraded" });
    await operator.waitReady();
    const namespace = "degraded";
    await s.core.createNamespace({ body: { metadata: { name: namespace } } });
    const names = Array.from({ length: 20 }, (_, i) => `app-${String(i)}`);
    const doomed = names.slice(0, 5);
    const live = names.slice(5);
    const node = s.stack.nats.nodes[2];
    assert.ok(node);
    await node.stop();
    const creds = new Map<string, string>();
    let returnedAt: number;
    try {
      const started = Date.now();
      await createApps(namespace, names);
      const apps = await waitReady(namespace, names);
      process.stdout.write(
        `# 20 Apps Ready with one of three servers down in ${String(Date.now() - started)} ms\n`,
      );
      for (const app of apps) {
        const environment = app.status?.environments?.[0];
        assert.equal(environment?.servers, 2, `${app.metadata.name}: acknowledged by the two up`);
        const message = app.status?.conditions?.find((c) => c.type === "Ready")?.message ?? "";
        assert.match(message, /prod on 2 of 3 NATS servers so far/);
      }
      for (const name of doomed) {
        const values = await secretValues(s.core, namespace, `${name}-prod-nats`);
        assert.ok(values?.NATS_CREDENTIALS);
        creds.set(name, values.NATS_CREDENTIALS);
      }
      const deletedAt = Date.now();
      const api = appsApi(s.custom);
      for (const name of doomed) await api.delete(namespace, name);
      await waitUntil(
        "the 5 deleted Apps are gone",
        async () =>
          (await Promise.all(doomed.map((name) => api.get(namespace, name)))).every(
            (app) => app === undefined,
          ),
        { timeoutMs: 60_000, intervalMs: 500 },
      );
      process.stdout.write(
        `# 5 Apps deleted with one server down in ${String(Date.now() - deletedAt)} ms\n`,
      );
    } finally {
      node.start();
      await s.stack.nats.waitReady();
      returnedAt = Date.now();
    }
    const liveAccounts = new Set(
      (await waitReady(namespace, live)).map((app) => app.status?.environments?.[0]?.account ?? ""),
    );
    assert.equal(liveAccounts.size, 15);
    // The servers' own sync runs every 2 minutes: converging well within that is the operator's
    // doing, on the returning server's first STATSZ.
    await waitUntil(
      "every server holds exactly the 15 live accounts",
      () => heldExactly(liveAccounts),
      {
        timeoutMs: 30_000,
        intervalMs: 250,
      },
    );
    process.stdout.write(
      `# the returning server converged ${String(Date.now() - returnedAt)} ms after it was up\n`,
    );
    await waitUntil(
      "every live App's status says three servers hold its account",
      async () =>
        (await waitReady(namespace, live)).every(
          (app) => app.status?.environments?.[0]?.servers === 3,
        ),
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    for (const [name, text] of creds) {
      await assert.rejects(
        connect({
          servers: s.stack.nats.tlsUrls[2] ?? "",
          authenticator: credsAuthenticator(new TextEncoder().encode(text)),
          tls: { caFile: s.stack.nats.caFile },
          reconnect: false,
          timeout: 5000,
        }).then((nc) => nc.close()),
        /authorization|expired|violation/i,
        `${name}'s deleted account works on the returning server`,
      );
    }
    await operator.stop();
  });

  test("a rolling restart of the three servers, one at a time: Apps created meanwhile keep becoming Ready", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "rolling" });
    await operator.waitReady();
    const namespace = "rolling";
    await s.core.createNamespace({ body: { metadata: { name: namespace } } });
    const created: string[] = [];
    for (const node of s.stack.nats.nodes) {
      await node.stop();
      try {
        const batch = [0, 1, 2].map((i) => `${node.address.name}-down-${String(i)}`);
        const started = Date.now();
        await createApps(namespace, batch);
        await waitReady(namespace, batch, 30_000);
        process.stdout.write(
          `# 3 Apps Ready with ${node.address.name} down in ${String(Date.now() - started)} ms\n`,
        );
        created.push(...batch);
      } finally {
        node.start();
        await s.stack.nats.waitReady();
      }
    }
    const apps = await waitReady(namespace, created);
    const accounts = new Set(apps.map((app) => app.status?.environments?.[0]?.account ?? ""));
    // The earlier test's accounts are there too: only this namespace's are compared.
    await waitUntil(
      "every server holds every account made during the restart",
      async () =>
        [...(await held()).values()].every((set) => [...accounts].every((a) => set.has(a))),
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    await waitUntil(
      "every status says three servers hold its account",
      async () =>
        (await waitReady(namespace, created)).every(
          (app) => app.status?.environments?.[0]?.servers === 3,
        ),
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    await operator.stop();
  });
});
