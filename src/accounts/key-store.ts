/**
 * Where seeds live. The operator's identity and every account's keys are kept in one store
 * (Kubernetes Secrets in the operator's namespace, see kubernetes-secret-store.ts); nothing
 * else ever holds a seed.
 */
import { sameSecretData } from "../kube/read-secret.ts";
import type { StoredAccount } from "./app-account.ts";
import {
  generateOperatorSeeds,
  type OperatorEntry,
  type OperatorKeyState,
  type OperatorSeeds,
} from "./identities.ts";
import type { Activation, Withdrawal } from "./sharing.ts";
import type { AccountSpec } from "./spec.ts";

export interface SecretStore {
  /** The entry's data, or undefined when there is none. */
  get(name: string): Promise<Record<string, string> | undefined>;
  /** Creates the entry; resolves false, writing nothing, if it already exists. */
  create(name: string, data: Record<string, string>): Promise<boolean>;
  /** Creates or replaces the entry. */
  put(name: string, data: Record<string, string>): Promise<void>;
  /** The entry's data and the version to replace it by, or undefined when there is none. */
  read(name: string): Promise<VersionedEntry | undefined>;
  /**
   * Creates the entry (no `version`) or replaces the version read; the new version, or
   * undefined, writing nothing, when the entry exists (create) or changed since (replace).
   */
  write(name: string, data: Record<string, string>, version?: string): Promise<string | undefined>;
  /**
   * Removes the entry, only as of `version` when given; absent is fine. False when it changed
   * since that version.
   */
  delete(name: string, version?: string): Promise<boolean>;
  /** Names of every entry. */
  list(): Promise<string[]>;
  /** Every entry with its data, read a page at a time. */
  entries(): AsyncIterable<StoreEntry>;
}

export interface StoreEntry {
  name: string;
  data: Record<string, string>;
}

export interface VersionedEntry {
  data: Record<string, string>;
  version: string;
}

export class KeyStoreError extends Error {
  override name = "KeyStoreError";
}

export const OPERATOR_ENTRY = "nats-tenancy-operator";
/** In an App's entry: when its accounts were restored from a backup (ms since the epoch). */
export const RESTORED_FIELD = "restoredAt";
/** One entry per account: how keys were kept before an App's accounts shared one entry. */
const ACCOUNT_PREFIX = "nats-account.";
const APP_PREFIX = "nats-app.";

type AccountRef = Pick<AccountSpec, "namespace" | "app" | "environment">;
type AppRef = Pick<AccountSpec, "namespace" | "app">;

/**
 * `nats-app.<namespace>.<app>`: every environment's keys of an App, under `<environment>.<key>`,
 * so an App's accounts are stored (and deleted) with one write. Dots cannot occur in DNS labels,
 * so two different (namespace, app) never share an entry, whatever their dashes.
 */
export function appEntryName(ref: AppRef): string {
  return `${APP_PREFIX}${ref.namespace}.${ref.app}`;
}

/** `nats-account.<namespace>.<app>.<environment>`: an account's own entry, read and migrated. */
export function accountEntryName(ref: AccountRef): string {
  return `${ACCOUNT_PREFIX}${ref.namespace}.${ref.app}.${ref.environment}`;
}

/**
 * The App an entry of account keys belongs to, with the environment for an account's own entry;
 * undefined for other entries.
 */
export function parseAccountEntryName(
  name: string,
): (AppRef & { environment?: string }) | undefined {
  const [prefix, size] = name.startsWith(ACCOUNT_PREFIX)
    ? [ACCOUNT_PREFIX, 3]
    : name.startsWith(APP_PREFIX)
      ? [APP_PREFIX, 2]
      : ["", 0];
  const parts = name.slice(prefix.length).split(".");
  if (size === 0 || parts.length !== size || parts.some((p) => p === "")) return undefined;
  const [namespace = "", app = "", environment] = parts;
  return { namespace, app, ...(environment ? { environment } : {}) };
}

