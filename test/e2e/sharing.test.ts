/**
 * Exports and imports between apps, on the real API server and a 3-server NATS cluster of each
 * tested version: what flows is what both sides consented to, and the servers enforce it
 * (private exports, activation tokens, revocations), not only the operator.
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Account } from "@nats-io/jwt";
import { encodeJwt, nextIat, parseJwt } from "../../src/accounts/jwt.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import type { ImportStatus } from "../../src/crds/app.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { connectWith, waitApp, waitSecret } from "./app-client.ts";
import { TOOL, run } from "./fixtures/run-tool.ts";
import {
  appManifest,
  appsApi,
  useOperatorStack,
  type OperatorStack,
  type RunningOperator,
} from "./operator-harness.ts";

const { natsServers } = await ensureToolchain();
const NS = "share";

/** Collects what a connection receives on a subject. */
function listen(nc: NatsConnection, subject: string): string[] {
  const got: string[] = [];
  nc.subscribe(subject, {
    callback: (_error, message) => {
      got.push(message.string());
    },
  });
  return got;
}

/**
 * Publishes `text` on `subject` until `got` holds it (a new import or subscription reaches the
 * other servers a moment later); fails after 10 s.
 */
async function arrives(from: NatsConnection, subject: string, text: string, got: string[]) {
  for (let i = 0; i < 100 && !got.includes(text); i++) {
    from.publish(subject, text);
    await from.flush();
    await sleep(100);
  }
  assert.ok(got.includes(text), `${text} on ${subject} did not arrive within 10 s`);
}

/** Publishes `text` a few times over a second: it must not arrive. */
async function staysAway(from: NatsConnection, subject: string, text: string, got: string[][]) {
  for (let i = 0; i < 10; i++) {
    from.publish(subject, text);
    await from.flush();
    await sleep(100);
  }
  for (const list of got) assert.ok(!list.includes(text), `${text} on ${subject} arrived`);
}

function importOf(app: AppObject, environment: string, subject: string): ImportStatus | undefined {
  return app.status?.environments
    ?.find((e) => e.name === environment)
    ?.imports?.find((i) => i.subject === subject);
}

function degraded(app: AppObject) {
  return app.status?.conditions?.find((c) => c.type === "Degraded");
}

function ready(app: AppObject): boolean {
  return app.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
}

const ORDERS = { subject: "orders.>", type: "stream" } as const;
const QUOTE = { subject: "quote", type: "service" } as const;

