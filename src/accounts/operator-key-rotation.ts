/**
 * Rotation of the operator's signing key, the key that signs every account JWT.
 *
 * A NATS server takes a new operator JWT only when it restarts (a reload refuses it: "config
 * reload not supported for TrustedOperators"), so the rotation goes in steps, each waiting for
 * the world to catch up, and no account is ever signed by a key some server does not trust:
 *
 * 1. introduce: a new key joins the operator JWT beside the current one; the servers restart
 *    into it.
 * 2. promote: once every server trusts it, it signs. Every account is signed anew by it; the
 *    old key stays trusted meanwhile.
 * 3. retire: once no account is signed by the old key, stored or on any server (a push that
 *    reached only a majority would leave a server serving an account it no longer trusts), it
 *    leaves the operator JWT, and the servers restart once more. What the old key signed is
 *    refused from then on.
 * 4. forget: once every server runs without the old key, the rotation is done.
 *
 * Promoting changes no trusted key, so the operator JWT stays as it is (its keys are sorted):
 * two restarts in all.
 */
import { signingKeyRotateAt } from "./app-account.ts";
import type { OperatorEntry } from "./identities.ts";
import { parseJwt } from "./jwt.ts";
import { entryAccounts, type SecretStore } from "./key-store.ts";
import { NKey } from "./nkey.ts";

/** What the next step waits for, as the platform last saw it. */
export interface OperatorKeyWorld {
  /** The rotation asked for now; undefined: none. */
  request: string | undefined;
  /** A key this old (seconds) is replaced; 0: only when asked. */
  maxAgeSeconds: number;
  nowMs: number;
  /** The signing keys every server trusts, as their running operator JWTs say; undefined: unknown. */
  serversTrust: string[] | undefined;
  /** Whether some account, stored or served, is still signed by `key`; undefined: unknown. */
  signedBy: (key: string) => Promise<boolean | undefined>;
}

/** `count`: a key older than the schedule gets its age counted from now. */
export type OperatorKeyStep = "introduce" | "promote" | "retire" | "forget" | "count";

export async function operatorKeyStep(
  entry: OperatorEntry,
  world: OperatorKeyWorld,
): Promise<OperatorKeyStep | undefined> {
  if (entry.nextSigningSeed) {
    const next = NKey.fromSeed(entry.nextSigningSeed, "operator").publicKey;
    return world.serversTrust?.includes(next) ? "promote" : undefined;
  }
  if (entry.retiringSigningKey)
    return (await world.signedBy(entry.retiringSigningKey)) === false ? "retire" : undefined;
  if (entry.droppedSigningKey)
    return world.serversTrust && !world.serversTrust.includes(entry.droppedSigningKey)
      ? "forget"
      : undefined;
  if (world.request !== undefined && world.request !== entry.signingRotatedFor) return "introduce";
  if (world.maxAgeSeconds === 0) return undefined;
  const due = signingKeyRotateAt(entry.signingSince, world.maxAgeSeconds);
  if (due === undefined) return "count";
  return world.nowMs >= due * 1000 ? "introduce" : undefined;
}

/** Where a rotation under way stands, from the entry's fields; undefined: none under way. */
export function operatorKeyStage(
  entry: Pick<OperatorEntry, "nextSigningSeed" | "retiringSigningKey" | "droppedSigningKey">,
): "introduced" | "retiring" | "dropping" | undefined {
  if (entry.nextSigningSeed) return "introduced";
  if (entry.retiringSigningKey) return "retiring";
  if (entry.droppedSigningKey) return "dropping";
  return undefined;
}

/** The operator entry after `step`. */
export function applyOperatorKeyStep(
  entry: OperatorEntry,
  step: OperatorKeyStep,
  world: Pick<OperatorKeyWorld, "request" | "nowMs">,
): OperatorEntry {
  const nowSeconds = Math.floor(world.nowMs / 1000);
  const { nextSigningSeed, retiringSigningKey, ...rest } = entry;
  switch (step) {
    case "introduce":
      return {
        ...entry,
        nextSigningSeed: NKey.generate("operator").seed,
        ...(world.request !== undefined ? { signingRotatedFor: world.request } : {}),
      };
    case "promote":
      if (!nextSigningSeed) return entry;
      return {
        ...rest,
        operatorSigningSeed: nextSigningSeed,
        retiringSigningKey: NKey.fromSeed(entry.operatorSigningSeed, "operator").publicKey,
        signingSince: nowSeconds,
      };
    case "retire":
      return retiringSigningKey ? { ...rest, droppedSigningKey: retiringSigningKey } : rest;
    case "forget": {
      const { droppedSigningKey: _dropped, ...done } = entry;
      return done;
    }
    case "count":
      return { ...entry, signingSince: nowSeconds };
  }
}

/** Whether some stored account's JWT is signed by `key`: read a page of entries at a time. */
export async function storedAccountSignedBy(store: SecretStore, key: string): Promise<boolean> {
  return (await storedAccountsUnless(store, key)) === undefined;
}

/** Every stored account's public key, or undefined once one is signed by `key`. */
async function storedAccountsUnless(
  store: SecretStore,
  key: string,
): Promise<string[] | undefined> {
  const accounts: string[] = [];
  for await (const { name, data } of store.entries())
    for (const { data: fields } of entryAccounts(name, data)) {
      if (!fields.accountJwt) continue;
      const claims = parseJwt(fields.accountJwt);
      if (claims.iss === key) return undefined;
      accounts.push(claims.sub);
    }
  return accounts;
}

/**
 * Whether some account is still signed by `key`, stored or in a server's resolver: true at the
 * first one found; undefined when some server did not answer for an account.
 */
export async function accountSignedBy(
  store: SecretStore,
  key: string,
  servers: { lookup: (account: string) => Promise<string[]>; expected: number },
): Promise<boolean | undefined> {
  const accounts = await storedAccountsUnless(store, key);
  if (!accounts) return true;
  for (const account of accounts) {
    const copies = await servers.lookup(account);
    if (copies.some((jwt) => parseJwt(jwt).iss === key)) return true;
    if (copies.length < servers.expected) return undefined;
  }
  return false;
}