/** `<environment>.<key>` in an App's entry, split; undefined for a key of another shape. */
function splitKey(key: string): [environment: string, field: string] | undefined {
  const dot = key.indexOf(".");
  return dot > 0 ? [key.slice(0, dot), key.slice(dot + 1)] : undefined;
}

/** One account's fields in an entry, complete or not. */
export interface EntryAccount extends AccountRef {
  data: Record<string, string>;
}

/** The accounts an entry holds: one for an account's own entry, each environment's for an App's. */
export function entryAccounts(name: string, data: Record<string, string>): EntryAccount[] {
  const entry = parseAccountEntryName(name);
  if (!entry) return [];
  const { namespace, app, environment } = entry;
  if (environment) return [{ namespace, app, environment, data }];
  const byEnvironment = new Map<string, Record<string, string>>();
  for (const [key, value] of Object.entries(data)) {
    const [env, field] = splitKey(key) ?? [];
    if (env === undefined || field === undefined) continue;
    byEnvironment.set(env, { ...byEnvironment.get(env), [field]: value });
  }
  return [...byEnvironment].map(([env, fields]) => ({
    namespace,
    app,
    environment: env,
    data: fields,
  }));
}

const OPERATOR_KEYS: (keyof OperatorSeeds)[] = [
  "operatorSeed",
  "operatorSigningSeed",
  "systemAccountSeed",
  "systemUserSeed",
];
const ACCOUNT_KEYS = ["accountSeed", "signingSeed", "userSeed", "accountJwt", "userJwt"] as const;

/** An account as entry fields: every key of ACCOUNT_KEYS, and the rotation fields it has. */
export function accountFields(account: StoredAccount): Record<string, string> {
  const fields: Record<string, string> = Object.fromEntries(
    ACCOUNT_KEYS.map((k) => [k, account[k]]),
  );
  if (account.rotatedFor !== undefined) fields.rotatedFor = account.rotatedFor;
  if (account.signingRotatedFor !== undefined) fields.signingRotatedFor = account.signingRotatedFor;
  if (account.signingSince !== undefined) fields.signingSince = String(account.signingSince);
  if (account.retiring) {
    fields.retiringUser = account.retiring.user;
    fields.retiringSince = String(account.retiring.since);
    if (account.retiring.expires !== undefined)
      fields.retiringExpires = String(account.retiring.expires);
    if (account.retiring.signingKey !== undefined)
      fields.retiringSigningKey = account.retiring.signingKey;
  }
  if (account.activations) fields.activations = JSON.stringify(account.activations);
  if (account.withdrawn) fields.withdrawn = JSON.stringify(account.withdrawn);
  return fields;
}

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
): Promise<OperatorEntry> {
  const existing = await store.get(OPERATOR_ENTRY);
  if (existing) return operatorEntry(existing);
  await beforeCreate?.();
  const fresh = generateOperatorSeeds();
  if (await store.create(OPERATOR_ENTRY, { ...fresh })) return fresh;
  const winner = await store.get(OPERATOR_ENTRY);
  if (!winner)
    throw new KeyStoreError(`${OPERATOR_ENTRY} was created concurrently and then vanished`);
  return operatorEntry(winner);
}

/** The keys of a signing-key rotation under way, each in the operator entry only when set. */
const OPERATOR_ROTATION_KEYS = [
  "nextSigningSeed",
  "retiringSigningKey",
  "droppedSigningKey",
] as const satisfies (keyof OperatorKeyState)[];

function operatorEntry(data: Record<string, string>): OperatorEntry {
  const entry: OperatorEntry = pick(OPERATOR_ENTRY, data, OPERATOR_KEYS);
  for (const field of OPERATOR_ROTATION_KEYS) if (data[field]) entry[field] = data[field];
  if (data.signingRotatedFor !== undefined) entry.signingRotatedFor = data.signingRotatedFor;
  const signingSince = optionalInteger(OPERATOR_ENTRY, data, "signingSince");
  if (signingSince !== undefined) entry.signingSince = signingSince;
  return entry;
}

/**
 * Replaces the operator entry `expected` was read as with `next`, unless it changed since
 * (another writer: KeyStoreError, and the next look reads it again).
 */
