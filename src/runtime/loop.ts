/**
 * A piece of long-running work (a reconcile loop, a renewal timer, a server), built complete by
 * its factory and then started. What runs it decides when: every replica runs some loops, the
 * leader-gated manager runs the others only while the Lease is held.
 */
export interface Readiness {
  ready: boolean;
  reason?: string;
}

export interface Loop {
  /**
   * Resolves once the loop runs. `signal` aborts its API and NATS calls in flight: it fires when
   * this replica may no longer act (the Lease is lost), possibly before stop().
   */
  start(signal: AbortSignal): Promise<void>;
  /** Takes no more work, waits for what is in flight, releases timers and connections. */
  stop(): Promise<void>;
  ready?(): Readiness;
}

/** `promise`, or an AbortError as soon as `signal` fires: a start that waits must not outlive its term. */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => {
      signal.removeEventListener("abort", onAbort);
    });
  });
}

/** Starts loops in order: a later one may rely on an earlier one running. */
export async function startLoops(loops: readonly Loop[], signal: AbortSignal): Promise<void> {
  for (const loop of loops) {
    signal.throwIfAborted();
    await loop.start(signal);
  }
}

/** Stops loops in the reverse of their start order. */
export async function stopLoops(loops: readonly Loop[]): Promise<void> {
  for (const loop of [...loops].reverse()) await loop.stop();
}

/** The first loop not ready, or ready. */
export function readiness(loops: readonly Loop[]): Readiness {
  for (const loop of loops) {
    const state = loop.ready?.();
    if (state && !state.ready) return state;
  }
  return { ready: true };
}
