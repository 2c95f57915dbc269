/**
 * The webhook as every replica runs it, leader or not (the Service sends reviews to any of
 * them): pods get their credentials injected, new Apps with accounts get the controller's
 * finalizer, Apps over the platform team's ceilings are refused. A cache of Apps to answer from
 * memory within the API server's timeout, the serving certificate read from the Secret the
 * leader keeps and swapped in place when it changes, and an Event on the pod's owner for pods
 * refused or skipped, repeats counted in one Event.
 */
import type { Logger } from "pino";
import { asAppObject, type AppObject } from "../contract/app-object.ts";
import { appSecretName } from "../contract/app-secret.ts";
import { watchApps, type WatchedResource } from "../runtime/informers.ts";
import type { Loop, Readiness } from "../runtime/loop.ts";
import { natsEnvironments } from "../crds/app.ts";
import { EventSeries } from "../kube/events.ts";
import { JsonRequests } from "../kube/json-requests.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { Ceilings } from "../accounts/ceilings.ts";
import type { AppReview, PodReview } from "./admission-review.ts";
import { finalizeApp, judgeApp } from "./app-admission.ts";
import { decide, type AppView, type Decision } from "./pod-injection.ts";
import {
  excludedNamespaces,
  readWebhookTls,
  type WebhookSettings,
} from "../contract/webhook-registration.ts";
import { startWebhookServer, type WebhookServer } from "./webhook-server.ts";
import type { ClusterAccess } from "../kube/cluster-access.ts";

export interface WebhookLoopOptions {
  cluster: ClusterAccess;
  /** The operator's namespace: where the TLS Secret is, and never injected. */
  namespace: string;
  settings: WebhookSettings;
  ceilings: Ceilings;
  host: string;
  port: number;
  logger: Logger;
  metrics: Metrics;
  /** How often the TLS Secret is re-read for a renewed certificate. */
  certificatePollMs?: number;
}

const COMPONENT = "nats-tenancy-webhook";

/**
 * What the webhook knows of an App, from the cache of every App: `neighbours` are the other
 * Apps of its namespace, whose Secret names may collide with its own (App `a-b` environment `c`
 * and App `a` environment `b-c` both name `a-b-c-nats`).
 */
export function appView(
  app: AppObject | undefined,
  neighbours: () => readonly AppObject[],
): AppView | undefined {
  if (!app) return undefined;
  const name = app.metadata.name;
  // The controller marks an environment ready only once the Secret of that name is this App's.
  const holds = (environment: string, secret: string): boolean =>
    app.status?.environments?.some(
      (e) => e.name === environment && e.secret === secret && e.ready,
    ) === true;
  return {
    environments: natsEnvironments(app.spec),
    secretName: (environment) => appSecretName(name, environment),
    terminating: app.metadata.deletionTimestamp !== undefined,
    contestedBy: (environment) => {
      const secret = appSecretName(name, environment);
      if (holds(environment, secret)) return undefined;
      for (const other of neighbours()) {
        if (other.metadata.uid === app.metadata.uid) continue;
        const rival = natsEnvironments(other.spec).find(
          (e) => appSecretName(other.metadata.name, e) === secret,
        );
        if (rival !== undefined) return { app: other.metadata.name, environment: rival };
      }
      return undefined;
    },
  };
}

