/**
 * Rotation on demand, on the real API server and a 3-server NATS cluster of each tested
 * version: the old credentials keep working while connections use them, the new ones work at
 * once, and the old ones are refused by every server once revoked.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import {
  ROTATE_ANNOTATION,
  ROTATE_SIGNING_KEY_ANNOTATION,
} from "../../src/contract/credential-rotation.ts";
import { credsJwt } from "../../src/accounts/identities.ts";
import { parseJwt } from "../../src/accounts/jwt.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { OVERLAP_RECHECK_MS } from "../../src/controller/apps/credential-schedule.ts";
import { connectWith, refused, waitApp, waitSecret } from "./app-client.ts";
import {
  appManifest,
  appsApi,
  readyAtGeneration,
  secretValues,
  useOperatorStack,
  type OperatorStack,
  type RunningOperator,
} from "./operator-harness.ts";

const { natsServers } = await ensureToolchain();
/** Long: the first test must finish its checks well within it, also on a loaded machine. */
const OVERLAP_SECONDS = 60;
/** Short: the second test waits it out. */
const SHORT_OVERLAP_SECONDS = 10;
const LIFETIME_SECONDS = 60;
/** Ends with the old user's expiry: renewed at 40 s, revoked at 60 s at the latest. */
const RENEWAL_OVERLAP_SECONDS = 20;

function rotationOf(app: AppObject, environment: string) {
  return app.status?.environments?.find((e) => e.name === environment)?.rotation;
}

function signingKeyOf(app: AppObject, environment: string) {
  return app.status?.environments?.find((e) => e.name === environment)?.signingKey;
}

/** The key that signed the user of a Secret's credentials. */
function signerOf(values: Record<string, string>): string {
  return parseJwt(credsJwt(values.NATS_CREDENTIALS ?? "") ?? "").iss;
}

/**
 * Messages flow from `from` to `to`: both connected, in the same account. On two servers the
 * subscription reaches the publisher's server a moment later, over the route: publish until
 * it arrives.
 */
async function talks(from: NatsConnection, to: NatsConnection): Promise<void> {
  const subject = `check.${String(Math.random()).slice(2)}`;
  const got = { message: false };
  to.subscribe(subject, {
    max: 1,
    callback: () => {
      got.message = true;
    },
  });
  await to.flush();
  for (let i = 0; i < 50 && !got.message; i++) {
    from.publish(subject, "hi");
    await sleep(100);
  }
  assert.ok(got.message, "no message between the two connections within 5 s");
}

async function eventsOf(s: OperatorStack, namespace: string, reason: string) {
  const events = await s.core.listNamespacedEvent({ namespace });
  return events.items.filter((e) => e.reason === reason);
}

/** An App with prod and test, Ready; the prod Secret's values. */
async function readyApp(s: OperatorStack, namespace: string, name: string) {
  await s.core.createNamespace({ body: { metadata: { name: namespace } } });
  await appsApi(s.custom).create(
    namespace,
    appManifest(namespace, name, { nats: true, environments: ["prod", "test"] }),
  );
  await waitApp(s, namespace, name, "Ready", readyAtGeneration);
  return {
    prod: await waitSecret(s, namespace, `${name}-prod-nats`),
    test: await waitSecret(s, namespace, `${name}-test-nats`),
  };
}

/** Asks for new prod credentials; the Secret's values once they changed. */
async function rotateProd(s: OperatorStack, namespace: string, name: string, old: string) {
  await appsApi(s.custom).annotate(namespace, name, { [ROTATE_ANNOTATION]: "prod=1" });
  return waitSecret(s, namespace, `${name}-prod-nats`, (v) => v.NATS_CREDENTIALS !== old);
}

/** Starts the suite's operator anew with these flags (the old one stopped first). */
async function restartOperator(
  s: OperatorStack,
  previous: RunningOperator | undefined,
  args: string[],
): Promise<RunningOperator> {
  if (previous) await previous.stop();
  const operator = await s.startOperator({ args });
  await operator.waitReady();
  return operator;
}

