import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeAccount, encodeUser, parseCreds } from "@nats-io/jwt";
import { createAccount, fromSeed } from "@nats-io/nkeys";
import { credsAuthenticator } from "@nats-io/transport-node";
import {
  disabledAccountJwt,
  mintAppAccount,
  renewAt,
  signingKeyRotateAt,
} from "../../src/accounts/app-account.ts";
import { lifetimeIssue } from "../../src/accounts/credential-policy.ts";
import {
  buildOperatorArtifacts,
  generateOperatorSeeds,
  loadOperatorIdentity,
} from "../../src/accounts/identities.ts";
import { decodeJwt, encodeJwt, validity } from "../../src/accounts/jwt.ts";
import { NKey, NKeyError, isPublicKey } from "../../src/accounts/nkey.ts";
import { KeyStoreError, accountFields, storedAccount } from "../../src/accounts/key-store.ts";
import {
  ROTATE_ANNOTATION,
  ROTATE_SIGNING_KEY_ANNOTATION,
  rotationRequest,
  rotationValue,
} from "../../src/contract/credential-rotation.ts";
import {
  AccountSpecError,
  accountLimits,
  requestFromLimits,
  validateAccountSpec,
} from "../../src/accounts/spec.ts";

const encoder = new TextEncoder();
const operator = loadOperatorIdentity("test", generateOperatorSeeds());
const spec = { namespace: "shop", app: "orders", environment: "prod" };

describe("nkeys on node:crypto", () => {
  test("a seed gives the same public key and byte-identical signatures as @nats-io/nkeys", () => {
    const reference = createAccount();
    const seed = new TextDecoder().decode(reference.getSeed());
    const key = NKey.fromSeed(seed, "account");
    assert.equal(key.publicKey, reference.getPublicKey());
    for (const message of ["", "hello", "x".repeat(10_000)]) {
      assert.deepEqual(
        Buffer.from(key.sign(encoder.encode(message))),
        Buffer.from(reference.sign(encoder.encode(message))),
      );
    }
  });

  test("generated keys round-trip through nkeys", () => {
    for (const role of ["operator", "account", "user"] as const) {
      const key = NKey.generate(role);
      const reference = fromSeed(encoder.encode(key.seed));
      assert.equal(reference.getPublicKey(), key.publicKey);
      assert.ok(isPublicKey(key.publicKey, role));
      assert.ok(reference.verify(encoder.encode("m"), key.sign(encoder.encode("m"))));
    }
  });

  test("a seed of the wrong role or a damaged seed is refused", () => {
    const user = NKey.generate("user");
    assert.throws(() => NKey.fromSeed(user.seed, "account"), NKeyError);
    assert.throws(() => NKey.fromSeed(`${user.seed.slice(0, -2)}AA`, "user"), NKeyError);
  });

  test("a key never serializes its seed", () => {
    const key = NKey.generate("account");
    assert.ok(!JSON.stringify({ key }).includes(key.seed));
    assert.ok(!JSON.stringify({ key }).includes(key.seed.slice(2, 20)));
  });
});

