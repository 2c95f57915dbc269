/**
 * Compares what each server's resolver holds with what should exist, and repairs the
 * difference: pushes accounts a server lacks (one that lost its store) or holds in an older
 * version (one that missed an update), deletes accounts that should not exist (one that missed
 * a delete) the way a normal delete does.
 */
import { deleteAppAccount } from "./account-deletion.ts";
import type { OperatorIdentity } from "./identities.ts";
import { parseJwt } from "./jwt.ts";
import type { ResolverClient } from "./resolver-client.ts";

export interface DriftReport {
  /** Account public key -> servers that lacked it. */
  missing: Map<string, string[]>;
  /** Account public key -> servers that held it although it should not exist. */
  unexpected: Map<string, string[]>;
  /** Accounts some server holds in an older version than the desired JWT. */
  stale: string[];
}

export async function findDrift(
  client: ResolverClient,
  desired: ReadonlyMap<string, string>,
  systemAccount: string,
): Promise<DriftReport> {
  const held = await client.list();
  const missing = new Map<string, string[]>();
  const unexpected = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, key: string, server: string): void => {
    map.set(key, [...(map.get(key) ?? []), server]);
  };
  for (const [server, accounts] of held) {
    const present = new Set(accounts);
    for (const account of desired.keys()) if (!present.has(account)) add(missing, account, server);
    for (const account of present) {
      if (account !== systemAccount && !desired.has(account)) add(unexpected, account, server);
    }
  }
  const stale: string[] = [];
  for (const [account, jwt] of desired) {
    if (missing.has(account)) continue;
    const current = parseJwt(jwt).iat;
    if ((await client.lookup(account)).some((held) => parseJwt(held).iat < current))
      stale.push(account);
  }
  return { missing, unexpected, stale };
}

/** Repairs drift and returns what it found. `desired` maps account public keys to their JWTs. */
export async function repairDrift(
  client: ResolverClient,
  desired: ReadonlyMap<string, string>,
  operator: Pick<OperatorIdentity, "operator" | "signing" | "systemAccount">,
): Promise<DriftReport> {
  const report = await findDrift(client, desired, operator.systemAccount.publicKey);
  for (const account of [...report.missing.keys(), ...report.stale]) {
    const jwt = desired.get(account);
    if (jwt) await client.push(jwt, operator);
  }
  // As a normal delete does: a disabled copy first (a server that missed the delete and syncs
  // from a peer gets a dead account back), its JetStream data purged, then the delete.
  for (const account of report.unexpected.keys()) {
    const held = (await client.lookup(account)).sort((a, b) => parseJwt(b).iat - parseJwt(a).iat);
    const newest = held[0];
    if (newest) await deleteAppAccount(client, { accountJwt: newest }, operator);
    else await client.delete([account], operator);
  }
  return report;
}
