/**
 * Which operator JWT each NATS server runs with, over the system account: every server answers
 * a VARZ ping with the operator JWTs it loaded at start (a reload never changes them).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { pingServers } from "./server-discovery.ts";

export const VARZ_SUBJECT = "$SYS.REQ.SERVER.PING.VARZ";

interface VarzReply {
  server?: { name?: string };
  data?: { trusted_operators_jwt?: string[] };
}

/**
 * Each answering server's operator JWT, by server name; undefined unless `expected` servers
 * answered.
 */
export async function runningOperatorJwts(
  nc: NatsConnection,
  expected: number,
  maxWait: number,
): Promise<Map<string, string> | undefined> {
  const found = new Map<string, string>();
  for (const { server, data } of await pingServers<VarzReply>(
    nc,
    VARZ_SUBJECT,
    expected,
    maxWait,
  )) {
    const [operatorJwt] = data?.trusted_operators_jwt ?? [];
    if (server?.name && operatorJwt) found.set(server.name, operatorJwt);
  }
  return found.size >= expected ? found : undefined;
}
