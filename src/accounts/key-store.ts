/**
 * Where seeds live. The operator's identity and every account's keys are kept in one store
 * (Kubernetes Secrets in the operator's namespace, see kubernetes-secret-store.ts); nothing
 * else ever holds a seed.
 */
import type { StoredAccount } from "./app-account.ts";
import { generateOperatorSeeds, type OperatorSeeds } from "./identities.ts";
import type { AccountSpec } from "./spec.ts";

export interface SecretStore {
  /** The entry's data, or undefined when there is none. */
  get(name: string): Promise<Record<string, string> | undefined>;
  /** Creates the entry; resolves false, writing nothing, if it already exists. */
  create(name: string, data: Record<string, string>): Promise<boolean>;
  /** Creates or replaces the entry. */
  put(name: string, data: Record<string, string>): Promise<void>;
  /** Removes the entry; absent is fine. */
  delete(name: string): Promise<void>;
  /** Names of every entry. */
  list(): Promise<string[]>;
  /** Every entry with its data, read a page at a time. */
  entries(): AsyncIterable<StoreEntry>;
}

export interface StoreEntry {
  name: string;
  data: Record<string, string>;
}

export class KeyStoreError extends Error {
  override name = "KeyStoreError";
}

export const OPERATOR_ENTRY = "nats-tenancy-operator";
const ACCOUNT_PREFIX = "nats-account.";

/**
 * `nats-account.<namespace>.<app>.<environment>`: dots cannot occur in DNS labels, so two
 * different (namespace, app, environment) never share an entry, whatever their dashes.
 */
export function accountEntryName(
  spec: Pick<AccountSpec, "namespace" | "app" | "environment">,
): string {
  return `${ACCOUNT_PREFIX}${spec.namespace}.${spec.app}.${spec.environment}`;
}

/** The (namespace, app, environment) an entry name stands for; undefined for other entries. */
export function parseAccountEntryName(
  name: string,
): Pick<AccountSpec, "namespace" | "app" | "environment"> | undefined {
  if (!name.startsWith(ACCOUNT_PREFIX)) return undefined;
  const [namespace, app, environment, ...rest] = name.slice(ACCOUNT_PREFIX.length).split(".");
  if (!namespace || !app || !environment || rest.length > 0) return undefined;
  return { namespace, app, environment };
}

const OPERATOR_KEYS: (keyof OperatorSeeds)[] = [
  "operatorSeed",
  "operatorSigningSeed",
  "systemAccountSeed",
  "systemUserSeed",
];
const ACCOUNT_KEYS: (keyof StoredAccount)[] = [
  "accountSeed",
  "signingSeed",
  "userSeed",
  "accountJwt",
  "userJwt",
];

function pick<K extends string>(
  name: string,
  data: Record<string, string>,
  keys: K[],
): Record<K, string> {
  const missing = keys.filter((k) => typeof data[k] !== "string" || data[k] === "");
  if (missing.length > 0) {
    throw new KeyStoreError(
      `${name} is incomplete (missing ${missing.join(", ")}); it is never replaced automatically`,
    );
  }
  return Object.fromEntries(keys.map((k) => [k, data[k]])) as Record<K, string>;
}

/**
 * The operator's seeds, created on first start. Two replicas starting together both end with
 * the one that was created first: the loser of the create race reads the winner's back.
 * `beforeCreate` may refuse a creation by throwing: new seeds where an identity existed would
 * cut off every tenant.
 */
export async function ensureOperatorSeeds(
  store: SecretStore,
  beforeCreate?: () => Promise<void>,
): Promise<OperatorSeeds> {
  const existing = await store.get(OPERATOR_ENTRY);
  if (existing) return pick(OPERATOR_ENTRY, existing, OPERATOR_KEYS);
  await beforeCreate?.();
  const fresh = generateOperatorSeeds();
  if (await store.create(OPERATOR_ENTRY, { ...fresh })) return fresh;
  const winner = await store.get(OPERATOR_ENTRY);
  if (!winner)
    throw new KeyStoreError(`${OPERATOR_ENTRY} was created concurrently and then vanished`);
  return pick(OPERATOR_ENTRY, winner, OPERATOR_KEYS);
}

/** The account an entry holds; throws KeyStoreError when it is incomplete. */
export function storedAccount(name: string, data: Record<string, string>): StoredAccount {
  return pick(name, data, ACCOUNT_KEYS);
}

export async function loadAccount(
  store: SecretStore,
  spec: Pick<AccountSpec, "namespace" | "app" | "environment">,
): Promise<StoredAccount | undefined> {
  const name = accountEntryName(spec);
  const data = await store.get(name);
  return data ? storedAccount(name, data) : undefined;
}

export async function saveAccount(
  store: SecretStore,
  spec: Pick<AccountSpec, "namespace" | "app" | "environment">,
  account: StoredAccount,
): Promise<void> {
  await store.put(accountEntryName(spec), { ...account });
}

/** Stores a new account's keys; false, writing nothing, when the entry already exists. */
export async function createAccount(
  store: SecretStore,
  spec: Pick<AccountSpec, "namespace" | "app" | "environment">,
  account: StoredAccount,
): Promise<boolean> {
  return store.create(accountEntryName(spec), { ...account });
}

export async function forgetAccount(
  store: SecretStore,
  spec: Pick<AccountSpec, "namespace" | "app" | "environment">,
): Promise<void> {
  await store.delete(accountEntryName(spec));
}