describe("JWTs", () => {
  test("equal the library's own encoding for the same clock", async (t) => {
    t.mock.timers.enable({ apis: ["Date"], now: 1_790_000_000_123 });
    const account = NKey.generate("account");
    const nats = { limits: accountLimits(undefined) };
    const ours = encodeJwt(
      { name: "n", sub: account.publicKey, type: "account", nats },
      operator.signing,
      1_790_000_000,
    );
    const theirs = await encodeAccount("n", account.publicKey, nats, {
      signer: fromSeed(encoder.encode(operator.signing.seed)),
    });
    assert.equal(ours, theirs);
    const user = NKey.generate("user");
    const userOurs = encodeJwt(
      { name: "u", sub: user.publicKey, type: "user", nats: { issuer_account: account.publicKey } },
      NKey.fromSeed(account.seed, "account"),
      1_790_000_000,
    );
    const userTheirs = await encodeUser(
      "u",
      user.publicKey,
      fromSeed(encoder.encode(account.seed)),
      {},
      {
        scopedUser: true,
      },
    );
    // The library writes issuer_account only with a separate signer; compare the signed bytes' shape.
    assert.equal(decodeJwt(userOurs).iss, decodeJwt(userTheirs).iss);
  });

  test("a tampered JWT does not verify", () => {
    const { accountJwt } = mintAppAccount(spec, operator).stored;
    const [h, b, s] = accountJwt.split(".");
    const claims = JSON.parse(Buffer.from(b ?? "", "base64url").toString()) as { name: string };
    claims.name = "other";
    const forged = `${h ?? ""}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s ?? ""}`;
    assert.throws(() => decodeJwt(forged), /signature/);
  });

  test("a JWT signed here skips no check once its signature is changed", () => {
    const { accountJwt } = mintAppAccount(spec, operator).stored;
    assert.equal(decodeJwt(accountJwt).sub.length, 56);
    const [h, b, s = ""] = accountJwt.split(".");
    const flipped = Buffer.from(s, "base64url");
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    const forged = `${h ?? ""}.${b ?? ""}.${flipped.toString("base64url")}`;
    assert.throws(() => decodeJwt(forged), /signature/);
  });
});

describe("app accounts", () => {
  test("every limit is explicit; JetStream only when a store is asked for", () => {
    const claims = decodeJwt<{ limits: Record<string, unknown> }>(
      mintAppAccount(spec, operator).stored.accountJwt,
    );
    for (const key of [
      "conn",
      "subs",
      "payload",
      "data",
      "imports",
      "exports",
      "wildcards",
      "leaf",
      "mem_storage",
      "disk_storage",
      "streams",
      "consumer",
    ]) {
      assert.ok(key in (claims.nats.limits ?? {}), `${key} is set`);
    }
    assert.equal(claims.nats.limits?.disk_storage, 0);
    assert.equal(claims.nats.limits.conn, 1000);
    const js = accountLimits({ jetstream: { storage: 1024 } });
    assert.equal(js.disk_storage, 1024);
    assert.equal(js.streams, -1);
  });

  test("the same seeds and spec give the same keys and the very same JWTs; a change reissues with a later iat", () => {
    const first = mintAppAccount(spec, operator, undefined, 1_790_000_000_000);
    const again = mintAppAccount(spec, operator, first.stored, 1_790_000_000_500);
    assert.equal(again.changed, false);
    assert.deepEqual(again.stored, first.stored);
    assert.equal(again.creds, first.creds);
    // Two changes within the same second still get strictly increasing iat.
    const raised = mintAppAccount(
      { ...spec, limits: { connections: 5 } },
      operator,
      first.stored,
      1_790_000_000_600,
    );
    const lowered = mintAppAccount(
      { ...spec, limits: { connections: 4 } },
      operator,
      raised.stored,
      1_790_000_000_700,
    );
    assert.ok(raised.changed && lowered.changed);
    assert.equal(raised.publicKey, first.publicKey);
    assert.equal(
      raised.stored.userJwt,
      first.stored.userJwt,
      "the user is not reissued for a limit change",
    );
    const iats = [first, raised, lowered].map((m) => decodeJwt(m.stored.accountJwt).iat);
    assert.deepEqual(iats, [1_790_000_000, 1_790_000_001, 1_790_000_002]);
    const disabled = decodeJwt<{ limits: { conn: number } }>(
      disabledAccountJwt(lowered.stored, operator, 1_790_000_000_800),
    );
    assert.equal(disabled.nats.limits?.conn, 0);
    assert.equal(disabled.iat, 1_790_000_003);
  });

  test("accounts are issued by the operator signing key, users by the account's scoped key", () => {
    const minted = mintAppAccount(spec, operator);
    const account = decodeJwt<{ signing_keys: { key: string; kind: string }[] }>(
      minted.stored.accountJwt,
    );
    assert.equal(account.iss, operator.signing.publicKey);
    assert.equal(account.name, "shop/orders/prod");
    const user = decodeJwt<Record<string, unknown>>(minted.stored.userJwt);
    assert.equal(user.iss, account.nats.signing_keys?.[0]?.key);
    assert.equal(account.nats.signing_keys?.[0]?.kind, "user_scope");
    assert.deepEqual(Object.keys(user.nats).sort(), ["issuer_account", "type", "version"]);
  });

  test(".creds text has LF endings and a final newline, and both credsAuthenticators accept it", async () => {
    const minted = mintAppAccount(spec, operator);
    assert.ok(!minted.creds.includes("\r"));
    assert.ok(minted.creds.endsWith("\n"));
    const parsed = await parseCreds(encoder.encode(minted.creds));
    assert.equal(parsed.jwt, minted.stored.userJwt);
    const nonce = "nonce";
    const auth = credsAuthenticator(encoder.encode(minted.creds))(nonce) as {
      jwt?: string;
      sig?: string;
    };
    assert.equal(auth.jwt, minted.stored.userJwt);
    const legacy = (await import("nats")).credsAuthenticator(encoder.encode(minted.creds))(
      nonce,
    ) as { jwt?: string };
    assert.equal(legacy.jwt, minted.stored.userJwt);
    assert.ok(
      !minted.creds.includes(NKey.fromSeed(minted.stored.accountSeed, "account").seed),
      "no account seed in creds",
    );
  });

  test("operator artifacts are stable across restarts", () => {
    const first = buildOperatorArtifacts(operator, {}, 1_790_000_000_000);
    const again = buildOperatorArtifacts(operator, first, 1_790_000_100_000);
    assert.deepEqual(again, first);
    const op = decodeJwt<{ signing_keys: string[]; system_account: string }>(first.operatorJwt);
    assert.equal(op.iss, op.sub);
    assert.deepEqual(op.nats.signing_keys, [operator.signing.publicKey]);
    assert.equal(op.nats.system_account, operator.systemAccount.publicKey);
    const sys = decodeJwt<{ limits: { conn: number } }>(first.systemAccountJwt);
    assert.equal(sys.nats.limits?.conn, -1);
  });
});

