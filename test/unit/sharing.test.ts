import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Account } from "@nats-io/jwt";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { generateOperatorSeeds, loadOperatorIdentity } from "../../src/accounts/identities.ts";
import { decodeJwt } from "../../src/accounts/jwt.ts";
import { accountFields, storedAccount } from "../../src/accounts/key-store.ts";
import { NKey } from "../../src/accounts/nkey.ts";
import { sharedClaims, sharingOf } from "../../src/accounts/sharing.ts";
import { covers, exportIssue, overlap, subjectIssue } from "../../src/accounts/subjects.ts";
import { APP_API_VERSION, appSpecIssues } from "../../src/crds/app.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import { sharingPlan } from "../../src/controller/apps/sharing-plan.ts";

describe("subjects", () => {
  test("syntax: tokens, '*' as a token, '>' last", () => {
    for (const ok of ["orders", "orders.>", "a.*.c", ">", "*", "$SYS.x", "a-b_c.1"])
      assert.equal(subjectIssue(ok), undefined, ok);
    for (const bad of ["", "a..b", ".a", "a.", "a.>.b", "a b", "a*", "or>ders", "x".repeat(257)])
      assert.notEqual(subjectIssue(bad), undefined, bad);
  });

  test("exports start with a literal token outside the servers' spaces", () => {
    assert.equal(exportIssue("orders.>"), undefined);
    for (const bad of ["$SYS.>", "$JS.API.x", "_INBOX.>", "*.orders", ">", "$SYS"])
      assert.notEqual(exportIssue(bad), undefined, bad);
  });

  test("covers: every subject the inner one matches, the outer one matches", () => {
    assert.ok(covers("orders.>", "orders.eu.>"));
    assert.ok(covers("orders.>", "orders.eu"));
    assert.ok(covers("orders.*", "orders.eu"));
    assert.ok(covers("orders.*", "orders.*"));
    assert.ok(covers("quote", "quote"));
    assert.ok(!covers("orders.>", "orders"));
    assert.ok(!covers("orders.eu", "orders.*"));
    assert.ok(!covers("orders.*", "orders.>"));
    assert.ok(!covers("orders.*", "orders.eu.x"));
    assert.ok(!covers("orders", "billing"));
  });

  test("overlap: some subject matches both", () => {
    assert.ok(overlap("orders.>", "orders.eu"));
    assert.ok(overlap("orders.*", "*.eu"));
    assert.ok(overlap("a.>", "*.b.c"));
    assert.ok(!overlap("orders.>", "orders"));
    assert.ok(!overlap("a.b", "a.c"));
    assert.ok(!overlap("a.*", "a.b.c"));
  });
});

describe("sharing in the App spec", () => {
  const spec = (nats: object) => ({ nats, environments: ["prod"] });
  const stream = (subject: string) => ({ subject, type: "stream", to: [{ app: "b" }] });

  test("exports and imports that fit are accepted", () => {
    assert.deepEqual(
      appSpecIssues(
        spec({
          exports: [stream("orders.>")],
          imports: [
            { from: { app: "shop" }, subject: "quote.*", type: "service", localSubject: "q.*" },
          ],
        }),
      ),
      [],
    );
  });

  test("reserved, repeated and overlapping subjects are reported with their place", () => {
    assert.deepEqual(
      appSpecIssues(
        spec({
          exports: [stream("$JS.API.>"), stream("orders.>"), stream("orders.>")],
          imports: [
            { from: { app: "a" }, subject: "x.*", type: "stream", localSubject: "x.y" },
            { from: { app: "a" }, subject: "in.>", type: "stream" },
            { from: { app: "b" }, subject: "in.eu", type: "stream" },
            { from: { app: "c" }, subject: "orders.eu", type: "stream" },
          ],
        }),
      ).map((i) => `${i.path}: ${i.message}`),
      [
        'nats.exports[0].subject: must not be in $SYS, $JS, _INBOX; got "$JS.API.>"',
        "nats.exports[2].subject: repeats nats.exports[1]'s orders.>",
        "nats.imports[0].localSubject: must have the same wildcards as subject x.*; got x.y",
        "nats.imports[2]: in.eu overlaps nats.imports[1]'s in.>",
        "nats.imports[3]: orders.eu overlaps this app's own export orders.>",
      ],
    );
  });
});

