import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { mintAppAccount, type MintedAccount } from "../../src/accounts/app-account.ts";
import { caBundle, stepCa, type CaPolicy } from "../../src/ca/authority.ts";
import { ensureLeaf, natsRouteLeaf, natsServerLeaf, type LeafSpec } from "../../src/ca/leaves.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  LEAF_LIFETIME_MS,
  connectResolver,
  pushTestAccount,
  TEST_NAMES,
  startOperatorCluster,
  type OperatorCluster,
  type TlsMaterial,
} from "./operator-cluster.ts";
import { presentedCertificate } from "../../src/nats/server-reload.ts";
import { printLogsOnFailure } from "./harness.ts";

const { natsServers } = await ensureToolchain();
const encoder = new TextEncoder();

/** The serial of the certificate a server presents now (read INFO, then the TLS upgrade). */
async function presentedSerial(
  port: number,
  ca: string,
  servername = "localhost",
): Promise<string> {
  const certificate = await presentedCertificate({ host: "127.0.0.1", port, servername }, ca);
  return certificate.serialNumber.toUpperCase();
}

const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toUpperCase();

for (const server of natsServers) {
  describe(`TLS from the operator's CA on a 3-node cluster (${server.label})`, () => {
    let cluster: OperatorCluster;
    let account: MintedAccount;
    const open: NatsConnection[] = [];

    before(async () => {
      cluster = await startOperatorCluster(server.path);
      account = await pushTestAccount(cluster, {
        namespace: "tls",
        app: "client",
        environment: "prod",
      });
    });
    printLogsOnFailure("nats cluster", () => cluster);
    after(async () => {
      await Promise.allSettled(open.map((c) => c.close()));
      await cluster.stop();
    });

    const client = async (
      url: string,
      tls: { caFile?: string; ca?: string } | undefined,
      reconnect = false,
    ): Promise<NatsConnection> => {
      const nc = await connect({
        servers: url,
        authenticator: credsAuthenticator(encoder.encode(account.creds)),
        ...(tls ? { tls } : {}),
        reconnect,
        reconnectTimeWait: 100,
        timeout: 3000,
      });
      open.push(nc);
      return nc;
    };
    const node = (i: number): { port: number; url: (host?: string) => string } => {
      const port = cluster.nodes[i]?.address.clientPort ?? 0;
      return { port, url: (host = "localhost") => `tls://${host}:${port}` };
    };

    test("a client that trusts the bundle connects and the host name is verified; one without it fails", async () => {
      await (await client(node(0).url(), { caFile: cluster.caFile })).flush();
      await (await client(node(1).url("127.0.0.1"), { caFile: cluster.caFile })).flush();
      await assert.rejects(
        client(node(0).url(), { ca: undefined }),
        /self[- ]signed|unable to verify|certificate/i,
      );

      // A certificate that does not name the host the client dialled is refused. (nats.js checks
      // a server dialled by IP address against "localhost", so the host here is a name.)
      const narrow = await ensureLeaf(
        undefined,
        {
          ...natsServerLeaf({ ...TEST_NAMES, loopback: false }, LEAF_LIFETIME_MS),
          ipAddresses: ["127.0.0.1"],
        },
        cluster.tls.ca,
        Date.now(),
      );
      const original = cluster.tls;
      const served = (pem: string) => async () =>
        (await presentedSerial(
          node(2).port,
          caBundle(original.ca),
          "nats.nats-tenancy-system.svc",
        )) === serialOf(pem);
      cluster.reloadTls({ ...original, server: narrow.leaf });
      await waitUntil("narrow certificate served", served(narrow.leaf.certificatePem), {
        timeoutMs: 10_000,
      });
      await assert.rejects(
        client(node(2).url(), { caFile: cluster.caFile }),
        /Host: localhost\. is not in the cert's altnames|altnames/i,
      );
      cluster.reloadTls(original);
      await waitUntil("original certificate served", served(original.server.certificatePem), {
        timeoutMs: 10_000,
      });
      await (await client(node(2).url(), { caFile: cluster.caFile })).flush();
    });

    // A reload in operator mode makes nats-server close client connections (its log says
    // "Client Closed" right after "Reloaded: accounts", even for an unchanged file); apps
    // reconnect, as the default client options do, with the same CA bundle.
    test("the server certificate is renewed and reloaded while clients publish: clients reconnect with the bundle", async (t) => {
      const subscriber = await client(node(2).url(), { caFile: cluster.caFile }, true);
      const publisher = await client(node(0).url(), { caFile: cluster.caFile }, true);
      const statuses: string[] = [];
      for (const nc of [subscriber, publisher]) {
        void (async () => {
          for await (const s of nc.status())
            if (["disconnect", "reconnect", "close"].includes(s.type)) statuses.push(s.type);
        })();
      }
      const seen = new Set<number>();
      subscriber.subscribe("ticks", {
        callback: (_e, m) => {
          seen.add(Number(m.string()));
        },
      });
      await subscriber.flush();
      let sent = 0;
      const tick = (): void => {
        sent += 1;
        publisher.publish("ticks", String(sent));
      };
      await waitUntil(
        "route interest",
        async () => {
          tick();
          await publisher.flush();
          return seen.size > 0;
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      const ticker = setInterval(tick, 2);
      const renewed = await ensureLeaf(
        undefined,
        natsServerLeaf(TEST_NAMES, LEAF_LIFETIME_MS),
        cluster.tls.ca,
        Date.now(),
      );
      try {
        await new Promise((r) => setTimeout(r, 300));
        cluster.reloadTls({ ...cluster.tls, server: renewed.leaf });
        await waitUntil(
          "renewed certificate served by every node",
          async () => {
            for (const i of [0, 1, 2]) {
              if (
                (await presentedSerial(node(i).port, caBundle(cluster.tls.ca))) !==
                serialOf(renewed.leaf.certificatePem)
              )
                return false;
            }
            return true;
          },
          { timeoutMs: 10_000 },
        );
        // Both clients are back (reconnected over TLS with the same bundle) and messages flow.
        const before = sent;
        await waitUntil(
          "messages flow again after the reload",
          async () => {
            await publisher.flush();
            return [...seen].some((n) => n > before);
          },
          { timeoutMs: 15_000, intervalMs: 100 },
        );
      } finally {
        clearInterval(ticker);
      }
      assert.ok(!statuses.includes("close"), "no client gave up");
      assert.equal(
        statuses.filter((x) => x === "reconnect").length,
        statuses.filter((x) => x === "disconnect").length,
      );
      assert.ok(
        [...seen].every((n) => n >= 1 && n <= sent),
        "nothing delivered that was not sent",
      );
      t.diagnostic(
        `sent ${sent}, delivered ${seen.size}, lost ${sent - seen.size} (at-most-once across the reconnect); statuses: ${statuses.join(" ") || "none"}`,
      );
      // New clients get the renewed certificate and verify it with the same bundle.
      await (await client(node(1).url(), { caFile: cluster.caFile })).flush();
    });
  });
}

// Real time, short lifetimes: the servers and clients check validity against the real clock.
const SHORT: CaPolicy = {
  caLifetimeMs: 24_000,
  overlapMs: 6_000,
  backdateMs: 1_000,
  commonName: "short-lived test CA",
};
const shortLeaf = (leaf: LeafSpec): LeafSpec => ({
  ...leaf,
  lifetimeMs: 12_000,
  backdateMs: 1_000,
});

for (const server of natsServers) {
  describe(`a full CA rotation with connected clients (${server.label})`, () => {
    test("no client holding the current bundle ever fails, and connected clients come back", async () => {
      const now0 = Date.now();
      const first = (await stepCa(undefined, SHORT, now0, false)).state;
      let material: TlsMaterial = {
        ca: first,
        server: (await ensureLeaf(undefined, shortLeaf(natsServerLeaf(TEST_NAMES, 0)), first, now0))
          .leaf,
        route: (await ensureLeaf(undefined, shortLeaf(natsRouteLeaf(TEST_NAMES, 0)), first, now0))
          .leaf,
      };
      const cluster = await startOperatorCluster(server.path, material);
      const open: NatsConnection[] = [];
      try {
        const account = mintAppAccount(
          { namespace: "rot", app: "client", environment: "prod" },
          cluster.identity,
        );
        const resolver = await connectResolver(cluster);
        await resolver.push(account.stored.accountJwt, cluster.identity);
        await resolver.close();
        const dial = async (
          i: number,
          tls: { caFile?: string; ca?: string },
          reconnect = false,
        ): Promise<NatsConnection> => {
          const nc = await connect({
            servers: `tls://localhost:${cluster.nodes[i]?.address.clientPort ?? 0}`,
            authenticator: credsAuthenticator(encoder.encode(account.creds)),
            tls,
            reconnect,
            reconnectTimeWait: 100,
            maxReconnectAttempts: -1,
            timeout: 3000,
          });
          open.push(nc);
          return nc;
        };
        // Reconnects read the CA file anew, as an app's credsAuthenticator/caFile setup does.
        const longLived = await dial(0, { caFile: cluster.caFile }, true);
        let dropped = false;
        void longLived.closed().then(() => (dropped = true));
        let bundleBefore = caBundle(material.ca);
        const events: string[] = [];
        const deadline = Date.now() + 60_000;
        while (!events.includes("retired-dropped") && Date.now() < deadline) {
          const now = Date.now();
          const active = new X509Certificate(material.ca.active.certificatePem);
          const leavesCurrent = [material.server, material.route].every((l) =>
            new X509Certificate(l.certificatePem).checkIssued(active),
          );
          const step = await stepCa(material.ca, SHORT, now, leavesCurrent);
          const serverLeaf = await ensureLeaf(
            material.server,
            shortLeaf(natsServerLeaf(TEST_NAMES, 0)),
            step.state,
            now,
          );
          const routeLeaf = await ensureLeaf(
            material.route,
            shortLeaf(natsRouteLeaf(TEST_NAMES, 0)),
            step.state,
            now,
          );
          if (!step.changed && !serverLeaf.reason && !routeLeaf.reason) {
            await new Promise((r) => setTimeout(r, 200));
            continue;
          }
          events.push(step.reason ?? `leaf ${serverLeaf.reason ?? routeLeaf.reason ?? ""}`);
          material = { ca: step.state, server: serverLeaf.leaf, route: routeLeaf.leaf };
          cluster.reloadTls(material);
          const expected = serialOf(material.server.certificatePem);
          await waitUntil(
            `new material served after ${events.join(", ")}`,
            async () => {
              for (const i of [0, 1, 2]) {
                const port = cluster.nodes[i]?.address.clientPort ?? 0;
                if ((await presentedSerial(port, caBundle(material.ca))) !== expected) return false;
              }
              return true;
            },
            { timeoutMs: 5_000, intervalMs: 50 },
          );
          // One client that re-read the CA file, and one that has not since the last change.
          await (await dial(1, { caFile: cluster.caFile })).flush();
          await (await dial(2, { ca: bundleBefore })).flush();
          bundleBefore = caBundle(material.ca);
          await waitUntil(
            "the long-lived client is back",
            async () => {
              await longLived.flush();
              return true;
            },
            { timeoutMs: 10_000, intervalMs: 100 },
          );
        }
        // With lifetimes this short the new CA may reach its own renewal point before the old
        // one leaves; the three phases must still come in order.
        const at = (reason: string): number => events.indexOf(reason);
        assert.ok(
          at("next-created") >= 0 &&
            at("next-created") < at("promoted") &&
            at("promoted") < at("retired-dropped"),
          events.join(", "),
        );
        assert.equal(readFileSync(cluster.caFile, "utf8"), caBundle(material.ca));
        assert.equal(dropped, false, "the long-lived client never gave up");
        for (const node of cluster.nodes)
          assert.equal((await node.routedPeers()).length, 2, "routes survived");
        // The first CA has left the bundle: a client that trusts only it is refused now.
        await assert.rejects(
          dial(0, { ca: first.active.certificatePem }),
          /certificate|verify|expired/i,
        );
      } finally {
        await Promise.allSettled(open.map((c) => c.close()));
        await cluster.stop();
      }
    });
  });
}