describe("validation", () => {
  test("names must be DNS labels and limits in range; every problem is reported at once", () => {
    assert.throws(
      () => {
        validateAccountSpec({
          namespace: "Shop",
          app: "-x",
          environment: "a".repeat(64),
          limits: {
            connections: 0,
            payload: 9 * 1024 * 1024,
            subscriptions: 1.5,
            jetstream: { storage: -1 },
          },
        });
      },
      (error: unknown) => {
        assert.ok(error instanceof AccountSpecError);
        assert.deepEqual(
          error.issues.map((i) => i.path),
          [
            "namespace",
            "app",
            "environment",
            "limits.connections",
            "limits.payload",
            "limits.subscriptions",
            "limits.jetstream.storage",
          ],
        );
        return true;
      },
    );
    assert.doesNotThrow(() => {
      validateAccountSpec({
        ...spec,
        limits: { connections: -1, subscriptions: -1, jetstream: { streams: -1 } },
      });
    });
  });
});

test("requestFromLimits gives back a request that issues the very same limits", () => {
  const requests = [
    undefined,
    {},
    { connections: 5, payload: 1024, subscriptions: -1 },
    { jetstream: { storage: 1024 } },
    { connections: -1, jetstream: { memory: 2048, storage: 0, streams: 3, consumers: -1 } },
  ];
  for (const request of requests) {
    const limits = accountLimits(request);
    assert.deepEqual(accountLimits(requestFromLimits(limits)), limits, JSON.stringify(request));
  }
});

