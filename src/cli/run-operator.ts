/**
 * The operator process: health and metrics endpoints on every replica, the pod webhook where
 * asked, and, unless the replica only serves the webhook, the App controller on the one
 * holding the Lease. SIGTERM drains the work queue, closes the watches and the NATS
 * connection, then releases the Lease so a standby takes over at once.
 */
import type { Logger } from "pino";
import type { AppLoop } from "../controller/apps/app-loop.ts";
import { buildLeaderLoops, type ControllerSettings } from "../controller/leader-loops.ts";
import type { Metrics } from "../observability/metrics.ts";
import { LeaderGated } from "../runtime/leader-gated.ts";
import { startHealthServer } from "../server/health-server.ts";
import { WebhookLoop } from "../webhook/webhook-loop.ts";
import { boundedAccess, type ClusterAccess } from "../kube/cluster-access.ts";

export interface OperatorProcessOptions {
  cluster: ClusterAccess;
  settings: ControllerSettings;
  logger: Logger;
  metrics: Metrics;
  healthHost: string;
  healthPort: number;
  leaseName: string;
  leaseDurationMs: number;
  /** /healthz fails once a reconcile has run this long; 15 minutes when omitted. */
  stuckAfterMs?: number;
  /** Timeout of every API request but watches; 30 s when omitted. */
  apiTimeoutMs?: number;
  identity: string;
  /** Serve the pod webhook here (settings.webhook says how it is registered). */
  webhook?: { host: string; port: number };
  /** Take part in the leader election and run the controller when leading (default true). */
  controller?: boolean;
}

export interface OperatorProcess {
  healthUrl: string;
  /** The webhook's own URL once it serves. */
  webhookUrl: () => string | undefined;
  isLeader: () => boolean;
  /** The App loop while this replica leads. */
  controller: () => AppLoop | undefined;
  stop: () => Promise<void>;
}

export async function startOperatorProcess(
  options: OperatorProcessOptions,
): Promise<OperatorProcess> {
  const { logger, metrics, settings } = options;
  const cluster = boundedAccess(options.cluster, {
    timeoutMs: options.apiTimeoutMs ?? 30_000,
  });
  // The webhook serves on every replica, leader or not: the Service sends reviews to any.
  const webhookSettings = settings.webhook;
  const webhook =
    options.webhook && webhookSettings
      ? new WebhookLoop({
          cluster,
          namespace: settings.namespace,
          settings: webhookSettings,
          ceilings: settings.ceilings,
          host: options.webhook.host,
          port: options.webhook.port,
          logger,
          metrics,
        })
      : undefined;

  let apps: AppLoop | undefined;
  let stopped: Promise<void> | undefined;
  const leader =
    options.controller === false
      ? undefined
      : new LeaderGated({
          election: {
            cluster,
            namespace: settings.namespace,
            name: options.leaseName,
            identity: options.identity,
            leaseDurationMs: options.leaseDurationMs,
            renewIntervalMs: Math.max(500, Math.floor(options.leaseDurationMs / 3)),
            retryIntervalMs: Math.max(300, Math.floor(options.leaseDurationMs / 5)),
          },
          build: async (term) => {
            const built = await buildLeaderLoops({ ...options, cluster }, term);
            apps = built.apps;
            return built.loops;
          },
          logger,
          onLeadership: (leading) => {
            metrics.leader.set(leading ? 1 : 0);
            if (!leading) apps = undefined;
          },
          onFailure: (error) => {
            // Without its bootstrap the controller cannot work; exiting lets Kubernetes restart
            // it (with backoff) and another replica lead meanwhile.
            logger.fatal({ err: error }, "the leader's loops failed to start");
            process.exitCode = 1;
            void stop();
          },
        });

  const health = await startHealthServer({
    host: options.healthHost,
    port: options.healthPort,
    metrics,
    logger,
    // Every call a reconcile makes has a timeout: one running this long is stuck.
    live: () => (apps?.longestRunningMs() ?? 0) < (options.stuckAfterMs ?? 15 * 60_000),
    // A standby is ready when its webhook serves: it waits for the Lease.
    ready: () => {
      const serving = webhook?.ready();
      if (serving && !serving.ready) return serving;
      return leader ? leader.ready() : { ready: true };
    },
  });
  leader?.start();
  await webhook?.start();

  // Hoisted: a leader's loops can fail, and call it, while the webhook is still starting.
  function stop(): Promise<void> {
    stopped ??= (async () => {
      await leader?.stop();
      await webhook?.stop();
      await health.close();
    })();
    return stopped;
  }
  return {
    healthUrl: health.url,
    webhookUrl: () => webhook?.url(),
    isLeader: () => leader?.isLeader() ?? false,
    controller: () => apps,
    stop,
  };
}
