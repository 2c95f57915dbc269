/**
 * Compares what each server's resolver holds with what should exist, and repairs the
 * difference: pushes accounts a server lacks (one that lost its store), deletes accounts that
 * should not exist (one that missed a delete).
 */
import type { OperatorIdentity } from "./identities.ts";
import type { ResolverClient } from "./resolver-client.ts";

export interface DriftReport {
  /** Account public key -> servers that lacked it. */
  missing: Map<string, string[]>;
  /** Account public key -> servers that held it although it should not exist. */
  unexpected: Map<string, string[]>;
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
  return { missing, unexpected };
}

/** Repairs drift and returns what it found. `desired` maps account public keys to their JWTs. */
export async function repairDrift(
  client: ResolverClient,
  desired: ReadonlyMap<string, string>,
  operator: Pick<OperatorIdentity, "operator" | "signing" | "systemAccount">,
): Promise<DriftReport> {
  const report = await findDrift(client, desired, operator.systemAccount.publicKey);
  for (const account of report.missing.keys()) {
    const jwt = desired.get(account);
    if (jwt) await client.push(jwt, operator);
  }
  if (report.unexpected.size > 0) await client.delete([...report.unexpected.keys()], operator);
  return report;
}
