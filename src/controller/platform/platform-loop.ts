/**
 * The platform the Apps stand on: the operator identity, the CA, the NATS servers' config
 * Secret and the webhook's certificate, bootstrapped when the term starts and renewed every
 * resync period; after each renewal the servers are asked to reload what changed, or to
 * restart when their operator JWT changed. While the operator's signing key rotates, each step
 * is taken as soon as the servers or the accounts are ready for it.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import type { SecretStore } from "../../accounts/key-store.ts";
import type { Loop, Readiness } from "../../runtime/loop.ts";
import { every, Trigger, type Subscription } from "../../runtime/triggers.ts";
import {
  PlatformMissingError,
  bootstrap,
  type BootstrapSettings,
  type Bootstrapped,
} from "./bootstrap.ts";
import { NatsReloads, type ServerReloadSettings } from "./nats-reloads.ts";
import { NatsRestarts } from "./nats-restarts.ts";
import type { ClusterAccess } from "../../kube/cluster-access.ts";

/** How often a rotation of the operator's signing key looks whether its old key is unused. */
export const OPERATOR_KEY_RECHECK_MS = 15_000;

export interface PlatformLoopOptions {
  /** Built for the leader's term: its requests abort when the term ends. */
  cluster: ClusterAccess;
  store: SecretStore;
  settings: BootstrapSettings;
  resyncMs: number;
  /** Ask the servers to reload renewed certificates (the chart); absent: something else does. */
  serverReload?: ServerReloadSettings;
  /** The servers' StatefulSet, rolled when their operator JWT changes (the chart). */
  statefulSet?: { namespace: string; name: string };
  expectedServers: number;
  /** The operator's system-user connection; throws while there is none. */
  connection: () => NatsConnection;
  /** Each server's copy of an account; throws while there is no connection. */
  lookup: (account: string) => Promise<string[]>;
  natsConnected: Trigger;
  logger: Logger;
}

export class PlatformLoop implements Loop {
  /** After every renewal, whatever it changed (the NATS link compares credentials itself). */
  readonly renewed = new Trigger();
  /**
   * When something every App's accounts or Secrets are made from changed: the CA bundle apps
   * trust, or the operator key that signs accounts.
   */
  readonly appInputsChanged = new Trigger();
  private readonly options: PlatformLoopOptions;
  private readonly reloads: NatsReloads | undefined;
  private readonly restarts: NatsRestarts;
  private boot: Bootstrapped;
  private sources: Subscription[] = [];
  private renewing: Promise<void> | undefined;
  private renewAgain = false;
  private recheck: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Why the last renewal could not be made, when only a person can fix it. */
  private blocked: string | undefined;

  /** `boot`: the term's first bootstrap, which the other loops were built from. */
  constructor(options: PlatformLoopOptions, boot: Bootstrapped) {
    this.options = options;
    this.boot = boot;
    this.reloads = options.serverReload
      ? new NatsReloads({
          settings: options.serverReload,
          expectedServers: options.expectedServers,
          connection: options.connection,
          logger: options.logger,
        })
      : undefined;
    this.restarts = new NatsRestarts({
      cluster: options.cluster,
      ...(options.statefulSet ? { statefulSet: options.statefulSet } : {}),
      expectedServers: options.expectedServers,
      connection: options.connection,
      logger: options.logger,
    });
  }

  ready(): Readiness {
    return this.blocked ? { ready: false, reason: this.blocked } : { ready: true };
  }

  current(): Bootstrapped {
    return this.boot;
  }

  start(signal: AbortSignal): Promise<void> {
    // A reload or restart in flight when the term ends is no longer this replica's to finish.
    signal.addEventListener(
      "abort",
      () => {
        void this.reloads?.stop();
        void this.restarts.stop();
      },
      { once: true },
    );
    this.sources = [
      // A server may have missed the last reload while the operator was away from it.
      this.options.natsConnected.on(() => {
        this.reloadServers();
      }),
      // Every server runs a new operator JWT: a rotation of its signing key takes its next step.
      this.restarts.current.on(() => {
        const rotation = this.boot.operatorKeyRotation;
        if (rotation === "introduced" || rotation === "dropping") void this.renewNow();
      }),
      every(this.options.resyncMs, () => this.renewNow()),
    ];
    // Connected before this loop listened: the servers may still serve an older certificate.
    this.reloadServers();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const source of this.sources) source.cancel();
    clearTimeout(this.recheck);
    await this.renewing;
    await this.reloads?.stop();
    await this.restarts.stop();
  }

  /** One renewal at a time: asked for during one, another follows it. */
  private renewNow(): Promise<void> {
    if (this.renewing) {
      this.renewAgain = true;
      return this.renewing;
    }
    this.renewing = this.renew().finally(() => {
      this.renewing = undefined;
      if (this.renewAgain && !this.stopped) {
        this.renewAgain = false;
        void this.renewNow();
      }
    });
    return this.renewing;
  }

  private async renew(): Promise<void> {
    const { cluster, store, settings, logger } = this.options;
    try {
      const boot = await bootstrap(cluster, store, settings, Date.now(), {
        trustedByAll: this.restarts.trustedByAll(),
        accounts: { lookup: this.options.lookup, expected: this.options.expectedServers },
      });
      for (const change of boot.changes) logger.info({ change }, "bootstrap");
      if (this.stopped) return;
      this.blocked = undefined;
      const appInputsChanged =
        boot.caBundle !== this.boot.caBundle ||
        boot.identity.signing.publicKey !== this.boot.identity.signing.publicKey;
      this.boot = boot;
      this.renewed.fire();
      this.reloadServers();
      if (appInputsChanged) this.appInputsChanged.fire();
      // The old key leaves once every account is signed anew: look again soon.
      clearTimeout(this.recheck);
      if (boot.operatorKeyRotation === "retiring")
        this.recheck = setTimeout(() => void this.renewNow(), OPERATOR_KEY_RECHECK_MS);
    } catch (error) {
      if (error instanceof PlatformMissingError) {
        // Nothing is re-minted: the identity and CA in memory keep serving the tenants.
        this.blocked = error.message;
        logger.error({ err: error }, "renewal refused; waiting for the Secret to be restored");
        return;
      }
      logger.warn({ err: error }, "renewal failed; the next resync retries");
    }
  }

  private reloadServers(): void {
    this.reloads?.request({ certificatePem: this.boot.natsServerCertificatePem });
    this.restarts.request(this.boot.artifacts.operatorJwt);
  }
}
