/**
 * The operator process: health and metrics endpoints on every replica, the pod webhook where
 * asked, and, unless the replica only serves the webhook, the App controller on the one
 * holding the Lease. SIGTERM drains the work queue, closes the watches and the NATS
 * connection, then releases the Lease so a standby takes over at once.
 */
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { AppController, type ControllerSettings } from "../controller/app-controller.ts";
import { LeaderElector } from "../runtime/leader-election.ts";
import type { Metrics } from "../observability/metrics.ts";
import { startHealthServer } from "../server/health-server.ts";
import { WebhookRuntime } from "../webhook/webhook-runtime.ts";

export interface OperatorProcessOptions {
  kubeConfig: KubeConfig;
  settings: ControllerSettings;
  logger: Logger;
  metrics: Metrics;
  healthHost: string;
  healthPort: number;
  leaseName: string;
  leaseDurationMs: number;
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
  /** The controller while this replica leads. */
  controller: () => AppController | undefined;
  stop: () => Promise<void>;
}

export async function startOperatorProcess(
  options: OperatorProcessOptions,
): Promise<OperatorProcess> {
  const { logger } = options;
  let controller: AppController | undefined;
  let starting: Promise<void> | undefined;

  const lead = (): void => {
    options.metrics.leader.set(1);
    const next = new AppController(options.kubeConfig, options.settings, logger, options.metrics);
    controller = next;
    logger.info({ identity: options.identity }, "leading: starting the App controller");
    starting = next.start().catch((error: unknown) => {
      // Without its bootstrap the controller cannot work; exiting lets Kubernetes restart it
      // (with backoff) and another replica lead meanwhile.
      logger.fatal({ err: error }, "the App controller failed to start");
      process.exitCode = 1;
      void stop();
    });
  };
  const follow = (): void => {
    options.metrics.leader.set(0);
    const current = controller;
    controller = undefined;
    if (current) {
      logger.warn("lost the Lease: stopping the App controller");
      void current.stop();
    }
  };

  const webhookSettings = options.settings.webhook;
  const webhook =
    options.webhook && webhookSettings
      ? new WebhookRuntime({
          kubeConfig: options.kubeConfig,
          namespace: options.settings.namespace,
          settings: webhookSettings,
          host: options.webhook.host,
          port: options.webhook.port,
          logger,
        })
      : undefined;

  const health = await startHealthServer({
    host: options.healthHost,
    port: options.healthPort,
    metrics: options.metrics,
    logger,
    // A standby is ready when its webhook serves: it waits for the Lease.
    ready: () => {
      if (webhook && !webhook.ready()) return { ready: false, reason: "webhook not serving yet" };
      return controller ? controller.ready() : { ready: true };
    },
  });

  const elector =
    options.controller === false
      ? undefined
      : new LeaderElector({
          kubeConfig: options.kubeConfig,
          namespace: options.settings.namespace,
          name: options.leaseName,
          identity: options.identity,
          leaseDurationMs: options.leaseDurationMs,
          renewIntervalMs: Math.max(500, Math.floor(options.leaseDurationMs / 3)),
          retryIntervalMs: Math.max(300, Math.floor(options.leaseDurationMs / 5)),
          logger,
          onStartedLeading: lead,
          onStoppedLeading: follow,
        });
  elector?.start();
  await webhook?.start();

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      await starting;
      await controller?.stop();
      controller = undefined;
      await elector?.stop();
      await webhook?.stop();
      await health.close();
    })();
    return stopped;
  };
  return {
    healthUrl: health.url,
    webhookUrl: () => webhook?.url(),
    isLeader: () => elector?.isLeader() ?? false,
    controller: () => controller,
    stop,
  };
}