export async function saveOperatorKeys(
  store: SecretStore,
  expected: OperatorEntry,
  next: OperatorEntry,
): Promise<void> {
  const read = await store.read(OPERATOR_ENTRY);
  if (!read || !sameSecretData(operatorFields(operatorEntry(read.data)), operatorFields(expected)))
    throw new KeyStoreError(`${OPERATOR_ENTRY} changed meanwhile; the next look reads it again`);
  if ((await store.write(OPERATOR_ENTRY, operatorFields(next), read.version)) === undefined)
    throw new KeyStoreError(`${OPERATOR_ENTRY} changed meanwhile; the next look reads it again`);
}

function operatorFields(entry: OperatorEntry): Record<string, string> {
  const fields: Record<string, string> = Object.fromEntries(
    OPERATOR_KEYS.map((k) => [k, entry[k]]),
  );
  for (const field of OPERATOR_ROTATION_KEYS) {
    const value = entry[field];
    if (value) fields[field] = value;
  }
  if (entry.signingRotatedFor !== undefined) fields.signingRotatedFor = entry.signingRotatedFor;
  if (entry.signingSince !== undefined) fields.signingSince = String(entry.signingSince);
  return fields;
}

function optionalInteger(
  name: string,
  data: Record<string, string>,
  field: string,
): number | undefined {
  const text = data[field];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new KeyStoreError(`${name} has an invalid ${field}`);
  return value;
}

/** A field holding a JSON list of objects with these fields of these types. */
function listOf<T>(
  name: string,
  field: string,
  text: string,
  shape: Record<string, "string" | "number">,
): T[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const valid =
    Array.isArray(parsed) &&
    parsed.every(
      (item: unknown) =>
        typeof item === "object" &&
        item !== null &&
        Object.entries(shape).every(
          ([key, type]) => typeof (item as Record<string, unknown>)[key] === type,
        ),
    );
  if (!valid) throw new KeyStoreError(`${name} has invalid ${field}`);
  return parsed as T[];
}

/** The account an entry holds; throws KeyStoreError when it is incomplete. */
export function storedAccount(name: string, data: Record<string, string>): StoredAccount {
  const account: StoredAccount = pick(name, data, [...ACCOUNT_KEYS]);
  const { rotatedFor, signingRotatedFor, retiringUser, retiringSigningKey } = data;
  if (rotatedFor !== undefined) account.rotatedFor = rotatedFor;
  if (signingRotatedFor !== undefined) account.signingRotatedFor = signingRotatedFor;
  const signingSince = optionalInteger(name, data, "signingSince");
  if (signingSince !== undefined) account.signingSince = signingSince;
  if (data.activations !== undefined)
    account.activations = listOf<Activation>(name, "activations", data.activations, {
      subject: "string",
      account: "string",
      token: "string",
    });
  if (data.withdrawn !== undefined)
    account.withdrawn = listOf<Withdrawal>(name, "withdrawn", data.withdrawn, {
      subject: "string",
      account: "string",
      at: "number",
    });
  if (retiringUser !== undefined) {
    const since = optionalInteger(name, data, "retiringSince");
    if (since === undefined)
      throw new KeyStoreError(`${name} has retiringUser without retiringSince`);
    const expires = optionalInteger(name, data, "retiringExpires");
    account.retiring = {
      user: retiringUser,
      since,
      ...(expires !== undefined ? { expires } : {}),
      ...(retiringSigningKey !== undefined ? { signingKey: retiringSigningKey } : {}),
    };
  }
  return account;
}

/** An App's stored accounts, read together so that they are written together. */
export interface AppKeys extends AppRef {
  /** Every environment's account that is complete. */
  accounts: Map<string, StoredAccount>;
  /** Environments whose keys are incomplete: reported, never replaced automatically. */
  damaged: Map<string, KeyStoreError>;
  /** The App's entry as read; undefined when it has none. */
  entry: VersionedEntry | undefined;
  /** Complete accounts still in an entry of their own: moved into the App's on its next write. */
  separate: Set<string>;
}

