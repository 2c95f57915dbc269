/**
 * When a replaced pods user is revoked: as soon as no server has a connection authenticated
 * as it, or once the longest overlap allowed has passed, whichever comes first. Until then its
 * credentials keep working, so pods that read them once at start are not cut off while their
 * rollout is under way.
 */
import type { RetiringUser } from "./app-account.ts";

/** Why the overlap is over: nobody uses the old credentials, or there was time enough. */
export type RetireReason = "unused" | "overlap-ended";

/** Connections authenticated as `user` in `account` on every server; undefined when unknown. */
export type ConnectionCount = (account: string, user: string) => Promise<number | undefined>;

export function revokeBy(retiring: RetiringUser, overlapMs: number): number {
  return retiring.since + overlapMs;
}

export async function retireReason(
  retiring: RetiringUser,
  account: string,
  options: { nowMs: number; overlapMs: number; connections: ConnectionCount },
): Promise<RetireReason | undefined> {
  if (options.nowMs >= revokeBy(retiring, options.overlapMs)) return "overlap-ended";
  let count: number | undefined;
  try {
    count = await options.connections(account, retiring.user);
  } catch {
    // Not knowing is no reason to revoke early: the deadline still holds.
    count = undefined;
  }
  return count === 0 ? "unused" : undefined;
}
