/**
 * `backup` and `restore`: every key the operator holds, sealed with age, for the platform team
 * (it needs to read and write Secrets in the operator's namespace). A cluster lost with its
 * keys comes back with the same operator, CA and accounts, so the apps' credentials work again.
 */
import { readFileSync, writeFileSync } from "node:fs";
import {
  BackupError,
  createBackup,
  manifestSummary,
  openBackup,
  restoreBackup,
  type Key,
} from "../../backup/key-backup.ts";
import { KubernetesSecretStore } from "../../accounts/kubernetes-secret-store.ts";
import {
  CLUSTER_OPTIONS,
  CLUSTER_USAGE,
  CommandError,
  OPERATOR_NAMESPACE_OPTION,
  OPERATOR_NAMESPACE_USAGE,
  UsageError,
  connectCluster,
  operatorNamespace,
  text,
  type Command,
} from "./command.ts";

const KEY_USAGE =
  "  --passphrase-file F   the passphrase is this file's first line\n" + OPERATOR_NAMESPACE_USAGE;

function passphrase(file: string): string {
  const first = readFileSync(file, "utf8").split(/\r?\n/)[0] ?? "";
  if (first.length < 12) throw new UsageError(`${file}: a passphrase of at least 12 characters`);
  return first;
}

function storeOf(values: Record<string, string | boolean | undefined>): KubernetesSecretStore {
  const cluster = connectCluster(values);
  return new KubernetesSecretStore(cluster.access, operatorNamespace(values));
}

/** Library errors of a backup become the command's own. */
async function asCommand<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof BackupError) throw new CommandError(error.message);
    throw error;
  }
}

export const backup: Command = {
  summary: "write every key the operator holds to a file, sealed with age (platform team)",
  usage:
    "nats-tenancy backup --out FILE (--passphrase-file F | --recipient AGE_PUBLIC_KEY...)\n" +
    "  --recipient R         seal for this age public key (age1...); repeat for several\n" +
    KEY_USAGE +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    out: { type: "string" },
    "passphrase-file": { type: "string" },
    recipient: { type: "string", multiple: true },
    ...OPERATOR_NAMESPACE_OPTION,
  },
  run: async (values, positionals, output) => {
    if (positionals.length > 0) throw new UsageError("backup takes no arguments");
    const out = text(values, "out");
    if (!out) throw new UsageError("--out FILE is required");
    const file = text(values, "passphrase-file");
    const recipients = (values.recipient as unknown as string[] | undefined) ?? [];
    if (Boolean(file) === recipients.length > 0)
      throw new UsageError("give either --passphrase-file or --recipient");
    const key: Key = file ? { passphrase: passphrase(file) } : { recipients };
    const sealed = await asCommand(createBackup(storeOf(values), key));
    writeFileSync(out, `${JSON.stringify(sealed, null, 2)}\n`, { mode: 0o600 });
    output.out(`wrote ${out}: ${manifestSummary(sealed.manifest)}\n`);
  },
};

export const restore: Command = {
  summary: "put a backup's keys back into an empty operator namespace (platform team)",
  usage:
    "nats-tenancy restore FILE (--passphrase-file F | --identity-file F) [--force]\n" +
    "  --identity-file F     the age identity (AGE-SECRET-KEY-1...) the backup was sealed for\n" +
    "  --force               replace keys the namespace holds already\n" +
    "Restore before the operator starts in a new cluster; then apply the same Apps.\n" +
    KEY_USAGE +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    "passphrase-file": { type: "string" },
    "identity-file": { type: "string" },
    ...OPERATOR_NAMESPACE_OPTION,
    force: { type: "boolean" },
  },
  run: async (values, positionals, output) => {
    const [file, ...extra] = positionals;
    if (!file || extra.length > 0) throw new UsageError("give exactly one FILE");
    const passphraseFile = text(values, "passphrase-file");
    const identityFile = text(values, "identity-file");
    if (Boolean(passphraseFile) === Boolean(identityFile))
      throw new UsageError("give either --passphrase-file or --identity-file");
    const key: Key = passphraseFile
      ? { passphrase: passphrase(passphraseFile) }
      : { identity: readFileSync(identityFile ?? "", "utf8").trim() };
    const opened = await asCommand(openBackup(readFileSync(file, "utf8"), key));
    const store = storeOf(values);
    await asCommand(restoreBackup(store, opened.entries, values.force === true));
    output.out(
      `restored ${String(opened.entries.length)} entries into ${store.namespace}: ${manifestSummary(opened.manifest)}\n`,
    );
  },
};
