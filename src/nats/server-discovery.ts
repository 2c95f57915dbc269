/**
 * Which NATS servers are up, over the system account: a ping every server answers with its
 * name and id, and the STATSZ each server publishes, quickly after it starts and then every
 * half minute or so. A server gets a new id at every start, so a new id is a server that
 * (re)joined the cluster, possibly with a store that missed what happened while it was away.
 */
import { PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";

/** Every server answers `{"name", "host", "id"}` (2.12, 2.15), a sixtieth of a STATSZ ping. */
export const PING_SUBJECT = "$SYS.REQ.SERVER.PING.IDZ";
/** Published by every server on its own; the id is the third token. */
export const STATSZ_SUBJECT = "$SYS.SERVER.*.STATSZ";

/** A permission the connection lacks will not come by waiting: say which, now. */
export function rethrowPermission(error: unknown, needs: string[]): void {
  if (error instanceof PermissionViolationError)
    throw new Error(
      `the system user may not ${error.operation} to ${error.subject} (it needs ${needs.join(", ")})`,
      { cause: error },
    );
}

interface IdzReply {
  id?: string;
  name?: string;
}

/**
 * The answers to a request every server answers (`$SYS.REQ.SERVER.PING.*`), as JSON, until
 * `expected` answered or `maxWait` passed. A reconnect under way ends it early with the answers
 * so far; a permission the connection lacks throws.
 */
export async function pingServers<T>(
  nc: NatsConnection,
  subject: string,
  expected: number,
  maxWait: number,
): Promise<T[]> {
  const answers: T[] = [];
  try {
    const replies = await nc.requestMany(subject, "", {
      strategy: "count",
      maxMessages: expected,
      maxWait,
    });
    // A no-responders status arrives as an empty message.
    for await (const msg of replies) if (msg.data.length > 0) answers.push(msg.json<T>());
  } catch (error) {
    rethrowPermission(error, [subject]);
  }
  return answers;
}

/** `server_name` to server id of the servers that answer the ping. */
export async function discoverServers(
  nc: NatsConnection,
  expected: number,
  maxWait: number,
): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const { id, name } of await pingServers<IdzReply>(nc, PING_SUBJECT, expected, maxWait))
    if (id && name) found.set(name, id);
  return found;
}

export interface ServerArrivals {
  stop(): void;
}

/**
 * Calls `onArrival` for each server that joins after this is called. The servers up now are
 * learnt from a ping first; one seen meanwhile that the ping did not name counts as arrived
 * (at worst a repair that finds nothing to do).
 */
export function watchServerArrivals(
  nc: NatsConnection,
  expected: number,
  onArrival: (serverId: string) => void,
): ServerArrivals {
  const known = new Set<string>();
  const seenWhileSeeding = new Set<string>();
  let seeded = false;
  const subscription = nc.subscribe(STATSZ_SUBJECT, {
    callback: (error, msg) => {
      if (error) return;
      const id = msg.subject.split(".")[2];
      if (!id || known.has(id)) return;
      if (!seeded) {
        seenWhileSeeding.add(id);
        return;
      }
      known.add(id);
      onArrival(id);
    },
  });
  void discoverServers(nc, expected, 2000)
    .catch(() => new Map<string, string>())
    .then((found) => {
      for (const id of found.values()) known.add(id);
      seeded = true;
      for (const id of seenWhileSeeding) {
        if (known.has(id)) continue;
        known.add(id);
        onArrival(id);
      }
    });
  return {
    stop: () => {
      subscription.unsubscribe();
    },
  };
}