describe("pods user rotation", () => {
  const T = 1_790_000_000_000;
  const userKey = (creds: string) => decodeJwt(/JWT-----\n([^\n]+)\n/.exec(creds)?.[1] ?? "").sub;

  test("a new request issues a new user under the same account; the old one retires unrevoked", () => {
    const first = mintAppAccount(spec, operator, undefined, T, { rotation: "a" });
    assert.equal(first.rotated, undefined, "a new account answers the request as it is");
    assert.equal(first.stored.rotatedFor, "a");
    const same = mintAppAccount(spec, operator, first.stored, T + 1000, { rotation: "a" });
    assert.equal(same.changed, false);
    const next = mintAppAccount(spec, operator, first.stored, T + 2000, { rotation: "b" });
    assert.equal(next.rotated, "requested");
    assert.ok(next.changed);
    assert.equal(next.publicKey, first.publicKey);
    assert.equal(next.stored.accountJwt, first.stored.accountJwt, "nothing revoked yet");
    assert.notEqual(userKey(next.creds), userKey(first.creds));
    assert.deepEqual(next.stored.retiring, { user: userKey(first.creds), since: T + 2000 });
    assert.equal(next.stored.rotatedFor, "b");
    // No request at all (the annotation removed) rotates nothing.
    assert.equal(mintAppAccount(spec, operator, next.stored, T + 3000).changed, false);
  });

  test("retiring revokes the old user in a later account JWT, and only once", () => {
    const first = mintAppAccount(spec, operator, undefined, T);
    const next = mintAppAccount(spec, operator, first.stored, T + 1000, { rotation: "b" });
    const retired = mintAppAccount(spec, operator, next.stored, T + 5000, {
      rotation: "b",
      retire: true,
    });
    assert.deepEqual(retired.revoked, [userKey(first.creds)]);
    assert.equal(retired.stored.retiring, undefined);
    const claims = decodeJwt<{ revocations?: Record<string, number> }>(retired.stored.accountJwt);
    assert.deepEqual(claims.nats.revocations, { [userKey(first.creds)]: (T + 5000) / 1000 });
    assert.ok(claims.iat > decodeJwt(first.stored.accountJwt).iat);
    assert.equal(retired.creds, next.creds, "the current user is kept");
    const again = mintAppAccount(spec, operator, retired.stored, T + 9000, {
      rotation: "b",
      retire: true,
    });
    assert.equal(again.changed, false);
    assert.deepEqual(again.revoked, []);
  });

  test("rotation state survives the key store's fields", () => {
    const first = mintAppAccount(spec, operator, undefined, T);
    const next = mintAppAccount(spec, operator, first.stored, T + 1000, { rotation: "b" });
    assert.deepEqual(storedAccount("x", accountFields(next.stored)), next.stored);
    assert.deepEqual(storedAccount("x", accountFields(first.stored)), first.stored);
    const broken = { ...accountFields(next.stored), retiringSince: "soon" };
    assert.throws(() => storedAccount("x", broken), KeyStoreError);
  });

  test("the annotation names every environment, or those before '='", () => {
    const at = (value: string) => ({ [ROTATE_ANNOTATION]: value });
    assert.equal(rotationRequest(undefined, "prod"), undefined);
    assert.equal(rotationRequest(at(""), "prod"), undefined);
    assert.equal(rotationRequest(at("2026-11-30"), "prod"), "2026-11-30");
    assert.equal(rotationRequest(at("prod, test=7"), "test"), "prod, test=7");
    assert.equal(rotationRequest(at("prod,test=7"), "staging"), undefined);
    assert.equal(rotationValue(["prod", "test"], "7"), "prod,test=7");
    assert.equal(rotationValue([], "7"), "7");
  });
});

