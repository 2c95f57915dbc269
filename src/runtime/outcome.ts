/**
 * How a reconcile ends: done (nothing left to do until something changes), requeueAfter (the
 * object waits on its owner or on time, nothing is wrong with the operator), or retry (a fault,
 * retried with backoff). Metrics and logs tell the last apart from the other two.
 */
import type { WorkResult } from "./work-queue.ts";

export type ReconcileOutcome =
  | { kind: "done" }
  | { kind: "requeueAfter"; ms: number; why: string }
  | { kind: "retry"; error: unknown };

export const done: ReconcileOutcome = { kind: "done" };

export function requeueAfter(ms: number, why: string): ReconcileOutcome {
  return { kind: "requeueAfter", ms, why };
}

export function retry(error: unknown): ReconcileOutcome {
  return { kind: "retry", error };
}

/** For the work queue: a retry throws, so the queue backs off and counts the failure. */
export function workResult(outcome: ReconcileOutcome): WorkResult {
  if (outcome.kind === "retry") throw outcome.error;
  return outcome.kind === "requeueAfter" ? { requeueAfterMs: outcome.ms } : undefined;
}