for (const server of natsServers) {
  describe(`sharing between apps (${server.label})`, () => {
    const stack = useOperatorStack(server.label);
    const connections: NatsConnection[] = [];
    const connect = async (s: OperatorStack, app: string, environment: string) => {
      const values = await waitSecret(s, NS, `${app}-${environment}-nats`);
      const nc = await connectWith(values, `${app}-${environment}`);
      connections.push(nc);
      return nc;
    };

    let operator: RunningOperator | undefined;

    test("a stream and a service flow where both sides consent, and nowhere else", async (t) => {
      const s = stack();
      operator = await s.startOperator();
      await operator.waitReady();
      t.after(async () => {
        await Promise.all(connections.splice(0).map((nc) => nc.close()));
      });
      await s.core.createNamespace({ body: { metadata: { name: NS } } });
      const apps = appsApi(s.custom);
      await apps.create(
        NS,
        appManifest(NS, "shop", {
          nats: {
            exports: [{ ...ORDERS, to: [{ app: "billing" }] }],
            imports: [{ ...QUOTE, from: { app: "billing" } }],
          },
          environments: ["prod", "test"],
        }),
      );
      await apps.create(
        NS,
        appManifest(NS, "billing", {
          nats: {
            exports: [{ ...QUOTE, to: [{ app: "shop" }] }],
            imports: [{ ...ORDERS, from: { app: "shop" } }],
          },
          environments: ["prod", "test"],
        }),
      );
      // Imports from shop without its consent.
      await apps.create(
        NS,
        appManifest(NS, "third", {
          nats: { imports: [{ ...ORDERS, from: { app: "shop" } }] },
          environments: ["prod"],
        }),
      );
      // Overlapping imports, which CEL cannot see, are refused by the webhook.
      await assert.rejects(
        apps.create(
          NS,
          appManifest(NS, "overlapping", {
            nats: {
              imports: [
                { ...ORDERS, from: { app: "shop" } },
                { subject: "orders.eu", type: "stream", from: { app: "billing" } },
              ],
            },
            environments: ["prod"],
          }),
        ),
        (error: unknown) =>
          (
            JSON.parse(String((error as { body?: unknown }).body)) as { message: string }
          ).message.endsWith(
            "denied the request: nats-tenancy: App share/overlapping: spec.nats.imports[1]: orders.eu overlaps nats.imports[0]'s orders.>",
          ),
      );
      const flowing = (a: AppObject) =>
        ready(a) &&
        ["prod", "test"].every((e) =>
          a.status?.environments?.find((x) => x.name === e)?.imports?.every((i) => i.active),
        );
      await waitApp(s, NS, "shop", "imports active", flowing, 60_000);
      await waitApp(s, NS, "billing", "imports active", flowing, 60_000);
      const third = await waitApp(
        s,
        NS,
        "third",
        "ImportNotAllowed",
        (a) => ready(a) && degraded(a)?.reason === "ImportNotAllowed",
      );
      assert.match(
        importOf(third, "prod", "orders.>")?.message ?? "",
        /share\/shop\/prod does not consent: its stream export orders\.> does not name share\/third\/prod/,
      );
      assert.match(
        degraded(third)?.message ?? "",
        /prod: import of orders\.> from share\/shop\/prod/,
      );
      const info = (app: string) =>
        run(TOOL, ["info", app, "--kubeconfig", s.stack.controlPlane.kubeconfigPath, "-n", NS]);
      assert.match(
        (await info("third")).stdout,
        /\n {2}imports: {5}orders\.> \(stream\) from share\/shop\/prod: ImportNotAllowed: share\/shop\/prod does not consent/,
      );
      assert.match(
        (await info("shop")).stdout,
        /prod:\n[^]*\n {2}exports: {5}orders\.> \(stream\) to share\/billing\/prod\n {2}imports: {5}quote \(service\) from share\/billing\/prod: active\n/,
      );
      const shop = await apps.get(NS, "shop");
      assert.deepEqual(shop?.status?.environments?.find((e) => e.name === "prod")?.exports, [
        { subject: "orders.>", type: "stream", importers: ["share/billing/prod"] },
      ]);

      const shopProd = await connect(s, "shop", "prod");
      const shopTest = await connect(s, "shop", "test");
      const billingProd = await connect(s, "billing", "prod");
      const billingTest = await connect(s, "billing", "test");
      const thirdProd = await connect(s, "third", "prod");
      const inShopProd = listen(shopProd, "orders.>");
      const inShopTest = listen(shopTest, "orders.>");
      const inBillingProd = listen(billingProd, "orders.>");
      const inBillingTest = listen(billingTest, "orders.>");
      const inThird = listen(thirdProd, "orders.>");
      const privateInBilling = listen(billingProd, "private.>");
      await Promise.all(
        [shopProd, shopTest, billingProd, billingTest, thirdProd].map((nc) => nc.flush()),
      );

      // shop/prod's stream reaches billing/prod; shop/test's reaches billing/test.
      await arrives(shopProd, "orders.1", "prod-1", inBillingProd);
      await arrives(shopTest, "orders.1", "test-1", inBillingTest);
      assert.ok(!inBillingTest.includes("prod-1"), "billing/test got shop/prod's message");
      assert.ok(!inShopTest.includes("prod-1"), "shop/test got shop/prod's message");
      assert.ok(!inThird.includes("prod-1"), "third got shop's message without consent");
      // Nothing but the export: shop's other subjects stay shop's.
      await staysAway(shopProd, "private.x", "private-1", [privateInBilling]);
      // billing cannot publish into shop's orders.
      await staysAway(billingProd, "orders.2", "from-billing", [inShopProd]);

      // shop's requests on quote are answered by billing/prod's service.
      const service = billingProd.subscribe("quote", {
        callback: (_error, message) => {
          message.respond(`quoted ${message.string()}`);
        },
      });
      await billingProd.flush();
      let reply = "";
      for (let i = 0; i < 50 && !reply; i++) {
        try {
          reply = (await shopProd.request("quote", "42", { timeout: 500 })).string();
        } catch {
          await sleep(100);
        }
      }
      assert.equal(reply, "quoted 42");
      // Nothing else of billing answers shop.
      billingProd.subscribe("secret", {
        callback: (_error, message) => {
          message.respond("leaked");
        },
      });
      await billingProd.flush();
      await assert.rejects(shopProd.request("secret", "x", { timeout: 1000 }));
      service.unsubscribe();
    });

    test("consent added flows without a reconnect; withdrawn, it stops at once and a stale JWT cannot bring it back", async (t) => {
      const s = stack();
      t.after(async () => {
        await Promise.all(connections.splice(0).map((nc) => nc.close()));
      });
      const apps = appsApi(s.custom);
      const shopProd = await connect(s, "shop", "prod");
      const thirdProd = await connect(s, "third", "prod");
      const inThird = listen(thirdProd, "orders.>");
      await thirdProd.flush();

      await apps.patchSpec(NS, "shop", {
        nats: {
          exports: [{ ...ORDERS, to: [{ app: "billing" }, { app: "third" }] }],
          imports: [{ ...QUOTE, from: { app: "billing" } }],
        },
      });
      const active = await waitApp(
        s,
        NS,
        "third",
        "import active",
        (a) => importOf(a, "prod", "orders.>")?.active === true && degraded(a)?.status === "False",
      );
      assert.equal(
        active.status?.conditions?.find((c) => c.type === "Degraded")?.reason,
        "AsExpected",
      );
      await arrives(shopProd, "orders.3", "consented", inThird);

      // The importer's account JWT while it imports, as a copy someone might push again.
      const resolver = await s.resolver();
      t.after(() => resolver.close());
      const thirdAccount =
        active.status.environments?.find((e) => e.name === "prod")?.account ?? "";
      const [stale] = await resolver.lookup(thirdAccount);
      assert.ok(stale && (parseJwt<Account>(stale).nats.imports ?? []).length === 1);

      await apps.patchSpec(NS, "shop", {
        nats: {
          exports: [{ ...ORDERS, to: [{ app: "billing" }] }],
          imports: [{ ...QUOTE, from: { app: "billing" } }],
        },
      });
      await waitApp(
        s,
        NS,
        "third",
        "ImportNotAllowed again",
        (a) => importOf(a, "prod", "orders.>")?.reason === "ImportNotAllowed",
      );
      const shop = await apps.get(NS, "shop");
      const shopAccount = shop?.status?.environments?.find((e) => e.name === "prod")?.account ?? "";
      const [exporter] = await resolver.lookup(shopAccount);
      assert.ok(
        parseJwt<Account>(exporter ?? "").nats.exports?.[0]?.revocations?.[thirdAccount],
        "the export revokes third's activation",
      );
      // The still-connected subscriber gets nothing more.
      await staysAway(shopProd, "orders.4", "withdrawn", [inThird]);

      // A copy of the old JWT, pushed with a newer iat, carries the old token: revoked.
      const claims = parseJwt<Record<string, unknown>>(stale);
      const { type: _type, version: _version, ...nats } = claims.nats as Record<string, unknown>;
      const current = (await resolver.lookup(thirdAccount))[0];
      const replay = encodeJwt(
        { name: claims.name, sub: thirdAccount, type: "account", nats },
        s.identity.signing,
        nextIat(current, Date.now()),
      );
      await resolver.push(replay, s.identity);
      assert.deepEqual(new Set(await resolver.lookup(thirdAccount)), new Set([replay]));
      await staysAway(shopProd, "orders.5", "replayed", [inThird]);
    });

    test("another namespace imports only with consent naming it, and learns nothing else", async (t) => {
      const s = stack();
      t.after(async () => {
        await Promise.all(connections.splice(0).map((nc) => nc.close()));
      });
      const apps = appsApi(s.custom);
      await s.core.createNamespace({ body: { metadata: { name: "elsewhere" } } });
      await apps.create(
        "elsewhere",
        appManifest("elsewhere", "reader", {
          nats: { imports: [{ ...ORDERS, from: { app: "shop", namespace: NS } }] },
          environments: ["prod"],
        }),
      );
      const refused = await waitApp(
        s,
        "elsewhere",
        "reader",
        "ImportNotAllowed",
        (a) => ready(a) && importOf(a, "prod", "orders.>")?.reason === "ImportNotAllowed",
      );
      // Not which exports share/shop has, nor whom they name.
      assert.equal(
        importOf(refused, "prod", "orders.>")?.message,
        "share/shop/prod does not export orders.> (stream) to elsewhere/reader/prod",
      );
      await apps.patchSpec(NS, "shop", {
        nats: {
          exports: [
            { ...ORDERS, to: [{ app: "billing" }, { app: "reader", namespace: "elsewhere" }] },
          ],
          imports: [{ ...QUOTE, from: { app: "billing" } }],
        },
      });
      await waitApp(
        s,
        "elsewhere",
        "reader",
        "import active",
        (a) => importOf(a, "prod", "orders.>")?.active === true,
      );
      const values = await waitSecret(s, "elsewhere", "reader-prod-nats");
      const reader = await connectWith(values, "reader-prod");
      connections.push(reader);
      const inReader = listen(reader, "orders.>");
      await reader.flush();
      await arrives(await connect(s, "shop", "prod"), "orders.6", "across", inReader);
    });

    test("an exporter deleted: its importers report the broken import and keep their own subjects", async (t) => {
      const s = stack();
      t.after(async () => {
        await Promise.all(connections.splice(0).map((nc) => nc.close()));
      });
      const apps = appsApi(s.custom);
      const billingProd = await connect(s, "billing", "prod");
      const peer = await connect(s, "billing", "prod");
      await apps.delete(NS, "shop");
      const billing = await waitApp(
        s,
        NS,
        "billing",
        "ImportUnavailable",
        (a) => importOf(a, "prod", "orders.>")?.reason === "ImportUnavailable",
      );
      assert.ok(ready(billing), "billing stays Ready");
      assert.equal(degraded(billing)?.reason, "ImportUnavailable");
      assert.match(
        importOf(billing, "prod", "orders.>")?.message ?? "",
        /share\/shop\/prod has no NATS account/,
      );
      const inPeer = listen(peer, "own.>");
      await peer.flush();
      await arrives(billingProd, "own.1", "still-here", inPeer);
    });

    test("a restart over sharing Apps writes and pushes nothing", async () => {
      const s = stack();
      await operator?.waitSettled(3000);
      await operator?.stop();
      const writesBefore = s.operatorWrites().length;
      const pushes = await s.pushCounter();
      try {
        const next = await s.startOperator();
        await next.waitReady();
        await next.waitSettled(3000);
        assert.deepEqual(s.operatorWrites().slice(writesBefore), [], "the restart wrote");
        assert.equal(pushes.updates(), 0, "the restart pushed");
      } finally {
        await pushes.close();
      }
    });
  });
}
