/**
 * Makes every NATS server load the files the operator just wrote into the NATS config Secret
 * (certificate renewal, CA rotation), and proves it on the wire.
 *
 * The kubelet refreshes a Secret volume some seconds to a minute after the Secret changes, at
 * a different moment on each pod, and nothing in the pod watches the files: so the operator
 * asks each server to reload over the system account (`$SYS.REQ.SERVER.<id>.RELOAD`, nats-server
 * 2.10+), then dials the server's client port to see which certificate it presents, and asks
 * again with backoff until every server presents the new one or the deadline passes.
 *
 * Only the server certificate is checked. The kubelet swaps all files of a Secret volume at once
 * (one symlink swap of the whole directory), and a reload re-reads every file the configuration
 * names, so a server presenting the new server certificate has also loaded the route
 * certificate, CA bundle and trust file written with it.
 */
import { X509Certificate } from "node:crypto";
import { on, once } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { PING_SUBJECT, discoverServers, rethrowPermission } from "./server-discovery.ts";

/** Where a server's client port is reached, and the name its certificate must carry. */
export interface ServerEndpoint {
  host: string;
  port: number;
  /** TLS server name (SNI) and the host name verified in the certificate; `host` if unset. */
  servername?: string;
}

export interface ReloadOptions {
  /** A connection as a user of the system account (the operator's). */
  connection: NatsConnection;
  /**
   * The server certificate now in the Secret (PEM; the leaf first if it is a chain). A server
   * is current when it presents exactly this certificate: the handshake proves it holds the
   * key, so no CA is needed (and a server whose certificate no longer verifies, expired or from
   * a replaced CA, is still recognised as stale and asked to reload).
   */
  expectedCertificatePem: string;
  /** How to reach a server by its `server_name` (the chart: `<pod>.<headless service>.<ns>.svc`). */
  endpoint: (serverName: string) => ServerEndpoint;
  /** How many servers must answer and present the certificate. */
  expectedServers: number;
  /** Gives up after this long (and within a second after it). */
  deadlineMs: number;
  /** Checked between network steps, each of which takes at most seconds. */
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ReloadResult {
  /** Servers that were asked to reload and now present the expected certificate. */
  reloaded: string[];
  /** Servers that presented it before being asked (nothing was reloaded on them). */
  alreadyCurrent: string[];
}

/** The deadline passed before every server presented the expected certificate. */
export class ServerReloadTimeoutError extends Error {
  override name = "ServerReloadTimeoutError";
  /** Servers that answered but still do not present the certificate, with the last reason. */
  readonly stale: Map<string, string>;
  /** Servers that never answered the discovery ping (their names are unknown). */
  readonly unanswered: number;

