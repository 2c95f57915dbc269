/**
 * The leader's loops for one term, built in the order they need each other and wired here,
 * in one place: the platform bootstraps first (everything else needs its identity and CA),
 * the NATS link connects with its credentials, the App loop reconciles, the drift loop repairs
 * the servers between reconciles. Every API client is made from the term's signal.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Ceilings } from "../accounts/ceilings.ts";
import type { CredentialPolicy } from "../accounts/credential-policy.ts";
import { KubernetesSecretStore } from "../accounts/kubernetes-secret-store.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { ResolverClient } from "../accounts/resolver-client.ts";
import type { LeaderTerm } from "../runtime/leader-gated.ts";
import type { Loop } from "../runtime/loop.ts";
import { AccountIndex } from "../accounts/account-index.ts";
import { AppLoop } from "./apps/app-loop.ts";
import type { AppUrls } from "../contract/app-secret.ts";
import { DriftLoop } from "./drift/drift-loop.ts";
import { NatsLink } from "./nats-link.ts";
import { PlatformMissingError, bootstrap, type Bootstrapped } from "./platform/bootstrap.ts";
import type { BootstrapSettings } from "./platform/bootstrap.ts";
import type { ServerReloadSettings } from "./platform/nats-reloads.ts";
import { PlatformLoop } from "./platform/platform-loop.ts";
import { boundedAccess, type ClusterAccess } from "../kube/cluster-access.ts";

export interface ControllerSettings extends BootstrapSettings {
  /** Where the operator itself connects (any server; system requests reach them all). */
  natsUrls: string[];
  /** The URLs given to apps. */
  appUrls: AppUrls;
  /** Servers running a full resolver: a push counts once a majority of them acknowledged. */
  expectedServers: number;
  resyncMs: number;
  concurrency: number;
  /** The platform team's ceilings on what Apps may ask for. */
  ceilings: Ceilings;
  /** Rotation overlap and pods credentials' lifetime. */
  credentials: CredentialPolicy;
  /** Ask the servers to reload renewed certificates (the chart); absent: something else does. */
  serverReload?: ServerReloadSettings;
}

export interface LeaderLoopsOptions {
  cluster: ClusterAccess;
  settings: ControllerSettings;
  logger: Logger;
  metrics: Metrics;
}

export interface LeaderLoops {
  /** In start order. */
  loops: Loop[];
  apps: AppLoop;
}

export async function buildLeaderLoops(
  options: LeaderLoopsOptions,
  term: LeaderTerm,
): Promise<LeaderLoops> {
  const { settings, logger, metrics } = options;
  // Every API request and every account push or delete first checks the Lease is still held.
  const cluster = boundedAccess(options.cluster, {
    signal: term.signal,
    beforeEach: term.fence,
  });
  const fenced = (): ResolverClient => {
    term.fence();
    term.signal.throwIfAborted();
    return nats.resolver();
  };
  const store = new KubernetesSecretStore(cluster, settings.namespace);
  const boot = await bootstrapWhenRestorable(cluster, store, settings, term, logger);
  const index = await AccountIndex.load(store);
  metrics.accounts.set(index.size);

  const nats = new NatsLink({
    servers: settings.natsUrls,
    expectedServers: settings.expectedServers,
    creds: boot.artifacts.systemUserCreds,
    ca: boot.caBundle,
    logger,
  });
  const platform = new PlatformLoop(
    {
      cluster,
      store,
      settings,
      resyncMs: settings.resyncMs,
      ...(settings.serverReload
        ? {
            serverReload: settings.serverReload,
            // Under the chart: the servers run as its StatefulSet.
            statefulSet: {
              namespace: settings.natsNames.namespace,
              name: settings.natsNames.statefulSet,
            },
          }
        : {}),
      expectedServers: settings.expectedServers,
      connection: () => nats.resolver().connection,
      lookup: (account) => nats.resolver().lookup(account),
      natsConnected: nats.connected,
      logger,
    },
    boot,
  );
  // Renewed system-user credentials or CA: the link reconnects with them.
  platform.renewed.on(() => {
    const { artifacts, caBundle } = platform.current();
    nats.update(artifacts.systemUserCreds, caBundle);
  });
  const apps = new AppLoop({
    cluster,
    store,
    index,
    identity: () => platform.current().identity,
    caBundle: () => platform.current().caBundle,
    appInputsChanged: platform.appInputsChanged,
    servers: fenced,
    expectedServers: settings.expectedServers,
    ceilings: settings.ceilings,
    credentials: settings.credentials,
    natsConnected: nats.connected,
    serverJoined: nats.serverJoined,
    appUrls: settings.appUrls,
    resyncMs: settings.resyncMs,
    concurrency: settings.concurrency,
    logger,
    metrics,
  });
  const drift = new DriftLoop({
    store,
    index,
    identity: () => platform.current().identity,
    nats: { isConnected: () => nats.isConnected(), resolver: fenced },
    natsConnected: nats.connected,
    serverJoined: nats.serverJoined,
    resyncMs: settings.resyncMs,
    logger,
    metrics,
  });
  // The link starts first and stops last: reconciles draining at the end still push.
  return { loops: [nats, platform, apps, drift], apps };
}

/** How often a term blocked on a missing identity or CA looks again. */
const RESTORE_CHECK_MS = 5000;

/**
 * The term's first bootstrap. With the identity or CA missing over an installation it makes
 * nothing and waits, not ready, for the Secret to be restored; the tenants keep working on
 * what the servers already trust.
 */
async function bootstrapWhenRestorable(
  cluster: ClusterAccess,
  store: KubernetesSecretStore,
  settings: ControllerSettings,
  term: LeaderTerm,
  logger: Logger,
): Promise<Bootstrapped> {
  for (;;) {
    try {
      const boot = await bootstrap(cluster, store, settings);
      for (const change of boot.changes) logger.info({ change }, "bootstrap");
      term.report(undefined);
      return boot;
    } catch (error) {
      if (!(error instanceof PlatformMissingError)) throw error;
      term.report(error.message);
      logger.error({ err: error }, "waiting for the Secret to be restored");
      await sleep(RESTORE_CHECK_MS, undefined, { signal: term.signal });
    }
  }
}
