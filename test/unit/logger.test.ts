import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import { encodeUser, fmtCreds } from "@nats-io/jwt";
import { createAccount, createUser } from "@nats-io/nkeys";
import { createLogger, scrubSecrets } from "../../src/observability/logger.ts";

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

const account = createAccount();
const user = createUser();
const accountSeed = text(account.getSeed());
const userSeed = text(user.getSeed());
const userJwt = await encodeUser("app", user, account);
const creds = text(fmtCreds(userJwt, user));
const privateKeyPem = generateKeyPairSync("ec", { namedCurve: "P-256" })
  .privateKey.export({ format: "pem", type: "pkcs8" })
  .toString();
const secrets = { accountSeed, userSeed, userJwt, creds, privateKeyPem };

/** A logger writing to memory, and its output so far. */
function memoryLogger(): { logger: ReturnType<typeof createLogger>; output: () => string } {
  const lines: string[] = [];
  const logger = createLogger({
    level: "debug",
    destination: { write: (line) => lines.push(line) },
  });
  return { logger, output: () => lines.join("") };
}

function assertNoSecrets(output: string): void {
  for (const [name, secret] of Object.entries(secrets)) {
    assert.ok(!output.includes(secret), `${name} reached the log:\n${output}`);
  }
  // The .creds block and the PEM key carry their secrets on their own lines.
  for (const line of [...creds.split("\n"), ...privateKeyPem.split("\n")]) {
    if (line.length > 40) assert.ok(!output.includes(line), `"${line}" reached the log`);
  }
}

describe("logger", () => {
  test("scrubs secrets from messages", () => {
    const { logger, output } = memoryLogger();
    logger.info(`pushed ${userJwt} signed by ${accountSeed}`);
    logger.warn("creds were %s and the key %s", creds, privateKeyPem);
    assertNoSecrets(output());
    const [first] = output().split("\n");
    assert.equal(
      (JSON.parse(first ?? "") as { msg: string }).msg,
      "pushed [REDACTED] signed by [REDACTED]",
    );
  });

  test("redacts secret fields and scrubs secrets from any field, keeping the rest", () => {
    const { logger, output } = memoryLogger();
    logger.info(
      {
        app: "shop/orders",
        account: account.getPublicKey(),
        attempt: 3,
        seed: accountSeed,
        secret: { data: { NATS_CREDENTIALS: Buffer.from(creds).toString("base64") } },
        details: { note: `user ${userSeed}`, nested: [{ token: userJwt }, privateKeyPem] },
        bytes: user.getSeed(),
      },
      "reconciled",
    );
    assertNoSecrets(output());
    assert.ok(!output().includes(Buffer.from(creds).toString("base64")));
    const line = JSON.parse(output()) as Record<string, unknown>;
    assert.equal(line.msg, "reconciled");
    assert.equal(line.app, "shop/orders");
    assert.equal(line.account, account.getPublicKey());
    assert.equal(line.attempt, 3);
    assert.equal(line.seed, "[REDACTED]");
    assert.deepEqual(line.details, {
      note: "user [REDACTED]",
      nested: [{ token: "[REDACTED]" }, "[REDACTED]\n"],
    });
  });

  test("scrubs errors' messages, stacks and properties", () => {
    const { logger, output } = memoryLogger();
    const error = Object.assign(new Error(`bad seed ${accountSeed}`), {
      code: 422,
      body: `{"data":{"creds":${JSON.stringify(creds)}}}`,
    });
    logger.error(error);
    logger.error({ err: error, app: "shop/orders" }, "reconcile failed");
    logger.warn({ cause: new TypeError(`jwt ${userJwt}`, { cause: error }) }, "nested");
    assertNoSecrets(output());
    const lines = output()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { msg: string; err: Record<string, unknown> });
    const direct = lines[0];
    const withMessage = lines[1];
    assert.ok(direct && withMessage);
    assert.equal(direct.msg, "bad seed [REDACTED]");
    assert.equal(direct.err.type, "Error");
    assert.equal(direct.err.code, 422);
    assert.match(String(direct.err.stack), /^Error: bad seed \[REDACTED\]\n\s+at /);
    assert.equal(withMessage.msg, "reconcile failed");
    assert.equal(withMessage.err.message, "bad seed [REDACTED]");
  });

  test("scrubs child loggers' bindings", () => {
    const { logger, output } = memoryLogger();
    logger.child({ app: "shop" }).child({ note: userJwt }).info("bound");
    assertNoSecrets(output());
    const line = JSON.parse(output()) as Record<string, unknown>;
    assert.equal(line.app, "shop");
    assert.equal(line.note, "[REDACTED]");
  });

  test("scrubSecrets leaves public keys and ordinary text alone", () => {
    const plain = `account ${account.getPublicKey()} user ${user.getPublicKey()} at 2026-01-01`;
    assert.equal(scrubSecrets(plain), plain);
    assert.equal(scrubSecrets(`a ${creds.trim()} b`), "a [REDACTED] b");
    assert.equal(scrubSecrets(`key: ${privateKeyPem}`), "key: [REDACTED]\n");
    // A key cut short (a truncated message) is redacted to the end.
    assert.equal(scrubSecrets(`key: ${privateKeyPem.slice(0, 80)}`), "key: [REDACTED]");
  });
});
