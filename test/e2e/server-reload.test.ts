import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import type { MintedAccount } from "../../src/accounts/app-account.ts";
import { SYSTEM_USER_PUBLISH } from "../../src/accounts/identities.ts";
import { caBundle } from "../../src/ca/authority.ts";
import { ensureLeaf, natsServerLeaf } from "../../src/ca/leaves.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  presentedCertificate,
  reloadUntilServing,
  SERVER_RELOAD_PUBLISH,
  ServerReloadTimeoutError,
  type ReloadOptions,
  type ServerEndpoint,
} from "../../src/nats/server-reload.ts";
import { systemUserCreds } from "./fixtures/system-user.ts";
import { printLogsOnFailure } from "./harness.ts";
import {
  LEAF_LIFETIME_MS,
  pushTestAccount,
  TEST_NAMES,
  natsFiles,
  startOperatorCluster,
  type OperatorCluster,
} from "./operator-cluster.ts";

const { natsServers } = await ensureToolchain();
const encoder = new TextEncoder();
const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256;

for (const server of natsServers) {
  describe(`servers reload the NATS config Secret on the operator's request (${server.label})`, () => {
    let cluster: OperatorCluster;
    let system: NatsConnection;
    let account: MintedAccount;
    const open: NatsConnection[] = [];

    before(async () => {
      cluster = await startOperatorCluster(server.path);
      system = await dial(cluster.artifacts.systemUserCreds);
      account = await pushTestAccount(cluster, {
        namespace: "reload",
        app: "client",
        environment: "prod",
      });
    });
    printLogsOnFailure("nats cluster", () => cluster);
    after(async () => {
      await Promise.allSettled(open.map((c) => c.close()));
      await cluster.stop();
    });

    /** Connects to every server, reconnecting as the operator's and apps' connections do. */
    async function dial(creds: string, servers = cluster.urls): Promise<NatsConnection> {
      const nc = await connect({
        servers,
        authenticator: credsAuthenticator(encoder.encode(creds)),
        tls: { caFile: cluster.caFile },
        maxReconnectAttempts: -1,
        reconnectTimeWait: 100,
        timeout: 3000,
      });
      open.push(nc);
      return nc;
    }

    // Dialled by address, verified against the name the certificates carry, as the chart's
    // per-pod names would be.
    const endpoint = (name: string): ServerEndpoint => {
      const node = cluster.nodes.find((n) => n.address.name === name);
      if (!node) throw new Error(`no server named ${name}`);
      return { host: "127.0.0.1", port: node.address.clientPort, servername: "localhost" };
    };
    const names = (): string[] => cluster.nodes.map((n) => n.address.name);
    const presented = async (): Promise<string[]> =>
      Promise.all(
        names().map(
          async (name) =>
            (await presentedCertificate(endpoint(name), caBundle(cluster.tls.ca))).fingerprint256,
        ),
      );
    const options = (
      expectedCertificatePem: string,
      deadlineMs: number,
      connection = system,
    ): ReloadOptions => ({
      connection,
      expectedCertificatePem,
      endpoint,
      expectedServers: 3,
      deadlineMs,
    });
    const renewLeaf = async (): Promise<string> => {
      const renewed = await ensureLeaf(
        undefined,
        natsServerLeaf(TEST_NAMES, LEAF_LIFETIME_MS),
        cluster.tls.ca,
        Date.now(),
      );
      cluster.tls = { ...cluster.tls, server: renewed.leaf };
      return renewed.leaf.certificatePem;
    };

    test("a renewed certificate written to the Secret is served by every server once asked, and only once", async (t) => {
      const old = fingerprint(cluster.tls.server.certificatePem);
      // An app connected to the first server answers requests throughout.
      const app = await dial(account.creds, cluster.urls.slice(0, 1));
      const appStatuses: string[] = [];
      void (async () => {
        for await (const s of app.status()) appStatuses.push(s.type);
      })();
      app.subscribe("echo", {
        callback: (_e, m) => {
          m.respond(m.data);
        },
      });
      await app.flush();

      const renewedPem = await renewLeaf();
      cluster.writeFiles(natsFiles(cluster.artifacts, cluster.identity, cluster.tls));
      // Nothing in or beside the servers watches the files: until asked, they serve the old one.
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(await presented(), [old, old, old]);

      let started = performance.now();
      const first = await reloadUntilServing(options(renewedPem, 30_000));
      const firstMs = performance.now() - started;
      assert.deepEqual(first, { reloaded: names(), alreadyCurrent: [] });
      const renewed = fingerprint(renewedPem);
      assert.deepEqual(await presented(), [renewed, renewed, renewed]);

      started = performance.now();
      const second = await reloadUntilServing(options(renewedPem, 30_000));
      const secondMs = performance.now() - started;
      assert.deepEqual(second, { reloaded: [], alreadyCurrent: names() });
      t.diagnostic(
        `reload of 3 servers: ${firstMs.toFixed(0)} ms; check of 3 current servers: ${secondMs.toFixed(0)} ms`,
      );

      // The operator's connection and the app's are still usable (reconnected where a reload
      // dropped them), and a new app connection to another server verifies the renewed
      // certificate and reaches the app.
      assert.equal(system.isClosed(), false);
      await system.flush();
      const fresh = await dial(account.creds, cluster.urls.slice(2));
      await waitUntil(
        "a request from a new connection answered by the app",
        async () => (await fresh.request("echo", "hi", { timeout: 500 })).string() === "hi",
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      assert.equal(app.isClosed(), false);
      t.diagnostic(`app connection: ${appStatuses.join(" ") || "no status change"}`);
    });

    test("a certificate no server will present: gives up at the deadline naming every server", async (t) => {
      const never = await ensureLeaf(
        undefined,
        natsServerLeaf(TEST_NAMES, LEAF_LIFETIME_MS),
        cluster.tls.ca,
        Date.now(),
      );
      const deadlineMs = 3000;
      const started = performance.now();
      const error = await reloadUntilServing(options(never.leaf.certificatePem, deadlineMs)).then(
        () => assert.fail("resolved although no server presents the certificate"),
        (e: unknown) => e,
      );
      const elapsed = performance.now() - started;
      assert.ok(error instanceof ServerReloadTimeoutError, String(error));
      assert.deepEqual([...error.stale.keys()], names());
      assert.equal(error.unanswered, 0);
      const serving = new X509Certificate(cluster.tls.server.certificatePem).serialNumber;
      for (const [name, reason] of error.stale) {
        assert.match(error.message, new RegExp(`${name} \\(`));
        assert.match(reason, new RegExp(`presents serial ${serving}$`));
      }
      t.diagnostic(`${error.message} after ${elapsed.toFixed(0)} ms`);
      assert.ok(
        elapsed >= deadlineMs && elapsed < deadlineMs + 2000,
        `gave up after ${elapsed.toFixed(0)} ms`,
      );
    });

    test("each server is asked at most once per interval, and one that cannot be reached is not asked", async () => {
      const never = await ensureLeaf(
        undefined,
        natsServerLeaf(TEST_NAMES, LEAF_LIFETIME_MS),
        cluster.tls.ca,
        Date.now(),
      );
      const [unreachable] = names();
      const asked: string[] = [];
      const logger = pino(
        { level: "info" },
        {
          write: (line: string) => {
            const entry = JSON.parse(line) as { msg: string; server?: string };
            if (entry.msg === "asked NATS server to reload its configuration" && entry.server)
              asked.push(entry.server);
          },
        },
      );
      const error = await reloadUntilServing({
        ...options(never.leaf.certificatePem, 4000),
        // A closed port: as if the pod's name did not resolve.
        endpoint: (name) =>
          name === unreachable ? { host: "127.0.0.1", port: 1 } : endpoint(name),
        logger,
      }).catch((e: unknown) => e);
      assert.ok(error instanceof ServerReloadTimeoutError, String(error));
      assert.match(error.stale.get(unreachable ?? "") ?? "", /^unreachable: /);
      // Several rounds ran within 4 s (backoff from 0.5 s), yet each reachable server was asked
      // once: the next ask would be 15 s later.
      assert.deepEqual(
        asked.sort(),
        names()
          .filter((n) => n !== unreachable)
          .sort(),
      );
    });

    test("a connection that may not publish the reload subjects fails at once, naming the subject", async () => {
      const narrow = await dial(
        systemUserCreds(
          cluster.identity.systemAccount,
          SYSTEM_USER_PUBLISH.filter((subject) => !SERVER_RELOAD_PUBLISH.includes(subject)),
        ),
      );
      const started = performance.now();
      await assert.rejects(
        reloadUntilServing(options(cluster.tls.server.certificatePem, 30_000, narrow)),
        /may not publish to \$SYS\.REQ\.SERVER\.PING/,
      );
      assert.ok(performance.now() - started < 5000);
    });
  });
}
