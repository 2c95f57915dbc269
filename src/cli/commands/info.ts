/**
 * `info`, `list` and `env`: what an app connects to, like `dokku nats:info`, `nats:list`, and
 * the files a developer needs to connect from their own machine. The credentials are printed
 * only when asked for by name, and only to a caller the API server lets read the Secret.
 */
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AppObject } from "../../contract/app-object.ts";
import {
  CA_KEY,
  CREDS_KEY,
  EXTERNAL_URL_KEY,
  EXTERNAL_WEBSOCKET_URL_KEY,
} from "../../contract/app-secret.ts";
import type { EnvironmentStatus } from "../../crds/app.ts";
import { environmentsOf, listApps, oneEnvironment, readApp, readAppSecret } from "./apps.ts";
import { rotationLine, signingKeyLine } from "./rotate.ts";
import {
  CLUSTER_OPTIONS,
  CLUSTER_USAGE,
  CommandError,
  UsageError,
  connectCluster,
  text,
  type Command,
} from "./command.ts";

const FIELDS = ["url", "dsn", "secret", "status", "account", "ca", "creds"] as const;

function readyCondition(app: AppObject) {
  return app.status?.conditions?.find((c) => c.type === "Ready");
}

function ready(app: AppObject): string {
  const condition = readyCondition(app);
  if (!condition) return "Unknown (not reconciled yet)";
  return `${condition.status} (${condition.reason}: ${condition.message})`;
}

function environmentStatus(app: AppObject, environment: EnvironmentStatus): string {
  if (environment.ready) return "ready";
  const degraded = app.status?.conditions?.find((c) => c.type === "Degraded");
  return degraded?.status === "True"
    ? `not ready: ${degraded.reason}: ${degraded.message}`
    : "not ready";
}

/** The URL clients outside the cluster connect to, as the app's Secret holds it. */
function externalUrl(secret: Record<string, string>, secretName: string): string {
  const url = secret[EXTERNAL_URL_KEY];
  if (url === undefined)
    throw new CommandError(
      `NATS is not exposed outside the cluster (Secret ${secretName} has no ${EXTERNAL_URL_KEY}); the platform team turns it on with the chart's nats.expose values`,
    );
  return url;
}

/** Each CA of the bundle with its expiry (two during a rotation). */
function caExpiries(bundle: string): string {
  const pems = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const expiries = pems
    .map((pem) => new X509Certificate(pem))
    .sort((a, b) => a.validToDate.getTime() - b.validToDate.getTime())
    .map((c) => `${c.validToDate.toISOString()} (${c.subject.replace(/\n/g, ", ")})`);
  return expiries.length > 0 ? expiries.join("; ") : "no certificate in the bundle";
}

export const info: Command = {
  summary: "what an App's environments connect to (like dokku nats:info)",
  usage:
    "nats-tenancy info APP [-n NS] [--env ENV] [--url|--dsn|--secret|--status|--account|--ca|--creds] [--external]\n" +
    "  --env ENV   one environment (needed with a single field when the App has several)\n" +
    "  --url, --dsn, --secret, --status, --account   print that field alone\n" +
    "  --external  with --url or --dsn: the URL clients outside the cluster connect to\n" +
    "  --ca        print the CA bundle apps verify the servers with\n" +
    "  --creds     print the credentials (only asked for by name; needs read access to the Secret)\n" +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    env: { type: "string" },
    external: { type: "boolean" },
    ...Object.fromEntries(FIELDS.map((f) => [f, { type: "boolean" }])),
  },
  run: async (values, positionals, output) => {
    const [name, ...extra] = positionals;
    if (!name || extra.length > 0) throw new UsageError("give exactly one APP");
    const fields = FIELDS.filter((f) => values[f] === true);
    if (fields.length > 1) throw new UsageError(`choose one of --${fields.join(", --")}`);
    const external = values.external === true;
    const [field] = fields;
    if (external && field !== "url" && field !== "dsn")
      throw new UsageError("--external goes with --url or --dsn");
    const cluster = connectCluster(values);
    const app = await readApp(cluster, cluster.namespace, name);
    const only = text(values, "env");
    if (field) {
      const environment = oneEnvironment(app, only);
      const secret = (): Promise<Record<string, string>> =>
        readAppSecret(cluster, cluster.namespace, environment.secret);
      const url = async (): Promise<string> =>
        external ? externalUrl(await secret(), environment.secret) : (environment.url ?? "");
      const answers: Record<(typeof FIELDS)[number], () => Promise<string>> = {
        url,
        dsn: url,
        secret: () => Promise.resolve(environment.secret),
        status: () => Promise.resolve(environmentStatus(app, environment)),
        account: () => Promise.resolve(environment.account ?? ""),
        ca: async () => (await secret())[CA_KEY]?.trimEnd() ?? "",
        creds: async () => (await secret())[CREDS_KEY]?.trimEnd() ?? "",
      };
      output.out(`${await answers[field]()}\n`);
      return;
    }
    const lines = [`App ${cluster.namespace}/${name}: Ready ${ready(app)}`];
    for (const environment of environmentsOf(app, only)) {
      let ca: string;
      let outside: string[] = [];
      try {
        const secret = await readAppSecret(cluster, cluster.namespace, environment.secret);
        ca = caExpiries(secret[CA_KEY] ?? "");
        outside = [secret[EXTERNAL_URL_KEY], secret[EXTERNAL_WEBSOCKET_URL_KEY]]
          .filter((url) => url !== undefined)
          .map((url) => `  outside:     ${url}`);
      } catch (error) {
        ca = `unknown: ${error instanceof Error ? error.message : String(error)}`;
      }
      lines.push(
        `${environment.name}:`,
        `  url:         ${environment.url ?? "(not yet)"}`,
        ...outside,
        `  secret:      ${environment.secret}`,
        `  status:      ${environmentStatus(app, environment)}`,
        `  account:     ${environment.account ?? "(not yet)"}`,
        `  servers:     ${environment.servers === undefined ? "all" : String(environment.servers)} acknowledged the current account`,
        `  ca expires:  ${ca}`,
        `  rotation:    ${rotationLine(environment)}`,
        `  signing key: ${signingKeyLine(environment)}`,
        ...sharingLines(environment),
      );
    }
    output.out(`${lines.join("\n")}\n`);
  },
};

