/**
 * Where the Kubernetes API is and how a request proves who sends it. The operator's requests
 * go through this alone, over Node's own https client: loading @kubernetes/client-node's
 * generated models and APIs costs about 75 MiB of resident memory before any work, and undici's
 * HTTP parser (WebAssembly) about 25 MiB once it has sent a request (issue 16); an idle
 * operator holds less than either. The CLI and tests still use client-node and reach the
 * operator's modules through `kubeConfigAccess` (kube-config.ts).
 */
import { createHash } from "node:crypto";
import type { Agent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { createSecureContext } from "node:tls";

export interface Authorization {
  headers: Record<string, string>;
  /** Keep-alive connections to the API server with its CA and the client's certificate. */
  agent: Agent;
  /** Ends the request: the leader's term, a timeout. Watches ignore it. */
  signal?: AbortSignal;
}

export interface ClusterAccess {
  /** The API server's base URL, without a trailing slash. */
  readonly server: string;
  authorize(): Promise<Authorization>;
  /** Closes the pooled connections (the process stops, or a test is done with it). */
  close(): Promise<void>;
}

/** How long one reading of the credentials serves: short enough for a rotated file or token. */
const REUSE_MS = 1000;

/** How long connections made with replaced certificates may finish what they carry. */
const RETIRE_MS = 60_000;

export interface TlsMaterial {
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  rejectUnauthorized?: boolean | undefined;
  servername?: string | undefined;
}

const text = (value: string | Buffer | undefined) =>
  Buffer.isBuffer(value) ? value.toString("base64") : (value ?? null);

/**
 * One keep-alive agent for the current certificate material: the same material reuses it, so
 * requests share connections (without that every request paid a TLS handshake: about 40% of
 * the operator's CPU while reconciling); a rotated CA or client certificate gets a new agent,
 * and the old one's connections are closed a minute later.
 */
export class AgentPool {
  private current: { key: string; agent: HttpsAgent } | undefined;

  agentFor(material: TlsMaterial): HttpsAgent {
    const key = createHash("sha256")
      .update(
        JSON.stringify([
          text(material.ca),
          text(material.cert),
          text(material.key),
          material.rejectUnauthorized ?? true,
          material.servername ?? null,
        ]),
      )
      .digest("hex");
    if (this.current?.key === key) return this.current.agent;
    const retired = this.current?.agent;
    if (retired)
      setTimeout(() => {
        retired.destroy();
      }, RETIRE_MS).unref();
    // One secure context, not the PEM texts: Node names each connection pool after the TLS
    // options it is given, and a name holding kilobytes of PEM was built and hashed on every
    // request (a sixth of the time the https client took in a burst profile).
    const secureContext = createSecureContext({
      ...(material.ca ? { ca: material.ca } : {}),
      ...(material.cert ? { cert: material.cert } : {}),
      ...(material.key ? { key: material.key } : {}),
    });
    const agent = new HttpsAgent({
      keepAlive: true,
      secureContext,
      rejectUnauthorized: material.rejectUnauthorized ?? true,
      ...(material.servername ? { servername: material.servername } : {}),
    });
    this.current = { key, agent };
    return agent;
  }

  close(): void {
    this.current?.agent.destroy();
    this.current = undefined;
  }
}

/** An authorization worked out at most once per REUSE_MS. */
export function reused(work: () => Promise<Authorization>): () => Promise<Authorization> {
  let recent: { untilMs: number; authorization: Promise<Authorization> } | undefined;
  return () => {
    const now = performance.now();
    if (!recent || now >= recent.untilMs) {
      const authorization = work();
      recent = { untilMs: now + REUSE_MS, authorization };
      // A failure is not kept: the next request works it out again.
      authorization.catch(() => {
        recent = undefined;
      });
    }
    return recent.authorization;
  };
}

export interface RequestBounds {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Runs before every request, and may fire `signal` to stop it. */
  beforeEach?: () => void;
}

/**
 * The same access with every request bounded: a timeout, and an abort signal. A leader makes
 * its requests through one with its term's signal, so losing the Lease aborts the writes it
 * has in flight instead of letting them land after another replica has taken over; a request
 * made after that is refused without being sent. A view of a view adds its bounds to the
 * inner ones. Nothing is thrown here: a watch reconnecting authorizes outside any handler.
 */
export function boundedAccess(access: ClusterAccess, bounds: RequestBounds): ClusterAccess {
  return {
    get server() {
      return access.server;
    },
    close: () => access.close(),
    authorize: async () => {
      const authorization = await access.authorize();
      bounds.beforeEach?.();
      const signals = [
        authorization.signal,
        bounds.signal,
        bounds.timeoutMs === undefined ? undefined : AbortSignal.timeout(bounds.timeoutMs),
      ].filter((signal) => signal !== undefined);
      return signals.length > 0
        ? { ...authorization, signal: AbortSignal.any(signals) }
        : authorization;
    },
  };
}