describe("shared claims", () => {
  const operator = loadOperatorIdentity("test", generateOperatorSeeds());
  const where = { namespace: "shop", app: "shop", environment: "prod" };
  const billing = NKey.generate("account").publicKey;
  const other = NKey.generate("account").publicKey;

  test("a private export with an activation per consumer", () => {
    const minted = mintAppAccount(
      {
        ...where,
        sharing: {
          exports: [{ subject: "orders.>", type: "stream", consumers: [billing] }],
          imports: [],
        },
      },
      operator,
    );
    const claims = decodeJwt<Account>(minted.stored.accountJwt).nats;
    assert.deepEqual(claims.exports, [
      { name: "orders.>", subject: "orders.>", type: "stream", token_req: true },
    ]);
    assert.equal(claims.limits?.exports, 1);
    assert.equal(claims.limits.imports, 0);
    const [activation] = minted.stored.activations ?? [];
    assert.ok(activation);
    const token = decodeJwt<{ subject: string; kind: string }>(activation.token);
    assert.equal(token.iss, minted.publicKey);
    assert.equal(token.sub, billing);
    assert.deepEqual(token.nats, {
      subject: "orders.>",
      kind: "stream",
      type: "activation",
      version: 2,
    });
    // Kept through the store, and again by the next mint.
    const again = storedAccount("x", accountFields(minted.stored));
    assert.deepEqual(again.activations, minted.stored.activations);
    const same = mintAppAccount(
      {
        ...where,
        sharing: {
          exports: [{ subject: "orders.>", type: "stream", consumers: [billing] }],
          imports: [],
        },
      },
      operator,
      again,
    );
    assert.equal(same.changed, false);
  });

  test("a withdrawn activation is revoked wherever its subject reaches, for good, except where consented", () => {
    const account = NKey.generate("account");
    const now = Date.UTC(2026, 10, 30, 12);
    const at = Math.floor(now / 1000) + 5;
    const orders = (consumers: string[]) => ({
      exports: [{ subject: "orders.>", type: "stream" as const, consumers }],
      imports: [],
    });
    const first = sharedClaims(orders([billing, other]), account, undefined, now);
    const withdrawn = sharedClaims(orders([other]), account, first, now + 5000);
    assert.deepEqual(withdrawn.exports[0]?.revocations, { [billing]: at });
    assert.deepEqual(withdrawn.withdrawn, [{ subject: "orders.>", account: billing, at }]);
    assert.deepEqual(
      withdrawn.activations.map((a) => a.account),
      [other],
    );
    assert.equal(
      withdrawn.activations[0]?.token,
      first.activations.find((a) => a.account === other)?.token,
    );
    // The export gone and back, or another export its subject reaches: still revoked.
    const gone = sharedClaims({ exports: [], imports: [] }, account, withdrawn, now + 9000);
    assert.deepEqual(
      gone.withdrawn,
      withdrawn.withdrawn
        .concat([{ subject: "orders.>", account: other, at: at + 4 }])
        .sort((x, y) => (x.account < y.account ? -1 : 1)),
    );
    const back = sharedClaims(
      {
        exports: [
          { subject: "orders.*", type: "stream", consumers: [other] },
          { subject: "orders.>", type: "stream", consumers: [] },
        ],
        imports: [],
      },
      account,
      gone,
      now + 12_000,
    );
    assert.deepEqual(
      back.exports.map((e) => [e.subject, e.revocations]),
      [
        ["orders.*", { [billing]: at }],
        ["orders.>", { [billing]: at, [other]: at + 4 }],
      ],
    );
    // Consented again: not revoked there, with a new token.
    const again = sharedClaims(orders([billing, other]), account, back, now + 15_000);
    assert.equal(again.exports[0]?.revocations, undefined);
    assert.notEqual(
      again.activations.find((a) => a.account === billing)?.token,
      first.activations.find((a) => a.account === billing)?.token,
    );
  });

  test("a service export answers once per request; an import carries its token and local subject", () => {
    const account = NKey.generate("account");
    const claims = sharedClaims(
      {
        exports: [{ subject: "quote", type: "service", consumers: [billing] }],
        imports: [
          {
            subject: "orders.>",
            type: "stream",
            localSubject: "shop.>",
            account: other,
            exportSubject: "orders.>",
            token: "t",
          },
        ],
      },
      account,
      undefined,
      Date.now(),
    );
    assert.equal(claims.exports[0]?.response_type, "Singleton");
    assert.deepEqual(claims.imports, [
      {
        name: "orders.>",
        subject: "orders.>",
        account: other,
        token: "t",
        type: "stream",
        local_subject: "shop.>",
      },
    ]);
  });

  test("sharingOf reads back what the JWT shares, so a held account is minted unchanged", () => {
    const exporter = NKey.generate("account");
    const [activation] = sharedClaims(
      { exports: [{ subject: "quote.>", type: "service", consumers: [billing] }], imports: [] },
      exporter,
      undefined,
      Date.now(),
    ).activations;
    const token = activation?.token ?? "";
    const sharing = {
      exports: [{ subject: "orders.>", type: "stream" as const, consumers: [billing] }],
      imports: [
        {
          subject: "quote.eu",
          type: "service" as const,
          account: exporter.publicKey,
          exportSubject: "quote.>",
          token,
        },
      ],
    };
    const minted = mintAppAccount({ ...where, sharing }, operator);
    assert.deepEqual(sharingOf(minted.stored), sharing);
    const kept = mintAppAccount(
      { ...where, sharing: sharingOf(minted.stored) },
      operator,
      minted.stored,
    );
    assert.equal(kept.changed, false);
  });
});