describe("signing-key rotation", () => {
  const T = 1_790_000_000_000;
  type Scoped = { signing_keys: { key: string }[]; revocations?: Record<string, number> };
  const claimsOf = (stored: { accountJwt: string }) => decodeJwt<Scoped>(stored.accountJwt).nats;
  const keysOf = (stored: { accountJwt: string }) => claimsOf(stored).signing_keys ?? [];
  const issuerOf = (stored: { userJwt: string }) => decodeJwt(stored.userJwt).iss;

  test("a new key joins the account beside the old one, with the same scope, and signs a new user; the old key leaves when that user retires, unrevoked", () => {
    const first = mintAppAccount(spec, operator, undefined, T, { signingKeyRotation: "a" });
    assert.equal(first.rotated, undefined, "a new account answers the request as it is");
    assert.equal(first.stored.signingRotatedFor, "a");
    assert.equal(first.stored.signingSince, T / 1000);
    const oldKey = issuerOf(first.stored);
    const next = mintAppAccount(spec, operator, first.stored, T + 1000, {
      signingKeyRotation: "b",
    });
    assert.equal(next.rotated, "signing-key");
    assert.equal(next.publicKey, first.publicKey);
    const newKey = issuerOf(next.stored);
    assert.notEqual(newKey, oldKey);
    assert.notEqual(decodeJwt(next.stored.userJwt).sub, decodeJwt(first.stored.userJwt).sub);
    assert.deepEqual(
      keysOf(next.stored).map((k) => k.key),
      [newKey, oldKey],
    );
    // The servers close the connections of a key whose scope changes.
    assert.deepEqual(keysOf(next.stored)[1], keysOf(first.stored)[0]);
    assert.equal(next.stored.retiring?.signingKey, oldKey);
    assert.equal(next.stored.signingSince, T / 1000 + 1);
    assert.deepEqual(storedAccount("x", accountFields(next.stored)), next.stored);
    assert.equal(
      mintAppAccount(spec, operator, next.stored, T + 2000, { signingKeyRotation: "b" }).changed,
      false,
    );

    const retired = mintAppAccount(spec, operator, next.stored, T + 3000, {
      signingKeyRotation: "b",
      retire: true,
    });
    assert.deepEqual(retired.revoked, [decodeJwt(first.stored.userJwt).sub]);
    assert.deepEqual(
      keysOf(retired.stored).map((k) => k.key),
      [newKey],
    );
    assert.equal(claimsOf(retired.stored).revocations, undefined, "a key that left needs none");
    assert.equal(retired.creds, next.creds);
  });

  test("a schedule replaces a key once it is old; a key older than the schedule is counted from when it first sees it", () => {
    const policy = { signingKeyMaxAgeSeconds: 1000 };
    const first = mintAppAccount(spec, operator, undefined, T, policy);
    assert.equal(mintAppAccount(spec, operator, first.stored, T + 999_000, policy).changed, false);
    const due = mintAppAccount(spec, operator, first.stored, T + 1_000_000, policy);
    assert.equal(due.rotated, "signing-key");
    assert.equal(due.stored.signingRotatedFor, undefined, "a schedule answers no request");
    assert.equal(signingKeyRotateAt(due.stored.signingSince, 1000), T / 1000 + 2000);

    const { signingSince: _unknown, ...legacy } = first.stored;
    assert.equal(mintAppAccount(spec, operator, legacy, T + 5_000_000).changed, false);
    const counted = mintAppAccount(spec, operator, legacy, T + 5_000_000, policy);
    assert.equal(counted.rotated, undefined);
    assert.ok(counted.changed);
    assert.equal(counted.stored.accountJwt, first.stored.accountJwt, "nothing to push");
    assert.equal(counted.stored.signingSince, T / 1000 + 5000);
  });

  test("a credentials rotation during the overlap sends the old key away at once and keeps the new one", () => {
    const first = mintAppAccount(spec, operator, undefined, T);
    const next = mintAppAccount(spec, operator, first.stored, T + 1000, {
      signingKeyRotation: "b",
    });
    const again = mintAppAccount(spec, operator, next.stored, T + 2000, {
      signingKeyRotation: "b",
      rotation: "c",
    });
    assert.equal(again.rotated, "requested");
    assert.equal(issuerOf(again.stored), issuerOf(next.stored));
    assert.deepEqual(
      keysOf(again.stored).map((k) => k.key),
      [issuerOf(next.stored)],
    );
    assert.deepEqual(again.stored.retiring, {
      user: decodeJwt(next.stored.userJwt).sub,
      since: T + 2000,
    });
    assert.equal(claimsOf(again.stored).revocations, undefined);
  });

  test("the annotations are read apart", () => {
    const annotations = { [ROTATE_SIGNING_KEY_ANNOTATION]: "prod=1", [ROTATE_ANNOTATION]: "2" };
    assert.equal(rotationRequest(annotations, "prod", ROTATE_SIGNING_KEY_ANNOTATION), "prod=1");
    assert.equal(rotationRequest(annotations, "test", ROTATE_SIGNING_KEY_ANNOTATION), undefined);
    assert.equal(rotationRequest(annotations, "test"), "2");
  });
});