export class WebhookLoop implements Loop {
  private readonly options: WebhookLoopOptions;
  private readonly excluded: ReadonlySet<string>;
  private readonly apps: WatchedResource<AppObject>;
  private readonly events: EventSeries;
  private server: WebhookServer | undefined;
  private certificate = "";
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: WebhookLoopOptions) {
    this.options = options;
    this.excluded = new Set(excludedNamespaces(options.settings, options.namespace));
    this.events = new EventSeries(new JsonRequests(options.cluster), COMPONENT);
    this.apps = watchApps({
      cluster: options.cluster,
      label: "apps (webhook)",
      onChange: () => undefined,
      onRestart: () => {
        options.metrics.watchRestarts.inc({ resource: "apps (webhook)" });
      },
      logger: options.logger,
    });
  }

  /** Serving: the App cache is loaded and the certificate is in place. */
  ready(): Readiness {
    if (!this.server) return { ready: false, reason: "webhook not serving yet" };
    if (!this.apps.synced()) return { ready: false, reason: "webhook's App cache not synced" };
    return { ready: true };
  }

  url(): string | undefined {
    return this.server?.url;
  }

  /** Starts the App cache, then serves as soon as the leader has written the certificate. */
  async start(): Promise<void> {
    await this.apps.start();
    await this.refreshCertificate();
  }

  private async refreshCertificate(): Promise<void> {
    const { cluster, namespace, settings, logger } = this.options;
    try {
      const { leaf } = await readWebhookTls(cluster, namespace, settings);
      if (leaf && leaf.certificatePem !== this.certificate) {
        if (this.server) {
          this.server.setCertificate(leaf);
          logger.info("webhook certificate renewed in place");
        } else {
          this.server = await startWebhookServer({
            host: this.options.host,
            port: this.options.port,
            certificate: leaf,
            decide: (review) => this.decide(review),
            onDecision: (review, decision, seconds) => {
              this.report(review, decision, seconds);
            },
            judgeApp: (review) =>
              judgeApp(review, this.options.ceilings, () => this.namespaceApps(review.namespace)),
            onAppVerdict: (review, refusal, seconds) => {
              this.reportApp(review, refusal, seconds);
            },
            mutateApp: finalizeApp,
            onAppMutation: (_creation, operations, seconds) => {
              this.options.metrics.webhookReviewDuration.observe(seconds);
              this.options.metrics.webhookReviews.inc({
                outcome: operations.length > 0 ? "mutate" : "allow",
                reason: operations.length > 0 ? "FinalizerAdded" : "NoAccounts",
              });
            },
            onInvalid: () => {
              this.options.metrics.webhookReviews.inc({ outcome: "invalid", reason: "BadReview" });
            },
            logger,
          });
          logger.info({ url: this.server.url }, "webhook serving");
        }
        this.certificate = leaf.certificatePem;
      } else if (!leaf && !this.server) {
        logger.info({ secret: settings.tlsSecret }, "webhook waiting for its certificate");
      }
    } catch (error) {
      logger.warn({ err: error }, "webhook certificate check failed; retrying");
    }
    if (this.stopped) return;
    // Until it serves, look often: the leader writes the Secret moments after it starts.
    const delay = this.server ? (this.options.certificatePollMs ?? 30_000) : 1000;
    this.timer = setTimeout(() => {
      void this.refreshCertificate();
    }, delay);
  }

  private namespaceApps(namespace: string): AppObject[] {
    return this.apps.list(namespace).flatMap((o) => asAppObject(o) ?? []);
  }

  private decide(review: PodReview): Decision {
    return decide(review.pod, review.namespace, this.excluded, (namespace, app) =>
      appView(asAppObject(this.apps.get(namespace, app)), () => this.namespaceApps(namespace)),
    );
  }

  /** The refusal is the user's answer from kubectl; the log and the metric are the platform's. */
  private reportApp(review: AppReview, refusal: string | undefined, seconds: number): void {
    const { logger, metrics } = this.options;
    metrics.webhookReviewDuration.observe(seconds);
    metrics.webhookReviews.inc({
      outcome: refusal ? "reject" : "allow",
      reason: refusal ? "OverCeiling" : "WithinCeilings",
    });
    if (refusal)
      logger.info(
        { app: `${review.namespace}/${review.app.metadata.name}`, reason: refusal },
        "App refused",
      );
  }

  private report(review: PodReview, decision: Decision, seconds: number): void {
    const { logger, metrics } = this.options;
    metrics.webhookReviewDuration.observe(seconds);
    metrics.webhookReviews.inc({
      outcome: decision.action,
      reason: decision.action === "inject" ? "Injected" : decision.code,
    });
    if (decision.action === "inject") {
      logger.debug({ pod: review.describe, secret: decision.target.secretName }, "pod injected");
      return;
    }
    const refused = decision.action === "reject";
    logger.info(
      { pod: review.describe, code: decision.code, reason: decision.reason },
      refused ? "pod refused" : "pod not injected",
    );
    const owner = review.pod.metadata?.ownerReferences as
      | { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[]
      | undefined;
    const controller = owner?.find((o) => o.controller) ?? owner?.[0];
    // Pods refused at creation leave no Pod to attach an Event to, and a skipped one has no
    // name yet; their owner is where the user looks (kubectl describe replicaset).
    if (!controller || review.dryRun) return;
    this.events
      .record(
        {
          apiVersion: controller.apiVersion,
          kind: controller.kind,
          name: controller.name,
          namespace: review.namespace,
          uid: controller.uid,
        },
        { type: refused ? "Warning" : "Normal", reason: decision.code, message: decision.reason },
      )
      .catch((error: unknown) => {
        logger.warn({ err: error }, "could not record the webhook's decision as an Event");
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.server?.close();
    await this.apps.stop();
  }
}
