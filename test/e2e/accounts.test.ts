import assert from "node:assert/strict";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { deleteAppAccount } from "../../src/accounts/account-deletion.ts";
import { mintAppAccount, type MintedAccount } from "../../src/accounts/app-account.ts";
import { findDrift, repairDrift, type DesiredAccounts } from "../../src/accounts/drift.ts";
import {
  InvalidClaimsError,
  ResolverRejectedError,
  ResolverTimeoutError,
  type ResolverClient,
} from "../../src/accounts/resolver-client.ts";
import { AccountSpecError, type AccountSpec } from "../../src/accounts/spec.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { printLogsOnFailure } from "./harness.ts";
import { connectResolver, startOperatorCluster, type OperatorCluster } from "./operator-cluster.ts";

const { natsServers } = await ensureToolchain();

/** What should exist, as the operator's stored accounts would tell drift repair. */
function desiredOf(minted: ReadonlyMap<string, MintedAccount>): DesiredAccounts {
  const byKey = new Map([...minted.values()].map((a) => [a.publicKey, a.stored.accountJwt]));
  return {
    keys: () => Promise.resolve(new Set(byKey.keys())),
    jwt: (account) => Promise.resolve(byKey.get(account)),
  };
}
const encoder = new TextEncoder();

for (const server of natsServers) {
  describe(`app accounts on a 3-node operator-mode cluster (${server.label})`, () => {
    let cluster: OperatorCluster;
    let resolver: ResolverClient;
    const open: NatsConnection[] = [];

    before(async () => {
      cluster = await startOperatorCluster(server.path);
      resolver = await connectResolver(cluster);
    });
    printLogsOnFailure("nats cluster", () => cluster);
    after(async () => {
      await Promise.allSettled(open.map((c) => c.close()));
      await resolver.close();
      await cluster.stop();
    });

    const connectAs = async (
      account: MintedAccount,
      node = 0,
      name = "app",
    ): Promise<NatsConnection> => {
      const nc = await connect({
        servers: cluster.urls[node],
        name,
        authenticator: credsAuthenticator(encoder.encode(account.creds)),
        tls: { caFile: cluster.caFile },
        reconnect: false,
      });
      open.push(nc);
      return nc;
    };

    const minted = new Map<string, MintedAccount>();
    const mint = async (spec: AccountSpec): Promise<MintedAccount> => {
      const key = `${spec.namespace}/${spec.app}/${spec.environment}`;
      const account = mintAppAccount(spec, cluster.identity, minted.get(key)?.stored);
      const replies = await resolver.push(account.stored.accountJwt, cluster.identity);
      assert.equal(new Set(replies.map((r) => r.server)).size, 3, "all three servers acknowledged");
      minted.set(key, account);
      return account;
    };

    test("a pushed account is acknowledged by and usable on all three nodes", async () => {
      const account = await mint({ namespace: "shop", app: "orders", environment: "prod" });
      const subscriber = await connectAs(account, 2);
      const sub = subscriber.subscribe("orders.created", { max: 1 });
      await subscriber.flush();
      for (const node of [0, 1]) await (await connectAs(account, node)).flush();
      const publisher = await connectAs(account, 0);
      const received = (async () => {
        for await (const m of sub) return m.string();
        return undefined;
      })();
      await waitUntil(
        "interest across the route",
        async () => {
          publisher.publish("orders.created", "order 1");
          await publisher.flush();
          return sub.getReceived() > 0;
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      assert.equal(await received, "order 1");
    });

    test("accounts are isolated: other apps and other environments never deliver, not even to '>'", async () => {
      const aProd = await mint({ namespace: "iso", app: "a", environment: "prod" });
      const aTest = await mint({ namespace: "iso", app: "a", environment: "test" });
      const bProd = await mint({ namespace: "iso", app: "b", environment: "prod" });
      const watcher = await connectAs(aProd, 1);
      const seen: string[] = [];
      const all = watcher.subscribe(">", {
        callback: (_e, m) => {
          seen.push(`${m.subject}:${m.string()}`);
        },
      });
      await watcher.flush();
      for (const [account, label] of [
        [aTest, "a-test"],
        [bProd, "b-prod"],
      ] as const) {
        const nc = await connectAs(account, 0);
        for (let i = 0; i < 20; i++) nc.publish("shared.subject", label);
        await nc.flush();
      }
      const own = await connectAs(aProd, 0);
      await waitUntil(
        "own message delivered",
        async () => {
          own.publish("shared.subject", "a-prod");
          await own.flush();
          return seen.some((s) => s.endsWith("a-prod"));
        },
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      all.unsubscribe();
      assert.deepEqual([...new Set(seen)], ["shared.subject:a-prod"]);

      // $SYS.> is denied to app users, whatever account they are in.
      const sys = await connectAs(aProd, 0, "sys-snooper");
      const denied = new Promise<string>((resolve) => {
        sys.subscribe("$SYS.>", {
          callback: (error) => {
            resolve(error ? error.message : "delivered");
          },
        });
      });
      await sys.flush().catch(() => undefined);
      assert.match(await denied, /permissions violation/i);
    });

    test("limits hold: connections, payload, and JetStream only where enabled, within its storage", async () => {
      const limited = await mint({
        namespace: "lim",
        app: "small",
        environment: "prod",
        limits: { connections: 2, payload: 1024, jetstream: { storage: 64 * 1024, streams: 2 } },
      });
      // Counted per server at once; across servers the count converges through system events.
      const first = await connectAs(limited, 0);
      await connectAs(limited, 0);
      await assert.rejects(connectAs(limited, 0), /maximum account active connections exceeded/i);
      // The server tells the client the account's payload limit, and enforces it.
      assert.equal(first.info?.max_payload, 1024);
      assert.throws(() => {
        first.publish("big", new Uint8Array(2048));
      }, /max_payload/i);
      first.publish("small", new Uint8Array(1000));
      await first.flush();

      const js = await mint({
        namespace: "lim",
        app: "stream",
        environment: "prod",
        limits: { jetstream: { storage: 64 * 1024, streams: 2 } },
      });
      const jnc = await connectAs(js, 0);
      const { jetstreamManager, jetstream } = await import("@nats-io/jetstream");
      const jsm = await waitForJetStream(() => jetstreamManager(jnc));
      await settled(() =>
        jsm.streams.add({
          name: "small",
          subjects: ["small.>"],
          max_bytes: 32 * 1024,
          num_replicas: 1,
        }),
      );
      const refusal = await settled(() =>
        jsm.streams
          .add({ name: "huge", subjects: ["huge.>"], max_bytes: 1024 * 1024, num_replicas: 1 })
          .then(
            () => "created",
            (error: unknown) => {
              const text = String(error);
              if (NOT_YET_ENABLED.test(text)) throw error;
              return text;
            },
          ),
      );
      assert.match(
        refusal,
        /insufficient storage|storage resources exceeded|exceeds account limit/i,
      );
      const client = jetstream(jnc);
      await client.publish("small.x", "fits");

      const noJs = await mint({ namespace: "lim", app: "nojs", environment: "prod" });
      const plain = await connectAs(noJs, 0);
      await assert.rejects(
        (async () => {
          const m = await jetstreamManager(plain, { timeout: 3000 });
          await m.getAccountInfo();
        })(),
        /jetstream not enabled/i,
      );
    });

    test("the nats v2 client snippet apps use connects with minted credentials over TLS", async () => {
      const account = await mint({ namespace: "compat", app: "legacy", environment: "prod" });
      const nats = await import("nats");
      const nc = await nats.connect({
        servers: cluster.urls,
        authenticator: nats.credsAuthenticator(new TextEncoder().encode(account.creds)),
        tls: { caFile: cluster.caFile },
      });
      const sub = nc.subscribe("legacy.ping", { max: 1 });
      nc.publish("legacy.ping", "pong");
      for await (const m of sub) assert.equal(m.string(), "pong");
      await nc.close();
    });

    test("delete closes existing connections and refuses new ones on every node; drift repair restores only live accounts", async () => {
      const doomed = await mint({
        namespace: "del",
        app: "gone",
        environment: "prod",
        limits: { jetstream: { storage: 1024 * 1024 } },
      });
      const keeper = await mint({ namespace: "del", app: "kept", environment: "prod" });
      const { jetstreamManager, jetstream } = await import("@nats-io/jetstream");
      const writer = await connectAs(doomed, 0);
      const jsm = await waitForJetStream(() => jetstreamManager(writer));
      await settled(() =>
        jsm.streams.add({ name: "doomed", subjects: ["doomed.>"], num_replicas: 3 }),
      );
      await jetstream(writer).publish("doomed.data", "kept on disk until purged");
      // nats-server keeps an account's JetStream data in <store_dir>/jetstream/<account>.
      const storeDirs = cluster.nodes.map((n) =>
        join(n.address.dir, "jetstream", "jetstream", doomed.publicKey),
      );
      // Some servers leave the account's empty directories behind; the data is what must go.
      const dataLeft = (): string[] =>
        storeDirs.flatMap((d) =>
          existsSync(d)
            ? readdirSync(d, { recursive: true, withFileTypes: true })
                .filter((e) => e.isFile())
                .map((e) => join(e.parentPath, e.name))
            : [],
        );
      assert.ok(dataLeft().length > 0, "the account has JetStream data on disk");

      const conns = await Promise.all([0, 1, 2].map((n) => connectAs(doomed, n)));
      const closedAll = Promise.all(conns.map((c) => c.closed()));
      await deleteAppAccount(resolver, doomed.stored, cluster.identity);
      minted.delete("del/gone/prod");
      await closedAll;
      await waitUntil(
        "JetStream data purged on every node",
        () => Promise.resolve(dataLeft().length === 0),
        {
          timeoutMs: 15_000,
        },
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}: ${dataLeft().join(", ")}`);
      });
      for (const node of [0, 1, 2]) {
        await assert.rejects(
          connectAs(doomed, node),
          /authorization|expired|violation/i,
          `node ${node} refuses`,
        );
      }

      // A node that lost its resolver store: restart it empty, repair, and its live accounts are back.
      const node = cluster.nodes[1];
      assert.ok(node);
      await node.stop();
      rmSync(join(node.address.dir, "jwt"), { recursive: true, force: true });
      node.start();
      await cluster.waitReady();
      // The operator's own connection may have been on the restarted node: retry as the
      // controller's periodic resync would.
      let report: Awaited<ReturnType<typeof repairDrift>> | undefined;
      await waitUntil(
        "drift repaired",
        async () => {
          report = await repairDrift(resolver, desiredOf(minted), cluster.identity);
          // A server not answering yet is left for the next repair: wait for all three.
          return report.servers.length === 3;
        },
        { timeoutMs: 30_000, intervalMs: 1000 },
      );
      assert.ok(report);
      assert.ok(report.missing.has(keeper.publicKey), "the emptied node lacked the live account");
      const lists = await resolver.list();
      for (const [name, accounts] of lists) {
        assert.ok(accounts.includes(keeper.publicKey), `${name} holds the live account`);
        assert.ok(
          !accounts.includes(doomed.publicKey),
          `${name} does not hold the deleted account`,
        );
      }
      await (await connectAs(keeper, 1)).flush();
      await assert.rejects(connectAs(doomed, 1), /authorization|expired|violation/i);
    });

    test("a push counts once a majority stored it, never with fewer; pushed again, the returning server gets the current JWT", async () => {
      const spec = { namespace: "miss", app: "update", environment: "prod" };
      const v1 = await mint(spec);
      // Stop nodes the client's own connection is not on, so the others can answer.
      const others = cluster.nodes.filter(
        (n) => n.address.name !== resolver.connection.info?.server_name,
      );
      const [first, second] = others;
      assert.ok(first && second);
      const names = (nodes: typeof others): string[] => nodes.map((n) => n.address.name).sort();
      const v2 = mintAppAccount(
        { ...spec, limits: { connections: 7 } },
        cluster.identity,
        v1.stored,
      );
      const v3 = mintAppAccount(
        { ...spec, limits: { connections: 8 } },
        cluster.identity,
        v2.stored,
      );
      await first.stop();
      try {
        const acknowledged = await resolver.push(v2.stored.accountJwt, cluster.identity);
        assert.deepEqual(
          acknowledged.map((r) => r.server).sort(),
          names(cluster.nodes.filter((n) => n !== first)),
          "the two running servers acknowledged",
        );
        await second.stop();
        await assert.rejects(
          resolver.push(v3.stored.accountJwt, cluster.identity),
          (error: unknown) => {
            assert.ok(error instanceof ResolverTimeoutError, String(error));
            assert.match(error.message, /1 of 3 servers answered .*2 needed/);
            return true;
          },
        );
      } finally {
        first.start();
        second.start();
        await cluster.waitReady();
      }
      // What the reconciler does until every server acknowledged the current version.
      await waitUntil(
        "all three acknowledge the push",
        async () => (await resolver.push(v2.stored.accountJwt, cluster.identity)).length === 3,
        { timeoutMs: 30_000, intervalMs: 1000 },
      );
      minted.set("miss/update/prod", v2);
      const held = await resolver.lookup(v2.publicKey);
      assert.equal(held.length, 3, "every server answers the lookup");
      assert.deepEqual(
        new Set(held),
        new Set([v2.stored.accountJwt]),
        "every server holds the current JWT",
      );
      const report = await findDrift(
        resolver,
        desiredOf(minted),
        cluster.identity.systemAccount.publicKey,
      );
      assert.deepEqual([report.missing.size, report.unexpected.size], [0, 0]);
    });

    test("bad input gives typed validation errors and pushes nothing", async () => {
      const before = await resolver.list();
      assert.throws(
        () =>
          mintAppAccount(
            { namespace: "ok", app: "Not_A_Label", environment: "prod" },
            cluster.identity,
          ),
        (error: unknown) =>
          error instanceof AccountSpecError && error.issues.some((i) => i.path === "app"),
      );
      assert.throws(
        () =>
          mintAppAccount(
            {
              namespace: "ok",
              app: "fine",
              environment: "prod",
              limits: { connections: 0, payload: 1e9 },
            },
            cluster.identity,
          ),
        (error: unknown) =>
          error instanceof AccountSpecError &&
          error.issues.map((i) => i.path).join(",") === "limits.connections,limits.payload",
      );
      // A JWT from an operator the servers do not trust is refused before it is sent.
      const stranger = await import("../../src/accounts/identities.ts");
      const other = stranger.loadOperatorIdentity("other", stranger.generateOperatorSeeds());
      const foreign = mintAppAccount({ namespace: "x", app: "y", environment: "z" }, other);
      await assert.rejects(
        resolver.push(foreign.stored.accountJwt, cluster.identity),
        InvalidClaimsError,
      );
      assert.deepEqual(await resolver.list(), before);

      // A delete signed by a key the servers do not trust: every server answers with its error.
      const live = await mint({ namespace: "x", app: "live", environment: "prod" });
      await assert.rejects(
        resolver.delete([live.publicKey], other),
        (error: unknown) => error instanceof ResolverRejectedError && error.code > 0,
      );
      assert.ok(
        (await resolver.list()).get("nats-0")?.includes(live.publicKey),
        "nothing was deleted",
      );

      // The operator's own system user can reach the resolver API and nothing else.
      await assert.rejects(
        resolver.connection.request("$SYS.REQ.SERVER.PING", "", { timeout: 2000 }),
        /permission/i,
      );
    });
  });
}

// A server enables JetStream for an account shortly after it stores the account's JWT; until
// then a stream placed on it fails with these. Apps see the same and retry.
const NOT_YET_ENABLED = /error creating store|jetstream not enabled|no suitable peers/i;

async function settled<T>(attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!NOT_YET_ENABLED.test(String(error)) || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function waitForJetStream<T>(make: () => Promise<T>): Promise<T> {
  // A clustered JetStream elects its meta leader after the routes form.
  let result: T | undefined;
  await waitUntil(
    "JetStream ready",
    async () => {
      result = await make();
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
  return result as T;
}
