/**
 * Where the Kubernetes API is and how a request proves who sends it. The operator's requests
 * go through this alone, not through @kubernetes/client-node: loading client-node's generated
 * models and APIs costs about 75 MiB of resident memory before any work (issue 16), more than
 * half of an idle operator. The CLI and tests still use client-node and reach the operator's
 * modules through `kubeConfigAccess` (kube-config.ts).
 */
import type { Dispatcher } from "undici";

export interface Authorization {
  headers: Record<string, string>;
  /** Pooled connections to the API server with its CA and the client's certificate. */
  dispatcher: Dispatcher;
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
    server: access.server,
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
