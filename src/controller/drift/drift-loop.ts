/**
 * Keeps every server's resolver in line with the stored accounts: on each new NATS connection,
 * each server that (re)joins the cluster (it may have lost its store, or missed pushes and
 * deletes while away) and every resync period, it pushes and deletes only what differs. It
 * runs beside the reconciles, never holding them up (see accounts/drift.ts for why that is
 * safe).
 */
import type { Logger } from "pino";
import { repairDrift, type DesiredAccounts } from "../../accounts/drift.ts";
import type { OperatorIdentity } from "../../accounts/identities.ts";
import { parseJwt } from "../../accounts/jwt.ts";
import { loadAccount, type SecretStore } from "../../accounts/key-store.ts";
import type { ResolverClient } from "../../accounts/resolver-client.ts";
import type { Metrics } from "../../observability/metrics.ts";
import type { Loop } from "../../runtime/loop.ts";
import { every, type Subscription, type Trigger } from "../../runtime/triggers.ts";
import type { AccountIndex, IndexedAccount } from "../../accounts/account-index.ts";

export interface DriftLoopOptions {
  store: SecretStore;
  /** The stored accounts, as the App loop keeps them. */
  index: AccountIndex;
  identity: () => OperatorIdentity;
  nats: { isConnected(): boolean; resolver(): ResolverClient };
  natsConnected: Trigger;
  serverJoined: Trigger;
  resyncMs: number;
  logger: Logger;
  metrics: Metrics;
}

export class DriftLoop implements Loop {
  private readonly options: DriftLoopOptions;
  private sources: Subscription[] = [];
  private repairing: Promise<void> | undefined;
  /** Counts requests: one made while a repair ran may come after its list of the servers. */
  private requests = 0;
  private stopped = false;

  constructor(options: DriftLoopOptions) {
    this.options = options;
  }

  start(): Promise<void> {
    const repair = (): void => void this.repair();
    this.sources = [
      this.options.natsConnected.on(repair),
      this.options.serverJoined.on(repair),
      every(this.options.resyncMs, () => this.repair()),
    ];
    // Connected before this loop listened: the connection's repair is still due.
    if (this.options.nats.isConnected()) repair();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const source of this.sources) source.cancel();
    await this.repairing;
  }

  /** One repair at a time, and one more if asked meanwhile. */
  private async repair(): Promise<void> {
    if (this.stopped) return;
    this.requests++;
    if (this.repairing) return this.repairing;
    this.repairing = (async () => {
      let served = 0;
      while (served !== this.requests && !this.stopped) {
        served = this.requests;
        await this.repairNow().catch((error: unknown) => {
          this.options.logger.warn(
            { err: error },
            "drift repair failed; the next resync retries it",
          );
        });
      }
    })().finally(() => {
      this.repairing = undefined;
    });
    await this.repairing;
  }

  private async repairNow(): Promise<void> {
    const { nats, identity, logger, metrics } = this.options;
    if (this.stopped || !nats.isConnected()) return;
    const timer = metrics.driftRepairDuration.startTimer();
    const report = await repairDrift(nats.resolver(), this.desired(), identity()).finally(timer);
    // Each unexpected account also got a disabled copy before its delete.
    const pushed = report.missing.size + report.unexpected.size;
    if (pushed === 0) return;
    metrics.natsPushes.inc({ operation: "update" }, pushed);
    metrics.natsPushes.inc({ operation: "delete" }, report.unexpected.size);
    logger.info(
      {
        servers: report.servers,
        missing: [...report.missing.entries()].map(([account, servers]) => ({ account, servers })),
        unexpected: [...report.unexpected.keys()],
      },
      "repaired the servers' accounts",
    );
  }

  /**
   * The stored accounts, from the index: an account whose public key the reconciler has not
   * learnt yet (its App not reconciled since this term began) is read from the store once.
   */
  private desired(): DesiredAccounts {
    const { store, index } = this.options;
    const byKey = new Map<string, IndexedAccount>();
    return {
      keys: async () => {
        for (const entry of index.accounts()) {
          let account = entry.account;
          if (!account) {
            const stored = await loadAccount(store, entry);
            // Deleted since the snapshot: not desired.
            if (!stored) continue;
            account = parseJwt(stored.accountJwt).sub;
            index.learn(entry.namespace, entry.app, entry.environment, account);
          }
          byKey.set(account, entry);
        }
        return new Set(byKey.keys());
      },
      jwt: async (account) => {
        const entry = byKey.get(account);
        const stored = entry && (await loadAccount(store, entry));
        return stored && parseJwt(stored.accountJwt).sub === account
          ? stored.accountJwt
          : undefined;
      },
    };
  }
}