describe("sharing plan", () => {
  const app = (name: string, nats: object, environments = ["prod", "test"]): AppObject => ({
    apiVersion: APP_API_VERSION,
    kind: "App",
    metadata: { namespace: "shop", name, uid: name, generation: 1 },
    spec: { nats, environments },
  });
  const lookups = (apps: AppObject[]) => ({
    getApp: (_namespace: string, name: string) => apps.find((a) => a.metadata.name === name),
    account: (namespace: string, name: string, environment: string) =>
      apps.some((a) => a.metadata.name === name)
        ? `A-${namespace}-${name}-${environment}`
        : undefined,
  });
  const fromProd = {
    from: { app: "shop", environment: "prod" },
    subject: "orders.eu",
    type: "stream",
  };

  test("environments pair by name; another pairing needs both sides to name it", () => {
    const billing = app("billing", { imports: [fromProd] });
    const byName = app("shop", {
      exports: [{ subject: "orders.>", type: "stream", to: [{ app: "billing" }] }],
    });
    const prod = sharingPlan(billing, "prod", lookups([billing, byName]));
    assert.deepEqual(prod.imports[0]?.consent, {
      account: "A-shop-shop-prod",
      exportSubject: "orders.>",
    });
    const test = sharingPlan(billing, "test", lookups([billing, byName]));
    assert.equal(test.imports[0]?.refusal?.reason, "ImportNotAllowed");
    assert.match(test.imports[0].refusal.message, /does not name shop\/billing\/test/);

    const named = app("shop", {
      exports: [
        { subject: "orders.>", type: "stream", to: [{ app: "billing", environment: "test" }] },
      ],
    });
    assert.ok(sharingPlan(billing, "test", lookups([billing, named])).imports[0]?.consent);
    // The exporter's side alone is not enough: billing/test imports from shop/test by default.
    const own = app("billing", { imports: [{ ...fromProd, from: { app: "shop" } }] });
    assert.ok(sharingPlan(own, "test", lookups([own, named])).imports[0]?.consent);
    assert.deepEqual(sharingPlan(named, "prod", lookups([own, named])).exportStatus, [
      { subject: "orders.>", type: "stream", importers: ["shop/billing/test"] },
    ]);
  });

  test("an import the export does not cover, or from no account, is refused with why", () => {
    const billing = app("billing", {
      imports: [fromProd, { ...fromProd, subject: "invoices", from: { app: "gone" } }],
    });
    const shop = app("shop", {
      exports: [{ subject: "orders.*.x", type: "stream", to: [{ app: "billing" }] }],
    });
    const [uncovered, gone] = sharingPlan(billing, "prod", lookups([billing, shop])).imports;
    assert.deepEqual(uncovered?.refusal, {
      reason: "ImportNotAllowed",
      message: "shop/shop/prod exports no stream covering orders.eu",
    });
    assert.equal(gone?.refusal?.reason, "ImportUnavailable");
  });
});
