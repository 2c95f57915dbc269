/**
 * Keeps every server's resolver in line with the stored accounts: on each new NATS connection
 * (a server may have lost its store, or missed updates while away) and every resync period,
 * pushes only what differs.
 */
import type { Logger } from "pino";
import { repairDrift } from "../../accounts/drift.ts";
import type { OperatorIdentity } from "../../accounts/identities.ts";
import { parseJwt } from "../../accounts/jwt.ts";
import { loadAccount, type SecretStore } from "../../accounts/key-store.ts";
import type { ResolverClient } from "../../accounts/resolver-client.ts";
import type { Metrics } from "../../observability/metrics.ts";
import type { Loop } from "../../runtime/loop.ts";
import { every, type Subscription, type Trigger } from "../../runtime/triggers.ts";

/** The stored accounts, by app: what the App loop keeps. */
export interface StoredAccounts {
  apps(): string[];
  environments(namespace: string, app: string): string[];
}

export interface DriftLoopOptions {
  store: SecretStore;
  accounts: StoredAccounts;
  identity: () => OperatorIdentity;
  nats: { isConnected(): boolean; resolver(): ResolverClient };
  natsConnected: Trigger;
  /**
   * Runs the repair with no reconcile in flight: one minting or deleting an account between the
   * stored accounts being read and the servers being listed would be mistaken for drift and undone.
   */
  exclusive: (section: () => Promise<void>) => Promise<void>;
  resyncMs: number;
  logger: Logger;
  metrics: Metrics;
}

export class DriftLoop implements Loop {
  private readonly options: DriftLoopOptions;
  private sources: Subscription[] = [];
  private repairing: Promise<void> | undefined;
  private stopped = false;

  constructor(options: DriftLoopOptions) {
    this.options = options;
  }

  start(): Promise<void> {
    this.sources = [
      this.options.natsConnected.on(() => void this.repair()),
      every(this.options.resyncMs, () => this.repair()),
    ];
    // Connected before this loop listened: the connection's repair is still due.
    if (this.options.nats.isConnected()) void this.repair();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const source of this.sources) source.cancel();
    await this.repairing;
  }

  /** One repair at a time: a connect and a resync can ask at once. */
  private async repair(): Promise<void> {
    if (this.stopped) return;
    this.repairing ??= this.options
      .exclusive(() => this.repairNow())
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error }, "drift repair failed; the next resync retries it");
      })
      .finally(() => {
        this.repairing = undefined;
      });
    await this.repairing;
  }

  private async repairNow(): Promise<void> {
    const { store, accounts, nats, identity, logger, metrics } = this.options;
    if (this.stopped || !nats.isConnected()) return;
    const desired = new Map<string, string>();
    for (const key of accounts.apps()) {
      const [namespace = "", app = ""] = key.split("/");
      for (const environment of accounts.environments(namespace, app)) {
        const stored = await loadAccount(store, { namespace, app, environment });
        if (!stored) continue;
        desired.set(parseJwt(stored.accountJwt).sub, stored.accountJwt);
      }
    }
    const report = await repairDrift(nats.resolver(), desired, identity());
    // Each unexpected account also got a disabled copy before its delete.
    const pushed = report.missing.size + report.stale.length + report.unexpected.size;
    if (pushed === 0) return;
    metrics.natsPushes.inc({ operation: "update" }, pushed);
    metrics.natsPushes.inc({ operation: "delete" }, report.unexpected.size);
    logger.info(
      {
        missing: [...report.missing.entries()].map(([account, servers]) => ({ account, servers })),
        stale: report.stale,
        unexpected: [...report.unexpected.keys()],
      },
      "repaired the servers' accounts",
    );
  }
}
