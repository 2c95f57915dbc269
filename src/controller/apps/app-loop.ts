/**
 * The App reconcile loop: a work queue of App keys, fed by the sources declared in start(),
 * each key run through the AppReconciler and its outcome counted and logged.
 */
import type { V1Secret } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { Ceilings } from "../../accounts/ceilings.ts";
import type { CredentialPolicy } from "../../accounts/credential-policy.ts";
import type { OperatorIdentity } from "../../accounts/identities.ts";
import type { SecretStore } from "../../accounts/key-store.ts";
import { asAppObject, readAppObject, type AppObject } from "../../contract/app-object.ts";
import { APP_LABEL, type AppUrls } from "../../contract/app-secret.ts";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import { JsonRequests } from "../../kube/json-requests.ts";
import { readSecret } from "../../kube/read-secret.ts";
import { scrubSecrets } from "../../observability/logger.ts";
import type { Metrics } from "../../observability/metrics.ts";
import { watchApps, watchAppSecrets, type WatchedResource } from "../../runtime/informers.ts";
import { unlessAborted, type Loop, type Readiness } from "../../runtime/loop.ts";
import { workResult, type ReconcileOutcome } from "../../runtime/outcome.ts";
import { subscribe, type Source, type Subscription, type Trigger } from "../../runtime/triggers.ts";
import { WorkQueue } from "../../runtime/work-queue.ts";
import { appKey, type AccountIndex } from "../../accounts/account-index.ts";
import { AppReconciler, type AccountServers } from "./app-reconciler.ts";
import { lacksServers } from "./app-status.ts";
import { kubernetesAppWrites } from "./app-writes.ts";
import { sharingReferences } from "./sharing-plan.ts";

export interface AppLoopOptions {
  /** Built for the leader's term: its requests abort when the term ends. */
  cluster: ClusterAccess;
  store: SecretStore;
  index: AccountIndex;
  /** The operator identity and CA bundle as last bootstrapped. */
  identity: () => OperatorIdentity;
  caBundle: () => string;
  /**
   * Fired when every App's accounts or Secrets must be made anew: the CA bundle apps trust
   * changed (every App Secret carries it), or the operator key that signs accounts.
   */
  appInputsChanged: Trigger;
  servers: () => AccountServers;
  /** Servers running a full resolver. */
  expectedServers: number;
  ceilings: Ceilings;
  credentials: CredentialPolicy;
  /** Fired on every new NATS connection. */
  natsConnected: Trigger;
  /** Fired when a NATS server (re)joins the cluster. */
  serverJoined: Trigger;
  /** The URLs given to apps. */
  appUrls: AppUrls;
  resyncMs: number;
  concurrency: number;
  logger: Logger;
  metrics: Metrics;
}

export class AppLoop implements Loop {
  private readonly options: AppLoopOptions;
  private readonly queue: WorkQueue;
  private readonly reconciler: AppReconciler;
  private readonly apps: WatchedResource<AppObject>;
  private readonly secrets: WatchedResource<V1Secret>;
  private readonly triggers: Source[];
  private subscriptions: Subscription[] = [];
  /** The Apps that export or import, with the Apps each names: few, so scanned whole. */
  private readonly sharers = new Map<string, Set<string>>();

  constructor(options: AppLoopOptions) {
    this.options = options;
    const { cluster, index, logger, metrics } = options;
    const requests = new JsonRequests(cluster);
    const add = (namespace: string, name: string): void => {
      this.queue.add(appKey(namespace, name));
    };
    const restarts = (resource: string) => () => {
      metrics.watchRestarts.inc({ resource });
    };

    // What starts a reconcile. The two caches also serve the reconciler's reads.
    this.apps = watchApps({
      cluster,
      label: "apps",
      onChange: (app) => {
        const { namespace, name } = app.metadata;
        add(namespace, name);
        // Consent is read from this cache: the Apps on either side of a change look again,
        // whether or not the changed App's own reconcile gets to re-sign anything.
        const key = appKey(namespace, name);
        this.enqueueLinked(key);
        const named = this.apps.get(namespace, name) ? sharingReferences(app) : new Set<string>();
        if (named.size > 0) this.sharers.set(key, named);
        else this.sharers.delete(key);
        this.enqueueLinked(key);
      },
      onRestart: restarts("apps"),
      logger,
    });
    this.secrets = watchAppSecrets({
      cluster,
      label: "app secrets",
      // A Secret deleted or edited by hand is put back by its App's reconcile.
      onChange: (secret) => {
        const app = secret.metadata?.labels?.[APP_LABEL];
        const namespace = secret.metadata?.namespace;
        if (app && namespace) add(namespace, app);
      },
      onRestart: restarts("app secrets"),
      logger,
    });
    this.triggers = [
      // What failed for want of NATS goes again now, not at its next backoff.
      {
        trigger: options.natsConnected,
        run: () => {
          this.queue.retryFailedNow();
        },
      },
      // A server back from an outage lacks the accounts only the others acknowledged.
      { trigger: options.serverJoined, run: this.enqueueIncomplete },
      // Every App Secret carries the CA bundle.
      { trigger: options.appInputsChanged, run: this.enqueueAll },
      { everyMs: options.resyncMs, run: this.enqueueAll },
    ];

    this.reconciler = new AppReconciler({
      identity: options.identity,
      caBundle: options.caBundle,
      appUrls: options.appUrls,
      store: options.store,
      index,
      servers: options.servers,
      expectedServers: options.expectedServers,
      ceilings: options.ceilings,
      credentials: options.credentials,
      namespaceApps: (namespace) =>
        this.apps.list(namespace).flatMap((object) => asAppObject(object) ?? []),
      getApp: (namespace, name) => this.apps.get(namespace, name),
      readApp: (namespace, name) => readAppObject(requests, namespace, name),
      getSecret: (namespace, name) => this.secrets.get(namespace, name),
      readSecret: (namespace, name) => readSecret(requests, namespace, name),
      writes: kubernetesAppWrites(cluster, "nats-tenancy", (resource) => {
        metrics.apiWrites.inc({ resource });
      }),
      scrub: scrubSecrets,
      onPush: (operation) => {
        metrics.natsPushes.inc({ operation });
      },
      linked: (namespace, name) => {
        this.enqueueLinked(appKey(namespace, name));
      },
      now: () => Date.now(),
    });
    this.queue = new WorkQueue({
      concurrency: options.concurrency,
      process: async (key) => workResult(await this.run(key)),
      onError: (key, error, attempt) => {
        const reason = error instanceof Error ? error.name : "Error";
        metrics.reconcileErrors.inc({ reason });
        metrics.reconcileRetries.inc();
        logger.warn({ app: key, attempt, err: error }, "reconcile failed; retrying with backoff");
      },
      onDepthChange: (depth) => {
        metrics.queueDepth.set(depth);
      },
    });
  }

