/**
 * A backup of every key the operator holds (its identity, the CA, every account), sealed with
 * age (a passphrase, or recipients' public keys) beside a manifest in clear that names what is
 * inside by public keys only. The manifest is sealed too: a restore refuses a file whose clear
 * manifest was changed, one it cannot open, and, unless told to, an operator namespace that
 * already holds keys; it writes nothing before all of that is checked.
 */
import { isDeepStrictEqual } from "node:util";
import { Decrypter, Encrypter, armor } from "age-encryption";
import { CA_ENTRY } from "../ca/ca-store.ts";
import { parseJwt } from "../accounts/jwt.ts";
import {
  entryAccounts,
  OPERATOR_ENTRY,
  parseAccountEntryName,
  RESTORED_FIELD,
  type SecretStore,
  type StoreEntry,
} from "../accounts/key-store.ts";
import { NKey } from "../accounts/nkey.ts";

const FORMAT = "nats-tenancy-key-backup/1";

export class BackupError extends Error {
  override name = "BackupError";
}

/** What one entry holds, by public keys. */
export interface ManifestEntry {
  name: string;
  kind: "operator" | "ca" | "accounts" | "other";
  /** operator: the operator's and the system account's; accounts: one per environment. */
  publicKeys: string[];
  /** accounts: namespace/app/environment of each, in the order of publicKeys. */
  accounts?: string[];
}

export interface Manifest {
  created: string;
  entries: ManifestEntry[];
}

export interface BackupFile {
  format: typeof FORMAT;
  manifest: Manifest;
  /** age, ASCII-armored: { manifest, entries } as JSON. */
  sealed: string;
}

/** How the backup is sealed, or opened. */
export type Key = { passphrase: string } | { recipients: string[] } | { identity: string };

function describeEntry(entry: StoreEntry): ManifestEntry {
  const { name, data } = entry;
  if (name === OPERATOR_ENTRY) {
    const keys = [
      data.operatorSeed ? NKey.fromSeed(data.operatorSeed, "operator").publicKey : "",
      data.systemAccountSeed ? NKey.fromSeed(data.systemAccountSeed, "account").publicKey : "",
    ];
    return { name, kind: "operator", publicKeys: keys };
  }
  if (name === CA_ENTRY) return { name, kind: "ca", publicKeys: [] };
  const accounts = entryAccounts(name, data);
  if (accounts.length === 0) return { name, kind: "other", publicKeys: [] };
  return {
    name,
    kind: "accounts",
    publicKeys: accounts.map((a) => (a.data.accountJwt ? parseJwt(a.data.accountJwt).sub : "")),
    accounts: accounts.map((a) => `${a.namespace}/${a.app}/${a.environment}`),
  };
}

async function readAll(store: SecretStore): Promise<StoreEntry[]> {
  const entries: StoreEntry[] = [];
  for await (const entry of store.entries()) entries.push(entry);
  return entries.sort((a, b) => a.name.localeCompare(b.name));
}

/** Every entry of the store, sealed with `key` (a passphrase or recipients). */
export async function createBackup(
  store: SecretStore,
  key: Exclude<Key, { identity: string }>,
  now = new Date(),
): Promise<BackupFile> {
  const entries = await readAll(store);
  if (!entries.some((e) => e.name === OPERATOR_ENTRY))
    throw new BackupError(`no ${OPERATOR_ENTRY} here: this is not the operator's namespace`);
  const manifest: Manifest = {
    created: now.toISOString(),
    entries: entries.map(describeEntry),
  };
  const encrypter = new Encrypter();
  if ("passphrase" in key) encrypter.setPassphrase(key.passphrase);
  else for (const recipient of key.recipients) encrypter.addRecipient(recipient);
  const sealed = armor.encode(await encrypter.encrypt(JSON.stringify({ manifest, entries })));
  return { format: FORMAT, manifest, sealed };
}

/** Opens a backup's text: its entries, once every check passed. */
export async function openBackup(
  text: string,
  key: Exclude<Key, { recipients: string[] }>,
): Promise<{ manifest: Manifest; entries: StoreEntry[] }> {
  let file: Partial<BackupFile>;
  try {
    file = JSON.parse(text) as Partial<BackupFile>;
  } catch {
    throw new BackupError("not a nats-tenancy key backup (not JSON)");
  }
  if (file.format !== FORMAT || typeof file.sealed !== "string")
    throw new BackupError(`not a nats-tenancy key backup (format ${String(file.format)})`);
  const decrypter = new Decrypter();
  if ("passphrase" in key) decrypter.addPassphrase(key.passphrase);
  else decrypter.addIdentity(key.identity);
  let inner: { manifest: Manifest; entries: StoreEntry[] };
  try {
    inner = JSON.parse(await decrypter.decrypt(armor.decode(file.sealed), "text")) as typeof inner;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new BackupError(
      /no identity matched/.test(reason)
        ? "cannot open the backup: wrong passphrase, or not the identity it was sealed for (or its header was changed)"
        : `the backup is damaged or was changed (${reason})`,
    );
  }
  if (!isDeepStrictEqual(inner.manifest, file.manifest))
    throw new BackupError(
      "the backup's manifest was changed: it no longer says what the sealed part holds",
    );
  return inner;
}

/**
 * Writes the entries into `store`. Unless `replace`, refuses (writing nothing) when the store
 * holds any key entry already: new keys mixed with restored ones would serve neither. Accounts
 * are marked restored: the operator starts before their Apps are applied again, and must not
 * take them for orphans meanwhile.
 */
export async function restoreBackup(
  store: SecretStore,
  entries: StoreEntry[],
  replace: boolean,
  nowMs = Date.now(),
): Promise<void> {
  const present = await store.list();
  if (present.length > 0 && !replace)
    throw new BackupError(
      `the namespace already holds keys (${present.slice(0, 5).join(", ")}` +
        `${present.length > 5 ? ", ..." : ""}); restore into an empty operator namespace, or replace them with --force`,
    );
  for (const entry of entries)
    await store.put(
      entry.name,
      parseAccountEntryName(entry.name)
        ? { ...entry.data, [RESTORED_FIELD]: String(nowMs) }
        : entry.data,
    );
}

/** The manifest, for people: what the backup holds. */
export function manifestSummary(manifest: Manifest): string {
  const operator = manifest.entries.find((e) => e.kind === "operator");
  const accounts = manifest.entries.flatMap((e) => e.accounts ?? []);
  return [
    `created ${manifest.created}`,
    `operator ${operator?.publicKeys[0] ?? "(none)"}, system account ${operator?.publicKeys[1] ?? "(none)"}`,
    `CA ${manifest.entries.some((e) => e.kind === "ca") ? "included" : "not included"}`,
    `${String(accounts.length)} account${accounts.length === 1 ? "" : "s"}`,
  ].join("; ");
}