/** One line per export and import, only for an environment that shares. */
function sharingLines(environment: EnvironmentStatus): string[] {
  const exports = (environment.exports ?? []).map(
    (e) =>
      `${e.subject} (${e.type}) to ${e.importers.length > 0 ? e.importers.join(", ") : "no account yet"}`,
  );
  const imports = (environment.imports ?? []).map(
    (i) =>
      `${i.subject} (${i.type}) from ${i.from}${i.localSubject ? ` as ${i.localSubject}` : ""}: ${
        i.active ? "active" : `${i.reason ?? "refused"}: ${i.message ?? ""}`
      }`,
  );
  return [
    ...exports.map((line, n) => `  ${n === 0 ? "exports:    " : "            "} ${line}`),
    ...imports.map((line, n) => `  ${n === 0 ? "imports:    " : "            "} ${line}`),
  ];
}

export const list: Command = {
  summary: "Apps with their environments and readiness (like dokku nats:list)",
  usage:
    "nats-tenancy list [-n NS | -A]\n  -A, --all-namespaces  every namespace\n" + CLUSTER_USAGE,
  options: { ...CLUSTER_OPTIONS, "all-namespaces": { type: "boolean", short: "A" } },
  run: async (values, positionals, output) => {
    if (positionals.length > 0) throw new UsageError("list takes no arguments");
    const cluster = connectCluster(values);
    const all = values["all-namespaces"] === true;
    const apps = await listApps(cluster, all ? undefined : cluster.namespace);
    const rows = [["NAMESPACE", "APP", "READY", "ENVIRONMENTS"]];
    for (const app of apps) {
      const condition = readyCondition(app);
      const environments = (app.status?.environments ?? [])
        .map((e) => `${e.name}${e.ready ? "" : " (not ready)"}`)
        .join(", ");
      rows.push([
        app.metadata.namespace,
        app.metadata.name,
        condition ? `${condition.status} ${condition.reason}` : "Unknown",
        environments || "-",
      ]);
    }
    const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => r[i]?.length ?? 0))) ?? [];
    output.out(
      rows
        .map((r) =>
          r
            .map((cell, i) => cell.padEnd(widths[i] ?? 0))
            .join("  ")
            .trimEnd(),
        )
        .join("\n") + "\n",
    );
  },
};

/** Single quotes for a POSIX shell. */
function quoted(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export const env: Command = {
  summary: "write nats.creds and ca.crt for local development, and print the variables",
  usage:
    "nats-tenancy env APP --env ENV [--dir DIR] [--external] [-n NS]\n" +
    "  --dir DIR   where to write the files (default ./nats-APP-ENV); the creds get mode 0600\n" +
    "  --external  NATS_URL is the URL outside the cluster (where NATS is exposed)\n" +
    'Then: eval "$(nats-tenancy env APP --env ENV)"\n' +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    env: { type: "string" },
    dir: { type: "string" },
    external: { type: "boolean" },
  },
  run: async (values, positionals, output) => {
    const [name, ...extra] = positionals;
    if (!name || extra.length > 0) throw new UsageError("give exactly one APP");
    const cluster = connectCluster(values);
    const app = await readApp(cluster, cluster.namespace, name);
    const environment = oneEnvironment(app, text(values, "env"));
    const secret = await readAppSecret(cluster, cluster.namespace, environment.secret);
    const url =
      values.external === true
        ? externalUrl(secret, environment.secret)
        : (secret.NATS_URL ?? environment.url ?? "");
    const dir = resolve(text(values, "dir") ?? `nats-${name}-${environment.name}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const credsFile = join(dir, "nats.creds");
    const caFile = join(dir, "ca.crt");
    writeFileSync(credsFile, secret[CREDS_KEY] ?? "", { mode: 0o600 });
    // An existing file keeps its mode on write: make sure.
    chmodSync(credsFile, 0o600);
    writeFileSync(caFile, secret[CA_KEY] ?? "");
    output.out(
      [
        `export NATS_URL=${quoted(url)}`,
        `export NATS_CREDENTIALS_FILE=${quoted(credsFile)}`,
        `export NATS_CA_FILE=${quoted(caFile)}`,
      ].join("\n") + "\n",
    );
  },
};
