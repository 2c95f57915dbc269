/**
 * The operator's Prometheus metrics, on a registry of their own (prom-client's global one is
 * shared by every library in the process, and by every operator a test starts).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

const PREFIX = "nats_tenancy_";

export interface Metrics {
  registry: Registry;
  reconcileTotal: Counter<"result">;
  reconcileDuration: Histogram;
  reconcileErrors: Counter<"reason">;
  queueDepth: Gauge;
  accounts: Gauge;
  natsPushes: Counter<"operation">;
  apiWrites: Counter<"resource">;
  /** 1 while this replica holds the leader Lease. */
  leader: Gauge;
  watchRestarts: Counter<"resource">;
  reconcileRetries: Counter;
  queueBackoff: Gauge;
  queueOldestSeconds: Gauge;
  /** Where the queue gauges read from at each scrape: the App loop's queue while leading. */
  observeQueue: (source: QueueStats | undefined) => void;
  webhookReviews: Counter<"outcome" | "reason">;
  webhookReviewDuration: Histogram;
  driftRepairDuration: Histogram;
}

export interface QueueStats {
  backingOff: () => number;
  oldestPendingMs: () => number;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  let queue: QueueStats | undefined;
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  const registers = [registry];
  return {
    registry,
    reconcileTotal: new Counter({
      name: `${PREFIX}reconcile_total`,
      help: "Reconciliations of Apps, by result (success, error, requeue).",
      labelNames: ["result"],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: "Time to reconcile one App.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    reconcileErrors: new Counter({
      name: `${PREFIX}reconcile_errors_total`,
      help: "Failed reconciliations, by the error's name.",
      labelNames: ["reason"],
      registers,
    }),
    queueDepth: new Gauge({
      name: `${PREFIX}queue_depth`,
      help: "Apps waiting to be reconciled.",
      registers,
    }),
    accounts: new Gauge({
      name: `${PREFIX}accounts`,
      help: "NATS accounts managed.",
      registers,
    }),
    natsPushes: new Counter({
      name: `${PREFIX}nats_pushes_total`,
      help: "Account JWT updates and deletions sent to the NATS resolver, by operation.",
      labelNames: ["operation"],
      registers,
    }),
    apiWrites: new Counter({
      name: `${PREFIX}api_writes_total`,
      help: "Writes to the Kubernetes API, by resource.",
      labelNames: ["resource"],
      registers,
    }),
    leader: new Gauge({
      name: `${PREFIX}leader`,
      help: "1 while this replica holds the leader Lease, else 0.",
      registers,
    }),
    reconcileRetries: new Counter({
      name: `${PREFIX}reconcile_retries_total`,
      help: "Reconciles scheduled to run again after a failure, with backoff.",
      registers,
    }),
    queueBackoff: new Gauge({
      name: `${PREFIX}queue_backoff`,
      help: "Apps waiting out a failure's backoff before their next reconcile.",
      registers,
      collect() {
        this.set(queue?.backingOff() ?? 0);
      },
    }),
    queueOldestSeconds: new Gauge({
      name: `${PREFIX}queue_oldest_unfinished_seconds`,
      help: "How long the oldest App waiting for or in a reconcile has waited; 0 when none.",
      registers,
      collect() {
        this.set((queue?.oldestPendingMs() ?? 0) / 1000);
      },
    }),
    observeQueue: (source) => {
      queue = source;
    },
    watchRestarts: new Counter({
      name: `${PREFIX}watch_restarts_total`,
      help: "Lists or watches restarted after failing, by resource.",
      labelNames: ["resource"],
      registers,
    }),
    webhookReviews: new Counter({
      name: `${PREFIX}webhook_reviews_total`,
      help: "Admission reviews answered: pods by outcome (inject, skip, reject, invalid), Apps (allow, reject, mutate), with a reason code.",
      labelNames: ["outcome", "reason"],
      registers,
    }),
    webhookReviewDuration: new Histogram({
      name: `${PREFIX}webhook_review_duration_seconds`,
      help: "Time to answer one admission review, from its body parsed to its answer ready.",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    driftRepairDuration: new Histogram({
      name: `${PREFIX}drift_repair_duration_seconds`,
      help: "Time to compare every server's accounts with the stored ones and repair the difference.",
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
  };
}
