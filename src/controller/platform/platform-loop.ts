/**
 * The platform the Apps stand on: the operator identity, the CA, the NATS servers' config
 * Secret and the webhook's certificate, bootstrapped when the term starts and renewed every
 * resync period; after each renewal the servers are asked to reload what changed.
 */
import type { KubeConfig } from "@kubernetes/client-node";
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

export interface PlatformLoopOptions {
  /** Built for the leader's term: its requests abort when the term ends. */
  kubeConfig: KubeConfig;
  store: SecretStore;
  settings: BootstrapSettings;
  resyncMs: number;
  /** Ask the servers to reload renewed certificates (the chart); absent: something else does. */
  serverReload?: ServerReloadSettings;
  expectedServers: number;
  /** The operator's system-user connection; throws while there is none. */
  connection: () => NatsConnection;
  natsConnected: Trigger;
  logger: Logger;
}

export class PlatformLoop implements Loop {
  /** After every renewal, whatever it changed (the NATS link compares credentials itself). */
  readonly renewed = new Trigger();
  /** When the CA bundle apps trust changed. */
  readonly caBundleChanged = new Trigger();
  private readonly options: PlatformLoopOptions;
  private readonly reloads: NatsReloads | undefined;
  private boot: Bootstrapped;
  private sources: Subscription[] = [];
  private renewing: Promise<void> | undefined;
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
  }

  ready(): Readiness {
    return this.blocked ? { ready: false, reason: this.blocked } : { ready: true };
  }

  current(): Bootstrapped {
    return this.boot;
  }

  start(signal: AbortSignal): Promise<void> {
    // A reload in flight when the term ends is no longer this replica's to finish.
    signal.addEventListener("abort", () => void this.reloads?.stop(), { once: true });
    this.sources = [
      // A server may have missed the last reload while the operator was away from it.
      this.options.natsConnected.on(() => {
        this.reloadServers();
      }),
      every(this.options.resyncMs, () => {
        this.renewing = this.renew();
        return this.renewing;
      }),
    ];
    // Connected before this loop listened: the servers may still serve an older certificate.
    this.reloadServers();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const source of this.sources) source.cancel();
    await this.renewing;
    await this.reloads?.stop();
  }

  private async renew(): Promise<void> {
    const { kubeConfig, store, settings, logger } = this.options;
    try {
      const boot = await bootstrap(kubeConfig, store, settings);
      for (const change of boot.changes) logger.info({ change }, "bootstrap");
      if (this.stopped) return;
      this.blocked = undefined;
      const bundleChanged = boot.caBundle !== this.boot.caBundle;
      this.boot = boot;
      this.renewed.fire();
      this.reloadServers();
      if (bundleChanged) this.caBundleChanged.fire();
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
  }
}
