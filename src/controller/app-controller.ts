/**
 * The leader's work: bootstrap, then informers on Apps and app Secrets feeding a work queue of
 * App keys, and a periodic resync that re-runs bootstrap (certificate renewals), re-enqueues
 * every App and orphan, and repairs the servers' drift from the stored accounts.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type V1Secret,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { repairDrift } from "../accounts/drift.ts";
import { parseJwt } from "../accounts/jwt.ts";
import { loadAccount } from "../accounts/key-store.ts";
import { KubernetesSecretStore } from "../accounts/kubernetes-secret-store.ts";
import { APP_RESOURCE } from "../crds/app.ts";
import { MANAGED_BY } from "../kube/apply-secret.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import { readSecret } from "../kube/read-secret.ts";
import type { Metrics } from "../observability/metrics.ts";
import { scrubSecrets } from "../observability/logger.ts";
import { AccountIndex, appKey } from "./account-index.ts";
import { asAppObject, type AppObject } from "../contract/app-object.ts";
import { AppReconciler } from "./app-reconciler.ts";
import { APP_LABEL } from "../contract/app-secret.ts";
import { kubernetesAppWrites } from "./app-writes.ts";
import { bootstrap, type BootstrapSettings, type Bootstrapped } from "./bootstrap.ts";
import {
  LIST_PAGE_SIZE,
  watchApps,
  watchResource,
  type WatchedResource,
} from "../runtime/informers.ts";
import { NatsLink } from "./nats-link.ts";
import { NatsReloads, type ServerReloadSettings } from "./nats-reloads.ts";
import { WorkQueue } from "../runtime/work-queue.ts";

export interface ControllerSettings extends BootstrapSettings {
  /** Where the operator itself connects (any server; system requests reach them all). */
  natsUrls: string[];
  /** NATS_URL given to apps. */
  appUrl: string;
  /** Servers running a full resolver: a push counts only when all of them acknowledged. */
  expectedServers: number;
  resyncMs: number;
  concurrency: number;
  /** Ask the servers to reload renewed certificates (the chart); absent: something else does. */
  serverReload?: ServerReloadSettings;
}

export class AppController {
  private readonly kubeConfig: KubeConfig;
  private readonly settings: ControllerSettings;
  private readonly logger: Logger;
  private readonly metrics: Metrics;
  private nats: NatsLink | undefined;
  private reloads: NatsReloads | undefined;
  private apps: WatchedResource<AppObject> | undefined;
  private secrets: WatchedResource<V1Secret> | undefined;
  private queue: WorkQueue | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private index: AccountIndex | undefined;
  private boot: Bootstrapped | undefined;
  private stopping = false;
  private repairing: Promise<void> | undefined;

  constructor(
    kubeConfig: KubeConfig,
    settings: ControllerSettings,
    logger: Logger,
    metrics: Metrics,
  ) {
    this.kubeConfig = kubeConfig;
    this.settings = settings;
    this.logger = logger;
    this.metrics = metrics;
  }

  /** Informers synced: the caches the reconciles read are complete. */
  ready(): { ready: boolean; reason?: string } {
    if (!this.apps?.synced() || !this.secrets?.synced())
      return { ready: false, reason: "informers not synced" };
    return { ready: true };
  }

  /** Resolves when nothing is queued or running (tests, benchmarks). */
  async idle(): Promise<void> {
    await this.queue?.idle();
  }

  async start(): Promise<void> {
    const { kubeConfig, settings, logger, metrics } = this;
    const store = new KubernetesSecretStore(kubeConfig, settings.namespace);
    this.boot = await bootstrap(kubeConfig, store, settings);
    for (const change of this.boot.changes) logger.info({ change }, "bootstrap");
    this.index = await AccountIndex.load(store);
    metrics.accounts.set(this.index.size);

    this.nats = new NatsLink({
      servers: settings.natsUrls,
      expectedServers: settings.expectedServers,
      creds: this.boot.artifacts.systemUserCreds,
      ca: this.boot.caBundle,
      logger,
      // Reconciles that failed for want of NATS go again now, not at their next backoff.
      onConnect: () => {
        this.queue?.retryFailedNow();
        void this.repairServers(store);
        this.reloadServers();
      },
    });
    const link = this.nats;
    if (settings.serverReload)
      this.reloads = new NatsReloads({
        settings: settings.serverReload,
        expectedServers: settings.expectedServers,
        connection: () => link.resolver().connection,
        logger,
      });

    const index = this.index;
    const nats = this.nats;
    const custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const reconciler = new AppReconciler({
      identity: this.boot.identity,
      caBundle: () => this.boot?.caBundle ?? "",
      appUrl: settings.appUrl,
      store,
      index,
      resolver: () => nats.resolver(),
      getApp: (namespace, name) => this.apps?.get(namespace, name),
      readApp: (namespace, name) => readApp(custom, namespace, name),
      getSecret: (namespace, name) => this.secrets?.get(namespace, name),
      readSecret: (namespace, name) => readSecret(core, namespace, name),
      writes: kubernetesAppWrites(kubeConfig, "nats-tenancy", (resource) => {
        metrics.apiWrites.inc({ resource });
      }),
      scrub: scrubSecrets,
      onPush: (operation) => {
        metrics.natsPushes.inc({ operation });
      },
      now: () => Date.now(),
    });
    this.queue = new WorkQueue({
      concurrency: settings.concurrency,
      process: async (key) => {
        const end = metrics.reconcileDuration.startTimer();
        try {
          const result = await reconciler.reconcile(key);
          metrics.reconcileTotal.inc({ result: result ? "requeue" : "success" });
          return result;
        } catch (error) {
          metrics.reconcileTotal.inc({ result: "error" });
          throw error;
        } finally {
          end();
          metrics.accounts.set(index.size);
        }
      },
      onError: (key, error, attempt) => {
        const reason = error instanceof Error ? error.name : "Error";
        metrics.reconcileErrors.inc({ reason });
        logger.warn({ app: key, attempt, err: error }, "reconcile failed; retrying with backoff");
      },
      onDepthChange: (depth) => {
        metrics.queueDepth.set(depth);
      },
    });
    const queue = this.queue;

    // No reconcile may run on half a picture: one that found an App's Secret missing from a cache
    // still loading would write it again, one that found the App missing would call its
    // accounts orphans. Keys added meanwhile wait in the queue.
    await queue.exclusive(async () => {
      this.apps = await watchApps({
        kubeConfig,
        label: "apps",
        onChange: (app) => {
          queue.add(appKey(app.metadata.namespace, app.metadata.name));
        },
        logger,
      });
      this.secrets = await watchResource<V1Secret>({
        kubeConfig,
        label: "app secrets",
        path: "/api/v1/secrets",
        labelSelector: `app.kubernetes.io/managed-by=${MANAGED_BY["app.kubernetes.io/managed-by"]},${APP_LABEL}`,
        listPage: (labelSelector, token) =>
          core.listSecretForAllNamespaces({
            limit: LIST_PAGE_SIZE,
            ...(labelSelector ? { labelSelector } : {}),
            ...(token ? { _continue: token } : {}),
          }),
        // A Secret deleted or edited by hand is put back by its App's reconcile.
        onChange: (secret) => {
          const app = secret.metadata?.labels?.[APP_LABEL];
          const namespace = secret.metadata?.namespace;
          if (app && namespace) queue.add(appKey(namespace, app));
        },
        logger,
      });
      await Promise.all([this.apps.waitSynced(), this.secrets.waitSynced()]);
    });
    this.nats.start();
    this.enqueueAll();
    this.scheduleResync(store);
  }