describe("pods user lifetime", () => {
  const T = 1_790_000_000_000;
  const exp = (jwt: string) => decodeJwt(jwt).exp;

  test("a user expires its lifetime after issue, is renewed at 2/3 of it, and replaced when the lifetime changes", () => {
    const first = mintAppAccount(spec, operator, undefined, T, { lifetimeSeconds: 3000 });
    assert.equal(exp(first.stored.userJwt), T / 1000 + 3000);
    assert.equal(renewAt(validity(first.stored.userJwt)), T / 1000 + 2000);
    const early = mintAppAccount(spec, operator, first.stored, T + 1_999_000, {
      lifetimeSeconds: 3000,
    });
    assert.equal(early.changed, false);
    // As long as it is: the lifetime kept when none is asked for (an App on hold).
    assert.equal(mintAppAccount(spec, operator, first.stored, T + 1000).changed, false);
    const renewed = mintAppAccount(spec, operator, first.stored, T + 2_000_000, {
      lifetimeSeconds: 3000,
    });
    assert.equal(renewed.rotated, "renewal");
    assert.equal(exp(renewed.stored.userJwt), T / 1000 + 2000 + 3000);
    assert.deepEqual(renewed.stored.retiring?.expires, T / 1000 + 3000);
    assert.deepEqual(storedAccount("x", accountFields(renewed.stored)), renewed.stored);
    // Revoked only while it would still work: once expired, it needs no revocation.
    const late = mintAppAccount(spec, operator, renewed.stored, T + 3_000_000, {
      lifetimeSeconds: 3000,
      retire: true,
    });
    assert.deepEqual(late.revoked, [decodeJwt(first.stored.userJwt).sub]);
    assert.ok(late.changed && late.stored.retiring === undefined);
    assert.equal(
      decodeJwt<{ revocations?: object }>(late.stored.accountJwt).nats.revocations,
      undefined,
    );
    assert.equal(renewed.stored.retiring.since, T + 2_000_000);
    assert.equal(renewed.stored.rotatedFor, undefined, "a renewal answers no request");
    const never = mintAppAccount(spec, operator, renewed.stored, T + 2_001_000, {
      lifetimeSeconds: 0,
    });
    assert.equal(never.rotated, "lifetime");
    assert.equal(exp(never.stored.userJwt), undefined);
    assert.equal(exp(never.stored.accountJwt), undefined, "the account itself never expires");
  });

  test("the platform's bounds: an App's lifetime within them, users that never expire only without a maximum", () => {
    const policy = { defaultSeconds: 3600, minSeconds: 600, maxSeconds: 86_400 };
    assert.equal(lifetimeIssue(policy, 3600), undefined);
    assert.match(
      lifetimeIssue(policy, 60) ?? "",
      /60 s is under the shortest lifetime allowed, 600 s \(--credential-lifetime-min-seconds, chart value operator\.credentials\.minLifetimeSeconds\)/,
    );
    assert.match(lifetimeIssue(policy, 90_000) ?? "", /over the longest lifetime allowed, 86400 s/);
    assert.match(lifetimeIssue(policy, 0) ?? "", /never expire are over the longest lifetime/);
    assert.equal(lifetimeIssue({ ...policy, maxSeconds: 0 }, 0), undefined);
  });
});
