/**
 * Compares what each server's resolver holds with what should exist, and repairs the
 * difference: pushes accounts a server lacks (one that lost its store, or was down while they
 * were made), deletes accounts that should not exist (one that was down while they were
 * deleted) the way a normal delete does. Only what differs is read or sent.
 *
 * The servers are listed before the desired accounts are read, so no lock against reconciles
 * is needed: an account a reconcile pushed before the list was stored (and indexed) before it
 * was pushed, so it is desired by the time it is read; one made after the list is at worst
 * pushed twice.
 *
 * An account a server holds in an older version than the stored one is not looked for here:
 * the reconciler pushes again until every server acknowledged the current version, and the
 * servers' own sync keeps the newest JWT.
 */
import { deleteAppAccount } from "./account-deletion.ts";
import type { OperatorIdentity } from "./identities.ts";
import { parseJwt } from "./jwt.ts";
import type { ResolverClient } from "./resolver-client.ts";

export interface DesiredAccounts {
  /** Public keys of every account that should exist now. */
  keys(): Promise<ReadonlySet<string>>;
  /** The stored JWT of a desired account; undefined when it went meanwhile. */
  jwt(account: string): Promise<string | undefined>;
}

export interface DriftReport {
  /** Servers that answered the list. */
  servers: string[];
  /** Account public key -> servers that lacked it. */
  missing: Map<string, string[]>;
  /** Account public key -> servers that held it although it should not exist. */
  unexpected: Map<string, string[]>;
}

type Client = Pick<ResolverClient, "list" | "lookup" | "push" | "delete" | "purgeJetStream">;

export async function findDrift(
  client: Client,
  desired: Pick<DesiredAccounts, "keys">,
  systemAccount: string,
): Promise<DriftReport> {
  const held = await client.list();
  const wanted = await desired.keys();
  const missing = new Map<string, string[]>();
  const unexpected = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, key: string, server: string): void => {
    map.set(key, [...(map.get(key) ?? []), server]);
  };
  for (const [server, accounts] of held) {
    const present = new Set(accounts);
    for (const account of wanted) if (!present.has(account)) add(missing, account, server);
    for (const account of present) {
      if (account !== systemAccount && !wanted.has(account)) add(unexpected, account, server);
    }
  }
  return { servers: [...held.keys()], missing, unexpected };
}

/** Repairs drift and returns what it found. */
export async function repairDrift(
  client: Client,
  desired: DesiredAccounts,
  operator: Pick<OperatorIdentity, "operator" | "signing" | "systemAccount">,
): Promise<DriftReport> {
  const report = await findDrift(client, desired, operator.systemAccount.publicKey);
  for (const account of report.missing.keys()) {
    const jwt = await desired.jwt(account);
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