  /** Every App, and every app that still has keys but no App (an orphan to clean up). */
  private enqueueAll(): void {
    const keys = new Set<string>();
    for (const object of this.apps?.list() ?? []) {
      const app = asAppObject(object);
      if (app) keys.add(appKey(app.metadata.namespace, app.metadata.name));
    }
    for (const key of this.index?.apps() ?? []) keys.add(key);
    for (const key of keys) this.queue?.add(key);
  }

  /**
   * Brings every server's resolver in line with the stored accounts; pushes only what differs.
   * Runs with no reconcile in flight: one minting or deleting an account between the stored
   * accounts being read and the servers being listed would be mistaken for drift and undone.
   */
  private async repairServers(store: KubernetesSecretStore): Promise<void> {
    const queue = this.queue;
    if (!queue || this.stopping) return;
    // One repair at a time: a connect and a resync can ask at once.
    this.repairing ??= queue
      .exclusive(() => this.repairServersNow(store))
      .catch((error: unknown) => {
        this.logger.warn({ err: error }, "drift repair failed; the next resync retries it");
      })
      .finally(() => {
        this.repairing = undefined;
      });
    await this.repairing;
  }

  private async repairServersNow(store: KubernetesSecretStore): Promise<void> {
    if (!this.nats?.connected() || !this.index || !this.boot) return;
    const desired = new Map<string, string>();
    for (const key of this.index.apps()) {
      const [namespace = "", app = ""] = key.split("/");
      for (const environment of this.index.environments(namespace, app)) {
        const stored = await loadAccount(store, { namespace, app, environment });
        if (!stored) continue;
        desired.set(parseJwt(stored.accountJwt).sub, stored.accountJwt);
      }
    }
    const report = await repairDrift(this.nats.resolver(), desired, this.boot.identity);
    const repaired = report.missing.size + report.stale.length + report.unexpected.size;
    if (repaired > 0) {
      this.metrics.natsPushes.inc(
        { operation: "update" },
        report.missing.size + report.stale.length,
      );
      if (report.unexpected.size > 0) this.metrics.natsPushes.inc({ operation: "delete" });
      this.logger.info(
        {
          missing: [...report.missing.entries()].map(([account, servers]) => ({
            account,
            servers,
          })),
          stale: report.stale,
          unexpected: [...report.unexpected.keys()],
        },
        "repaired the servers' accounts",
      );
    }
  }

  private reloadServers(): void {
    if (this.boot) this.reloads?.request({ certificatePem: this.boot.natsServerCertificatePem });
  }

  private scheduleResync(store: KubernetesSecretStore): void {
    this.resyncTimer = setTimeout(() => {
      void this.resync(store).finally(() => {
        if (!this.stopping) this.scheduleResync(store);
      });
    }, this.settings.resyncMs);
  }

  private async resync(store: KubernetesSecretStore): Promise<void> {
    try {
      const boot = await bootstrap(this.kubeConfig, store, this.settings);
      for (const change of boot.changes) this.logger.info({ change }, "bootstrap");
      this.boot = { ...boot };
      this.nats?.update(boot.artifacts.systemUserCreds, boot.caBundle);
      this.reloadServers();
      this.enqueueAll();
    } catch (error) {
      this.logger.warn({ err: error }, "resync failed; the next one retries");
    }
    await this.repairServers(store);
  }

  /** Stops taking work, lets running reconciles finish, closes watches and the NATS connection. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.resyncTimer);
    await this.repairing;
    await this.queue?.drain();
    await Promise.all([this.apps?.stop(), this.secrets?.stop(), this.reloads?.stop()]);
    await this.nats?.stop();
  }
}

async function readApp(
  custom: CustomObjectsApi,
  namespace: string,
  name: string,
): Promise<AppObject | undefined> {
  return asAppObject(
    await unlessNotFound(custom.getNamespacedCustomObject({ ...APP_RESOURCE, namespace, name })),
  );
}