  async start(signal: AbortSignal): Promise<void> {
    const { queue } = this;
    // No reconcile may run on half a picture: one that found an App's Secret missing from a cache
    // still loading would write it again, one that found the App missing would call its
    // accounts orphans. Keys the informers add meanwhile wait in the queue.
    await queue.exclusive(async () => {
      await Promise.all([this.apps.start(), this.secrets.start()]);
      await unlessAborted(Promise.all([this.apps.waitSynced(), this.secrets.waitSynced()]), signal);
    });
    this.subscriptions = this.triggers.map(subscribe);
    this.options.metrics.observeQueue(queue);
    this.enqueueAll();
  }

  /** Informers synced: the caches the reconciles read are complete. */
  ready(): Readiness {
    if (!this.apps.synced() || !this.secrets.synced())
      return { ready: false, reason: "informers not synced" };
    return { ready: true };
  }

  /** How long the longest reconcile in progress has run, in ms (liveness). */
  longestRunningMs(): number {
    return this.queue.longestRunningMs();
  }

  /** Resolves when nothing is queued or running (tests, benchmarks). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Stops taking work, lets running reconciles finish, closes the watches. */
  async stop(): Promise<void> {
    for (const subscription of this.subscriptions) subscription.cancel();
    this.options.metrics.observeQueue(undefined);
    await this.queue.drain();
    await Promise.all([this.apps.stop(), this.secrets.stop()]);
  }

  /** Every App, and every app that still has keys but no App (an orphan to clean up). */
  private readonly enqueueAll = (): void => {
    const keys = new Set<string>();
    for (const object of this.apps.list()) {
      const app = asAppObject(object);
      if (app) keys.add(appKey(app.metadata.namespace, app.metadata.name));
    }
    for (const key of this.options.index.apps()) keys.add(key);
    for (const key of keys) this.queue.add(key);
  };

  /** The Apps whose sharing names `key`, and those `key`'s sharing names. */
  private enqueueLinked(key: string): void {
    for (const [sharer, named] of this.sharers) {
      if (named.has(key)) this.queue.add(sharer);
      if (sharer === key) for (const other of named) this.queue.add(other);
    }
  }

  /** Apps with an account not every server acknowledged. */
  private readonly enqueueIncomplete = (): void => {
    for (const object of this.apps.list()) {
      const app = asAppObject(object);
      const incomplete = app?.status?.environments?.some((e) =>
        lacksServers(e, this.options.expectedServers),
      );
      if (app && incomplete) this.queue.add(appKey(app.metadata.namespace, app.metadata.name));
    }
  };

  private async run(key: string): Promise<ReconcileOutcome> {
    const { metrics, logger, index } = this.options;
    const end = metrics.reconcileDuration.startTimer();
    let outcome: ReconcileOutcome;
    try {
      outcome = await this.reconciler.reconcile(key);
    } catch (error) {
      outcome = { kind: "retry", error };
    } finally {
      end();
      metrics.accounts.set(index.size);
    }
    metrics.reconcileTotal.inc({ result: RESULT_LABELS[outcome.kind] });
    // A wait on the App's owner is no fault: it is in the status and an Event, not a warning.
    if (outcome.kind === "requeueAfter")
      logger.debug({ app: key, why: outcome.why, inMs: outcome.ms }, "reconcile waits");
    return outcome;
  }
}

const RESULT_LABELS = { done: "success", requeueAfter: "requeue", retry: "error" } as const;