export function noKeys(ref: AppRef): AppKeys {
  return {
    namespace: ref.namespace,
    app: ref.app,
    accounts: new Map(),
    damaged: new Map(),
    entry: undefined,
    separate: new Set(),
  };
}

function admit(keys: AppKeys, account: EntryAccount, name: string, separate: boolean): void {
  try {
    keys.accounts.set(account.environment, storedAccount(name, account.data));
    if (separate) keys.separate.add(account.environment);
  } catch (error) {
    if (!(error instanceof KeyStoreError)) throw error;
    keys.damaged.set(account.environment, error);
  }
}

/**
 * Reads an App's entry, and the own entry of each of `environments` it lacks (accounts stored
 * before an App's accounts shared one entry). With no environments, reads nothing.
 */
export async function loadAppKeys(
  store: SecretStore,
  ref: AppRef,
  environments: readonly string[],
): Promise<AppKeys> {
  const keys = noKeys(ref);
  if (environments.length === 0) return keys;
  const name = appEntryName(ref);
  keys.entry = await store.read(name);
  for (const account of entryAccounts(name, keys.entry?.data ?? {}))
    admit(keys, account, `${name} (${account.environment})`, false);
  for (const environment of environments) {
    if (keys.accounts.has(environment) || keys.damaged.has(environment)) continue;
    const own = accountEntryName({ ...ref, environment });
    const data = await store.get(own);
    if (data) admit(keys, { ...ref, environment, data }, own, true);
  }
  return keys;
}

/** When the App's keys were restored from a backup; undefined when they were not. */
export function restoredAt(keys: AppKeys): number | undefined {
  const value = Number(keys.entry?.data[RESTORED_FIELD]);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** One account: from the App's entry, else from its own. */
export async function loadAccount(
  store: SecretStore,
  ref: AccountRef,
): Promise<StoredAccount | undefined> {
  const keys = await loadAppKeys(store, ref, [ref.environment]);
  const damaged = keys.damaged.get(ref.environment);
  if (damaged) throw damaged;
  return keys.accounts.get(ref.environment);
}

/**
 * Stores `put` and forgets `drop` in the App's entry with one write: created, replaced if
 * unchanged since read, or deleted when nothing is left in it. Accounts still in entries of
 * their own move in with that write, and those entries go after it. Undefined, writing
 * nothing, when the App's entry changed since it was read (another writer: read again).
 */
export async function saveAppKeys(
  store: SecretStore,
  keys: AppKeys,
  change: { put?: ReadonlyMap<string, StoredAccount>; drop?: readonly string[] },
): Promise<AppKeys | undefined> {
  const put = change.put ?? new Map<string, StoredAccount>();
  const drop = new Set(change.drop);
  // An account put is written whole: fields it no longer has (an overlap that ended) go.
  const data = Object.fromEntries(
    Object.entries(keys.entry?.data ?? {}).filter(([key]) => {
      const environment = splitKey(key)?.[0] ?? "";
      return !drop.has(environment) && !put.has(environment);
    }),
  );
  const set = (environment: string, account: StoredAccount) => {
    for (const [key, value] of Object.entries(accountFields(account)))
      data[`${environment}.${key}`] = value;
  };
  for (const environment of keys.separate) {
    const account = keys.accounts.get(environment);
    if (account && !drop.has(environment)) set(environment, account);
  }
  for (const [environment, account] of put) set(environment, account);

  const name = appEntryName(keys);
  let entry: VersionedEntry | undefined;
  if (Object.keys(data).length > 0) {
    if (keys.entry && sameSecretData(keys.entry.data, data)) entry = keys.entry;
    else {
      const version = await store.write(name, data, keys.entry?.version);
      if (version === undefined) return undefined;
      entry = { data, version };
    }
  } else if (keys.entry && !(await store.delete(name, keys.entry.version))) return undefined;
  for (const environment of keys.separate)
    await store.delete(accountEntryName({ ...keys, environment }));

  const accounts = new Map(keys.accounts);
  for (const environment of drop) accounts.delete(environment);
  for (const [environment, account] of put) accounts.set(environment, account);
  return { ...keys, accounts, entry, separate: new Set() };
}
