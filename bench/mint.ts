/**
 * Full app x environment mints per second (account JWT + user JWT + creds) against raw
 * node:crypto Ed25519 signs per second, in one process on one core. Prints figures; asserts
 * nothing. Run: node bench/mint.ts
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { encodeAccount } from "@nats-io/jwt";
import { createAccount, fromSeed } from "@nats-io/nkeys";
import { mintAppAccount } from "../src/accounts/app-account.ts";
import { generateOperatorSeeds, loadOperatorIdentity } from "../src/accounts/identities.ts";
import { accountLimits } from "../src/accounts/spec.ts";

const operator = loadOperatorIdentity("bench", generateOperatorSeeds());

function rate(label: string, iterations: number, body: (i: number) => void): number {
  for (let i = 0; i < Math.min(200, iterations); i++) body(i); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) body(i);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const perSecond = iterations / seconds;
  console.log(
    `${label.padEnd(58)} ${perSecond.toFixed(0).padStart(9)} /s  ${((seconds / iterations) * 1e6).toFixed(1).padStart(8)} us each`,
  );
  return perSecond;
}

const { privateKey } = generateKeyPairSync("ed25519");
const payload = Buffer.alloc(600, 1); // about the size of an account JWT's signed part
const signs = rate("raw node:crypto Ed25519 sign (600 B)", 20_000, () =>
  sign(null, payload, privateKey),
);

const mints = rate("full mint: 3 new keys, account JWT, user JWT, creds", 5_000, (i) =>
  mintAppAccount({ namespace: "bench", app: `app-${i}`, environment: "prod" }, operator),
);

const stored = mintAppAccount(
  { namespace: "bench", app: "steady", environment: "prod" },
  operator,
).stored;
rate("re-mint from stored seeds, nothing changed (restart path)", 5_000, () =>
  mintAppAccount({ namespace: "bench", app: "steady", environment: "prod" }, operator, stored),
);
rate("re-mint from stored seeds, limit changed (reissue)", 5_000, (i) =>
  mintAppAccount(
    {
      namespace: "bench",
      app: "steady",
      environment: "prod",
      limits: { connections: 1 + (i % 100) },
    },
    operator,
    stored,
  ),
);

// The stock path for comparison: @nats-io/jwt with a tweetnacl-backed nkeys signer.
const signer = fromSeed(new TextEncoder().encode(operator.signing.seed));
const account = createAccount().getPublicKey();
let pending = 0;
const stockStart = process.hrtime.bigint();
const stockCount = 40;
for (let i = 0; i < stockCount; i++) {
  pending +=
    (await encodeAccount(`a${i}`, account, { limits: accountLimits(undefined) }, { signer }))
      .length > 0
      ? 1
      : 0;
}
const stockSeconds = Number(process.hrtime.bigint() - stockStart) / 1e9;
console.log(
  `${"stock @nats-io/jwt encodeAccount (tweetnacl signer)".padEnd(58)} ${(pending / stockSeconds).toFixed(0).padStart(9)} /s  ${((stockSeconds / stockCount) * 1e6).toFixed(1).padStart(8)} us each`,
);
console.log(
  `\nmints per raw sign: ${(mints / signs).toFixed(3)} (a mint signs twice and makes three keys)`,
);
console.log(
  `goal: >= 2000 full mints/s per core -> ${mints >= 2000 ? "met" : "NOT met"} (${mints.toFixed(0)}/s)`,
);
