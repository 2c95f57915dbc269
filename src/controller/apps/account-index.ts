/**
 * Which environments have keys in the store, per app: loaded once from the store when this
 * replica starts leading, then kept current by the reconciler, the only writer. Saves listing
 * every account Secret on every reconcile.
 */
import { parseAccountEntryName, type SecretStore } from "../../accounts/key-store.ts";

export function appKey(namespace: string, app: string): string {
  return `${namespace}/${app}`;
}

export class AccountIndex {
  private readonly byApp = new Map<string, Set<string>>();
  /** Read after every reconcile (the accounts metric): kept, not counted each time. */
  private total = 0;

  static async load(store: SecretStore): Promise<AccountIndex> {
    const index = new AccountIndex();
    for (const name of await store.list()) {
      const entry = parseAccountEntryName(name);
      if (entry) index.add(entry.namespace, entry.app, entry.environment);
    }
    return index;
  }

  add(namespace: string, app: string, environment: string): void {
    const key = appKey(namespace, app);
    const environments = this.byApp.get(key) ?? new Set<string>();
    if (environments.has(environment)) return;
    environments.add(environment);
    this.byApp.set(key, environments);
    this.total++;
  }

  remove(namespace: string, app: string, environment: string): void {
    const key = appKey(namespace, app);
    const environments = this.byApp.get(key);
    if (!environments?.delete(environment)) return;
    this.total--;
    if (environments.size === 0) this.byApp.delete(key);
  }

  environments(namespace: string, app: string): string[] {
    return [...(this.byApp.get(appKey(namespace, app)) ?? [])].sort();
  }

  /** Every app with stored accounts, as `namespace/app` keys. */
  apps(): string[] {
    return [...this.byApp.keys()];
  }

  get size(): number {
    return this.total;
  }
}