for (const server of natsServers) {
  describe(`credential rotation (${server.label})`, () => {
    const stack = useOperatorStack(server.label);
    let operator: RunningOperator | undefined;

    test("old credentials work while in use, new ones at once; once the last old connection closes every server refuses the old ones", async () => {
      const s = stack();
      operator = await restartOperator(s, operator, [
        `--rotation-overlap-seconds=${String(OVERLAP_SECONDS)}`,
      ]);
      const urls = s.stack.nats.tlsUrls;
      const before = await readyApp(s, "rotate", "orders");
      // One connection with the old credentials on each server.
      const olds = await Promise.all(
        urls.map((url, i) => connectWith(before.prod, `old-${i}`, url)),
      );
      const fresh = await rotateProd(s, "rotate", "orders", before.prod.NATS_CREDENTIALS ?? "");
      const app = await waitApp(
        s,
        "rotate",
        "orders",
        "prod overlapping",
        (a) => rotationOf(a, "prod")?.state === "Overlapping",
      );
      const revokeBy = Date.parse(rotationOf(app, "prod")?.revokeBy ?? "");
      const news = await Promise.all(urls.map((url, i) => connectWith(fresh, `new-${i}`, url)));
      try {
        // The same account: old and new connections talk to each other, on any server.
        await talks(news[2] ?? assert.fail(), olds[0] ?? assert.fail());
        await talks(olds[1] ?? assert.fail(), news[0] ?? assert.fail());
        assert.equal(
          (await waitSecret(s, "rotate", "orders-test-nats")).NATS_CREDENTIALS,
          before.test.NATS_CREDENTIALS,
          "test was rotated too",
        );
        assert.equal((await eventsOf(s, "rotate", "CredentialsRotated")).length, 1);

        // One old connection left: the overlap goes on past a check or more.
        await Promise.all([olds[0]?.close(), olds[1]?.close()]);
        await sleep(OVERLAP_RECHECK_MS + 1000);
        const still = await appsApi(s.custom).get("rotate", "orders");
        assert.equal(still && rotationOf(still, "prod")?.state, "Overlapping");
        await olds[2]?.flush();

        await olds[2]?.close();
        await waitApp(
          s,
          "rotate",
          "orders",
          "prod rotation done",
          (a) => rotationOf(a, "prod")?.state === "Done",
        );
        assert.ok(Date.now() < revokeBy, "the overlap ran to its end although nothing used it");
        for (const url of urls)
          assert.ok(await refused(before.prod, url), `${url} still takes the old credentials`);
        for (const nc of news) await nc.flush();
        assert.ok(!(await refused(fresh)), "the new credentials stopped working");
        const [revoked] = await eventsOf(s, "rotate", "CredentialsRevoked");
        assert.equal(revoked?.type, "Normal");
      } finally {
        await Promise.all(
          [...olds, ...news].filter((nc) => !nc.isClosed()).map((nc) => nc.close()),
        );
      }
    });

    test("a new signing key: its credentials work at once, every connection carries on through it, and once the old key leaves every server refuses what it signed and closes its connections", async () => {
      const s = stack();
      operator ??= await restartOperator(s, operator, [
        `--rotation-overlap-seconds=${String(OVERLAP_SECONDS)}`,
      ]);
      const urls = s.stack.nats.tlsUrls;
      const before = await readyApp(s, "signing", "ledger");
      const olds = await Promise.all(
        urls.map((url, i) => connectWith(before.prod, `old-${i}`, url)),
      );
      const otherEnvironment = await connectWith(before.test, "test");
      await appsApi(s.custom).annotate("signing", "ledger", {
        [ROTATE_SIGNING_KEY_ANNOTATION]: "prod=1",
      });
      const fresh = await waitSecret(
        s,
        "signing",
        "ledger-prod-nats",
        (v) => v.NATS_CREDENTIALS !== before.prod.NATS_CREDENTIALS,
      );
      const app = await waitApp(s, "signing", "ledger", "prod's old key overlapping", (a) =>
        Boolean(signingKeyOf(a, "prod")?.oldKey),
      );
      const held = signingKeyOf(app, "prod");
      assert.equal(held?.key, signerOf(fresh));
      assert.equal(held.oldKey, signerOf(before.prod));
      assert.equal(held.requested, "prod=1");
      const news = await Promise.all(urls.map((url, i) => connectWith(fresh, `new-${i}`, url)));
      const closed = olds[0]?.closed() ?? assert.fail();
      try {
        // One account, both keys: old and new connections talk to each other on any server.
        await talks(news[1] ?? assert.fail(), olds[2] ?? assert.fail());
        await talks(olds[0] ?? assert.fail(), news[2] ?? assert.fail());
        assert.equal((await eventsOf(s, "signing", "SigningKeyRotated")).length, 1);

        // New credentials while the old key overlaps end that overlap at once: the old key
        // leaves, though a connection it signed is still open.
        await Promise.all([olds[1]?.close(), olds[2]?.close()]);
        await appsApi(s.custom).annotate("signing", "ledger", { [ROTATE_ANNOTATION]: "prod=2" });
        await waitApp(
          s,
          "signing",
          "ledger",
          "prod's old key gone",
          (a) => signingKeyOf(a, "prod")?.oldKey === undefined,
        );
        // The server closes it without a word (no -ERR), so the client's close is the sign.
        const gone = await Promise.race([closed.then(() => "closed"), sleep(10_000, "open")]);
        assert.equal(gone, "closed", "the old key's connection is still open");
        for (const url of urls)
          assert.ok(await refused(before.prod, url), `${url} still takes the old key's users`);
        // The new key's user now retires in its turn, yet works on: its key stays.
        for (const nc of news) assert.ok(!nc.isClosed(), "a connection of the new key closed");
        await talks(news[0] ?? assert.fail(), news[1] ?? assert.fail());
        assert.ok(!(await refused(fresh)), "the new key's credentials stopped working");
        await otherEnvironment.flush();
        assert.equal(
          (await waitSecret(s, "signing", "ledger-test-nats")).NATS_CREDENTIALS,
          before.test.NATS_CREDENTIALS,
          "test's credentials changed",
        );
      } finally {
        await Promise.all(
          [...olds, ...news, otherEnvironment]
            .filter((nc) => !nc.isClosed())
            .map((nc) => nc.close()),
        );
      }
    });

    // Waiting out overlaps and lifetimes: on the newest server only (the first two tests show
    // revocation on both).
    if (server !== natsServers.at(-1)) return;

    test("at the end of the longest overlap the old credentials are revoked even in use, and their connection closed", async () => {
      const s = stack();
      operator = await restartOperator(s, operator, [
        `--rotation-overlap-seconds=${String(SHORT_OVERLAP_SECONDS)}`,
      ]);
      const before = await readyApp(s, "deadline", "billing");
      const old = await connectWith(before.prod, "holds-on");
      const closed = old.closed();
      const asked = Date.now();
      await rotateProd(s, "deadline", "billing", before.prod.NATS_CREDENTIALS ?? "");
      await old.flush();
      await waitApp(
        s,
        "deadline",
        "billing",
        "prod rotation done",
        (a) => rotationOf(a, "prod")?.state === "Done",
        (SHORT_OVERLAP_SECONDS + 30) * 1000,
      );
      assert.ok(
        Date.now() - asked >= (SHORT_OVERLAP_SECONDS - 1) * 1000,
        "revoked before the overlap ended",
      );
      const error = await Promise.race([closed, sleep(5000, "still open")]);
      assert.match(String(error), /revoked/i);
      assert.ok(await refused(before.prod));
      const [revoked] = await eventsOf(s, "deadline", "CredentialsRevoked");
      assert.equal(revoked?.type, "Warning");
    });

    test("credentials that expire in a minute are renewed before they do; an app that reads its file again never fails to connect", async () => {
      const s = stack();
      // The lifetime is the platform's: a controller started with it.
      operator = await restartOperator(s, operator, [
        `--credential-lifetime-seconds=${String(LIFETIME_SECONDS)}`,
        "--credential-lifetime-min-seconds=60",
        `--rotation-overlap-seconds=${String(RENEWAL_OVERLAP_SECONDS)}`,
      ]);
      const before = await readyApp(s, "expiry", "clock");
      const app = await appsApi(s.custom).get("expiry", "clock");
      const held = app?.status?.environments?.find((e) => e.name === "prod")?.credentials;
      assert.equal(held?.lifetimeSeconds, LIFETIME_SECONDS);
      const expires = Date.parse(held.expires);

      // The kubelet's part: the mounted file follows the Secret.
      const dir = mkdtempSync(join(tmpdir(), "nats-tenancy-expiry-"));
      const credsFile = join(dir, "nats.creds");
      writeFileSync(credsFile, before.prod.NATS_CREDENTIALS ?? "");
      const kubelet = { on: true };
      const sync = (async () => {
        while (kubelet.on) {
          const values = await secretValues(s.core, "expiry", "clock-prod-nats");
          if (values?.NATS_CREDENTIALS) writeFileSync(credsFile, values.NATS_CREDENTIALS);
          await sleep(1000);
        }
      })();
      const caFile = join(dir, "ca.crt");
      writeFileSync(caFile, before.prod["ca.crt"] ?? "");
      // The documented pattern: the function form reads the file on every (re)connect.
      const nc = await connect({
        servers: (before.prod.NATS_URL ?? "").split(","),
        authenticator: credsAuthenticator(() => readFileSync(credsFile)),
        tls: { caFile },
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
      });
      const events: string[] = [];
      void (async () => {
        for await (const status of nc.status())
          events.push(`${status.type} ${JSON.stringify(status)}`);
      })();
      nc.subscribe("echo", {
        callback: (_error, msg) => {
          msg.respond(msg.data);
        },
      });
      try {
        // Past the first lifetime: the renewal, the overlap and the revocation all happened.
        await waitApp(
          s,
          "expiry",
          "clock",
          "prod renewed and the replaced user revoked",
          (a) => {
            const prod = a.status?.environments?.find((e) => e.name === "prod");
            return Date.parse(prod?.credentials?.expires ?? "") > expires && !prod?.rotation;
          },
          (LIFETIME_SECONDS + RENEWAL_OVERLAP_SECONDS + 30) * 1000,
        );
        assert.ok(Date.now() > expires - 1000 || (await refused(before.prod)));
        // The server closes the old user's connection as the status changes; the client comes
        // back a moment later.
        await waitUntil(
          `a reconnect (${events.join("; ")})`,
          () => Promise.resolve(events.some((e) => e.startsWith("reconnect "))),
          { timeoutMs: 15_000, intervalMs: 250 },
        );
        assert.equal(
          (await nc.request("echo", "still here", { timeout: 5000 })).string(),
          "still here",
        );
        assert.ok(
          !events.some((e) => /authorization violation/i.test(e)),
          `a connect was refused: ${events.join("; ")}`,
        );
        assert.equal((await eventsOf(s, "expiry", "CredentialsRenewed")).length, 1);
      } finally {
        kubelet.on = false;
        await sync;
        await nc.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