  constructor(deadlineMs: number, stale: Map<string, string>, unanswered: number) {
    const parts = [...stale].map(([name, reason]) => `${name} (${reason})`);
    if (unanswered > 0) parts.push(`${unanswered} server(s) that never answered the ping`);
    super(`after ${deadlineMs} ms, still not serving the new certificate: ${parts.join(", ")}`);
    this.stale = stale;
    this.unanswered = unanswered;
  }
}

/** Ids change on restart: a server is found by its name first. */
const reloadSubject = (serverId: string): string => `$SYS.REQ.SERVER.${serverId}.RELOAD`;

/** What the system user must be allowed to publish for reloadUntilServing. */
export const SERVER_RELOAD_PUBLISH = [PING_SUBJECT, reloadSubject("*")];

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;
/** Bounds of one network step (ping, handshake, reload request). */
const STEP_MAX_MS = 5_000;
const STEP_MIN_MS = 200;
const PING_MAX_MS = 2_000;
/** A reload takes milliseconds; a reply that is late was lost with a dropped connection. */
const RELOAD_REPLY_MS = 2_000;
/**
 * At most one reload per server this often. The kubelet refreshes the files a minute or more
 * after the Secret changed (its sync period), and until then a reload achieves nothing but
 * re-reading every account (and, on 2.12, dropping every client); the handshakes in between
 * are cheap.
 */
const RELOAD_INTERVAL_MS = 15_000;

/**
 * The leaf certificate a server presents on its client port now. nats-server first sends its
 * INFO line in plaintext and then expects the client to start TLS on the same socket. With a
 * CA bundle the certificate must verify against it and name the endpoint; without one it is
 * only read (the caller compares it with the one it expects).
 */
export async function presentedCertificate(
  endpoint: ServerEndpoint,
  ca: string | undefined,
  timeoutMs = STEP_MAX_MS,
): Promise<X509Certificate> {
  const where = `${endpoint.host}:${endpoint.port}`;
  const signal = AbortSignal.timeout(timeoutMs);
  const socket = netConnect(endpoint.port, endpoint.host);
  try {
    await readInfoLine(socket, signal);
    const secure = tlsConnect({
      socket,
      servername: endpoint.servername ?? endpoint.host,
      ...(ca === undefined ? { rejectUnauthorized: false } : { ca }),
    });
    try {
      await once(secure, "secureConnect", { signal });
      const certificate = secure.getPeerX509Certificate();
      if (!certificate) throw new Error(`${where} presented no certificate`);
      return certificate;
    } finally {
      secure.destroy();
    }
  } catch (error) {
    if (signal.aborted)
      throw new Error(`no TLS handshake with ${where} within ${timeoutMs} ms`, { cause: error });
    throw error;
  } finally {
    socket.destroy();
  }
}

/** Consumes the INFO line, so that none of its bytes reach the TLS layer. */
async function readInfoLine(socket: Socket, signal: AbortSignal): Promise<void> {
  let seen = "";
  // `on` queues chunks, so none is lost between two iterations; leaving the loop removes the
  // listener before TLS takes the socket over (the server sends nothing more until then).
  for await (const [chunk] of on(socket, "data", { signal, close: ["close"] })) {
    seen += (chunk as Buffer).toString("latin1");
    if (seen.includes("\r\n") || seen.length > 64 * 1024) break;
  }
  if (!seen.startsWith("INFO ") || !seen.includes("\r\n"))
    throw new Error(`expected an INFO line, got ${JSON.stringify(seen.slice(0, 20))}`);
}

interface ServerState {
  id: string;
  asked: boolean;
  /** When it was last asked to reload (ms since epoch). */
  askedAtMs?: number;
  /** Why it is not current yet: what it presents, or what failed. */
  reason: string;
}

/** `{"server": {...}}` when it reloaded, with `"error"` when it did not (a parse error...). */
interface ReloadReply {
  error?: { code?: number; description?: string };
}

/** Asks one server to reload; resolves to why it failed, or undefined when it reloaded. */
async function askReload(
  nc: NatsConnection,
  serverId: string,
  timeout: number,
): Promise<string | undefined> {
  try {
    const msg = await nc.request(reloadSubject(serverId), "", { timeout });
    const reply = msg.json<ReloadReply>();
    if (reply.error) return `reload failed: ${reply.error.description ?? "unknown error"}`;
    return undefined;
  } catch (error) {
    rethrowPermission(error, SERVER_RELOAD_PUBLISH);
    // The reply can be lost when the reload drops this very connection; the handshake that
    // follows tells whether it took effect.
    return `no answer to reload: ${(error as Error).message}`;
  }
}

/**
 * One server at a time, the one this connection is attached to last. nats-server 2.12 closes
 * its client connections on a reload in operator mode (2.15 keeps them): one at a time, clients
 * always have servers to reconnect to; last, this connection loses at most one reply a round,
 * and comes back on a server that has already reloaded.
 */
function reloadOrder(
  pending: Map<string, ServerState>,
  nc: NatsConnection,
): [string, ServerState][] {
  const attached = nc.info?.server_name;
  return [...pending].sort(([a], [b]) => Number(a === attached) - Number(b === attached));
}

/** Asks the servers to reload, with backoff, until each presents the expected certificate. */
export async function reloadUntilServing(o: ReloadOptions): Promise<ReloadResult> {
  const startedMs = Date.now();
  const deadline = startedMs + o.deadlineMs;
  const stepMs = (cap = STEP_MAX_MS): number =>
    Math.min(cap, Math.max(STEP_MIN_MS, deadline - Date.now()));
  const expected = new X509Certificate(o.expectedCertificatePem).fingerprint256;
  const pending = new Map<string, ServerState>();
  const result: ReloadResult = { reloaded: [], alreadyCurrent: [] };
  const settled = (): number => result.reloaded.length + result.alreadyCurrent.length;

  /**
   * Why the server does not present the expected certificate now (undefined when it does), and
   * whether a reload can change that: not when the server cannot be reached at all.
   */
  const mismatch = async (
    name: string,
  ): Promise<{ reason: string; reloadable: boolean } | undefined> => {
    try {
      const presented = await presentedCertificate(o.endpoint(name), undefined, stepMs());
      return presented.fingerprint256 === expected
        ? undefined
        : { reason: `presents serial ${presented.serialNumber}`, reloadable: true };
    } catch (error) {
      return { reason: `unreachable: ${(error as Error).message}`, reloadable: false };
    }
  };
  const settle = (name: string, state: ServerState): void => {
    pending.delete(name);
    (state.asked ? result.reloaded : result.alreadyCurrent).push(name);
    o.logger?.info({ server: name, reloaded: state.asked }, "NATS server presents the certificate");
  };
  const round = async (): Promise<void> => {
    const known = new Set([...pending.keys(), ...result.reloaded, ...result.alreadyCurrent]);
    for (const [name, id] of await discoverServers(
      o.connection,
      o.expectedServers,
      stepMs(PING_MAX_MS),
    ))
      if (!known.has(name)) pending.set(name, { id, asked: false, reason: "not checked yet" });
      else {
        const state = pending.get(name);
        if (state) state.id = id;
      }
    for (const [name, state] of reloadOrder(pending, o.connection)) {
      o.signal?.throwIfAborted();
      if (Date.now() >= deadline) return;
      // Checked before asking: a restarted pod already serves the new files, and a reload
      // would only drop its clients for nothing.
      const before = await mismatch(name);
      if (before === undefined) {
        settle(name, state);
        continue;
      }
      state.reason = before.reason;
      const recently =
        state.askedAtMs !== undefined && Date.now() - state.askedAtMs < RELOAD_INTERVAL_MS;
      if (!before.reloadable || recently) continue;
      const failed = await askReload(o.connection, state.id, stepMs(RELOAD_REPLY_MS));
      state.asked = true;
      state.askedAtMs = Date.now();
      o.logger?.info({ server: name, failed }, "asked NATS server to reload its configuration");
      const after = await mismatch(name);
      if (after === undefined) settle(name, state);
      else state.reason = failed ? `${failed}; ${after.reason}` : after.reason;
    }
  };

  for (let delay = BACKOFF_START_MS; ; delay = Math.min(delay * 2, BACKOFF_MAX_MS)) {
    o.signal?.throwIfAborted();
    if (o.connection.isClosed()) throw new Error("the system account connection is closed");
    await round();
    if (settled() >= o.expectedServers && pending.size === 0) break;
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const stale = new Map(
        [...pending].sort(([a], [b]) => a.localeCompare(b)).map(([name, s]) => [name, s.reason]),
      );
      const unanswered = Math.max(0, o.expectedServers - settled() - pending.size);
      const error = new ServerReloadTimeoutError(o.deadlineMs, stale, unanswered);
      o.logger?.warn({ err: error }, "NATS servers did not pick up the new certificate");
      throw error;
    }
    await sleep(Math.min(delay, remaining), undefined, o.signal ? { signal: o.signal } : {});
  }
  o.logger?.info({ ...result, ms: Date.now() - startedMs }, "every NATS server reloaded");
  return { reloaded: result.reloaded.sort(), alreadyCurrent: result.alreadyCurrent.sort() };
}
