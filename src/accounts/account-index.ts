/**
 * Which environments have keys in the store, per app, and each one's account public key once
 * it is known: loaded once from the store when this replica starts leading, then kept current
 * by the reconciler, the only writer, which learns each key as it loads or mints the account.
 * Saves listing every account Secret on every reconcile, and lets drift repair compare the
 * servers' lists with the stored accounts without reading them all.
 */
import { parseJwt } from "./jwt.ts";
import { entryAccounts, storedAccount, type SecretStore } from "./key-store.ts";

export function appKey(namespace: string, app: string): string {
  return `${namespace}/${app}`;
}

export interface IndexedAccount {
  namespace: string;
  app: string;
  environment: string;
  /** The account's public key; undefined until the reconciler (or drift repair) read it. */
  account: string | undefined;
}

export class AccountIndex {
  /** app key -> environment -> account public key, if known. */
  private readonly byApp = new Map<string, Map<string, string | undefined>>();
  /** Read after every reconcile (the accounts metric): kept, not counted each time. */
  private total = 0;

  /**
   * Reads every entry once: their public keys come with them, so drift repair after a restart
   * reads nothing more, whatever the reconciler has not got to yet.
   */
  static async load(store: SecretStore): Promise<AccountIndex> {
    const index = new AccountIndex();
    for await (const { name, data } of store.entries())
      for (const { namespace, app, environment, data: fields } of entryAccounts(name, data))
        index.add(namespace, app, environment, publicKeyOf(name, fields));
    return index;
  }

  /** Records an environment's stored keys, and its account public key when given. */
  add(namespace: string, app: string, environment: string, account?: string): void {
    const key = appKey(namespace, app);
    const environments = this.byApp.get(key) ?? new Map<string, string | undefined>();
    if (!environments.has(environment)) this.total++;
    environments.set(environment, account ?? environments.get(environment));
    this.byApp.set(key, environments);
  }

  /** Records an account's public key, only if its environment is still stored. */
  learn(namespace: string, app: string, environment: string, account: string): void {
    const environments = this.byApp.get(appKey(namespace, app));
    if (environments?.has(environment)) environments.set(environment, account);
  }

  remove(namespace: string, app: string, environment: string): void {
    const key = appKey(namespace, app);
    const environments = this.byApp.get(key);
    if (!environments?.delete(environment)) return;
    this.total--;
    if (environments.size === 0) this.byApp.delete(key);
  }

  /** The stored account's public key, if known. */
  account(namespace: string, app: string, environment: string): string | undefined {
    return this.byApp.get(appKey(namespace, app))?.get(environment);
  }

  environments(namespace: string, app: string): string[] {
    return [...(this.byApp.get(appKey(namespace, app))?.keys() ?? [])].sort();
  }

  /** Every app with stored accounts, as `namespace/app` keys. */
  apps(): string[] {
    return [...this.byApp.keys()];
  }

  /** A snapshot of every stored account. */
  accounts(): IndexedAccount[] {
    const result: IndexedAccount[] = [];
    for (const [key, environments] of this.byApp) {
      const [namespace = "", app = ""] = key.split("/");
      for (const [environment, account] of environments)
        result.push({ namespace, app, environment, account });
    }
    return result;
  }

  get size(): number {
    return this.total;
  }
}

/** An incomplete or damaged entry: unknown, read again (and reported) where it is used. */
function publicKeyOf(name: string, data: Record<string, string>): string | undefined {
  try {
    return parseJwt(storedAccount(name, data).accountJwt).sub;
  } catch {
    return undefined;
  }
}
