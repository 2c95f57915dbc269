/**
 * Removing an account from the servers, in the order that leaves nothing behind: a server
 * that misses the delete and later syncs from a peer must get a dead account back, and the
 * resolver's delete leaves JetStream data on disk.
 */
import { disabledAccountJwt, type StoredAccount } from "./app-account.ts";
import type { OperatorIdentity } from "./identities.ts";
import { decodeJwt } from "./jwt.ts";
import type { ResolverClient } from "./resolver-client.ts";

export async function deleteAppAccount(
  client: Pick<ResolverClient, "push" | "delete" | "purgeJetStream">,
  stored: Pick<StoredAccount, "accountJwt">,
  operator: Pick<OperatorIdentity, "operator" | "signing">,
): Promise<void> {
  const claims = decodeJwt<{ limits?: { mem_storage?: number; disk_storage?: number } }>(
    stored.accountJwt,
  );
  // Connections of the account end here, on every server.
  await client.push(disabledAccountJwt(stored, operator), operator);
  const limits = claims.nats.limits ?? {};
  if ((limits.mem_storage ?? 0) !== 0 || (limits.disk_storage ?? 0) !== 0) {
    await client.purgeJetStream(claims.sub);
  }
  await client.delete([claims.sub], operator);
}
