/**
 * The operator's settings from flags, each with an environment variable (what a Deployment
 * sets) and a default that fits the Helm chart's names. Unknown flags and bad values stop the
 * process with a message naming them.
 */
import { isIP } from "node:net";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { anyCeiling, ceilingName, type Ceilings, type LimitName } from "../accounts/ceilings.ts";
import {
  DEFAULT_CREDENTIAL_POLICY,
  LIFETIME_SETTINGS,
  lifetimeIssue,
  type CredentialPolicy,
  type LifetimePolicy,
} from "../accounts/credential-policy.ts";
import { LIMIT_RANGES } from "../accounts/spec.ts";
import { DEFAULT_CA_POLICY } from "../ca/authority.ts";
import { MAX_ENVIRONMENTS } from "../crds/app.ts";
import type { ControllerSettings } from "../controller/leader-loops.ts";
import {
  DEFAULT_EXCLUDED_NAMESPACES,
  type WebhookRegistration,
} from "../contract/webhook-registration.ts";

/**
 * What a replica does. The chart runs "controller" (holds the keys, leads by Lease) and
 * "webhook" (serves pods, cannot read the keys) under separate service accounts; a local run
 * does both in one process.
 */
export const ROLES = ["all", "controller", "webhook"] as const;
export type Role = (typeof ROLES)[number];

export interface CliOptions {
  kubeconfig?: string;
  role: Role;
  settings: ControllerSettings;
  logLevel: string;
  healthHost: string;
  healthPort: number;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  stuckAfterMs: number;
  apiTimeoutMs: number;
  /** Where this replica serves the pod webhook; absent: it serves none. */
  webhook?: { host: string; port: number };
  help: boolean;
}

export class OptionsError extends Error {
  override name = "OptionsError";
}

const FLAGS = {
  role: {
    type: "string",
    env: "NATS_TENANCY_ROLE",
    help: "all, controller (App controller, CA, keys) or webhook (serves the pod webhook only)",
    default: "all",
  },
  kubeconfig: {
    type: "string",
    env: "KUBECONFIG",
    help: "kubeconfig file (default: in-cluster, then ~/.kube/config)",
  },
  namespace: {
    type: "string",
    env: "NATS_TENANCY_NAMESPACE",
    help: "the operator's namespace (keys, CA, NATS config)",
    default: "nats-tenancy-system",
  },
  "operator-name": {
    type: "string",
    env: "NATS_TENANCY_OPERATOR_NAME",
    help: "NATS operator name",
    default: "nats-tenancy",
  },
  "nats-url": {
    type: "string",
    env: "NATS_TENANCY_NATS_URL",
    help: "comma-separated URLs the operator connects to (default: the NATS Service)",
  },
  "app-nats-url": {
    type: "string",
    env: "NATS_TENANCY_APP_NATS_URL",
    help: "NATS_URL given to apps (default: the NATS Service)",
  },
  "external-names": {
    type: "string",
    env: "NATS_TENANCY_EXTERNAL_NAMES",
    help: "comma-separated host names and addresses clients outside the cluster reach NATS by; the servers' certificates name them",
  },
  "external-url": {
    type: "string",
    env: "NATS_TENANCY_EXTERNAL_URL",
    help: "NATS_EXTERNAL_URL given to apps, for clients outside the cluster; its host must be one of --external-names",
  },
  "external-websocket-url": {
    type: "string",
    env: "NATS_TENANCY_EXTERNAL_WEBSOCKET_URL",
    help: "NATS_EXTERNAL_WEBSOCKET_URL given to apps, where the servers listen for WebSocket clients; its host must be one of --external-names",
  },
  "nats-service": {
    type: "string",
    env: "NATS_TENANCY_NATS_SERVICE",
    help: "NATS client Service name",
    default: "nats",
  },
  "nats-replicas": {
    type: "string",
    env: "NATS_TENANCY_NATS_REPLICAS",
    help: "NATS servers running a full resolver; an account counts once a majority acknowledged it",
    default: "3",
  },
  "nats-config-secret": {
    type: "string",
    env: "NATS_TENANCY_NATS_CONFIG_SECRET",
    help: "Secret the NATS servers mount",
    default: "nats-tenancy-nats-config",
  },
  "cluster-domain": {
    type: "string",
    env: "NATS_TENANCY_CLUSTER_DOMAIN",
    help: "cluster DNS domain",
    default: "cluster.local",
  },
  "loopback-names": {
    type: "boolean",
    env: "NATS_TENANCY_LOOPBACK_NAMES",
    help: "add localhost and 127.0.0.1 to the NATS certificates (local runs)",
  },
  "server-reload": {
    type: "string",
    env: "NATS_TENANCY_SERVER_RELOAD",
    help: 'ask the NATS servers, pods of the chart\'s StatefulSet reached by their headless-Service names, to reload renewed certificates: "on" (the chart), or "off" where something else reloads them',
    default: "off",
  },
  "resync-seconds": {
    type: "string",
    env: "NATS_TENANCY_RESYNC_SECONDS",
    help: "period of the full resync and drift repair",
    default: "300",
  },
  "certificate-lifetime-seconds": {
    type: "string",
    env: "NATS_TENANCY_CERTIFICATE_LIFETIME_SECONDS",
    help: "lifetime of the NATS servers' and the webhook's certificates (renewed at 2/3)",
    default: String(90 * 86_400),
  },
  "ca-lifetime-seconds": {
    type: "string",
    env: "NATS_TENANCY_CA_LIFETIME_SECONDS",
    help: "lifetime of the CA",
    default: String(DEFAULT_CA_POLICY.caLifetimeMs / 1000),
  },
  "ca-overlap-seconds": {
    type: "string",
    env: "NATS_TENANCY_CA_OVERLAP_SECONDS",
    help: "how long a new CA is in every bundle before it signs, and the old one after",
    default: String(DEFAULT_CA_POLICY.overlapMs / 1000),
  },
  "operator-signing-key-max-age-seconds": {
    type: "string",
    env: "NATS_TENANCY_OPERATOR_SIGNING_KEY_MAX_AGE_SECONDS",
    help: "the operator's signing key, which signs every account, is replaced once this old (the NATS servers restart twice, rolled one by one); 0: only when asked (nats-tenancy rotate-operator-key)",
    default: "0",
  },
  "rotation-overlap-seconds": {
    type: "string",
    env: "NATS_TENANCY_ROTATION_OVERLAP_SECONDS",
    help: "after a credential rotation, the longest the replaced credentials keep working (they are revoked sooner once no connection uses them); long enough for the kubelet to refresh mounted Secrets and a rollout to finish",
    default: String(DEFAULT_CREDENTIAL_POLICY.rotationOverlapMs / 1000),
  },
  "signing-key-max-age-seconds": {
    type: "string",
    env: "NATS_TENANCY_SIGNING_KEY_MAX_AGE_SECONDS",
    help: "an account's signing key is replaced once this old, with new credentials signed by the new key (the old key leaves after the rotation's overlap); 0: only when an App asks",
    default: String(DEFAULT_CREDENTIAL_POLICY.signingKeyMaxAgeSeconds),
  },
  "credential-lifetime-seconds": {
    type: "string",
    env: "NATS_TENANCY_CREDENTIAL_LIFETIME_SECONDS",
    help: "how long pods credentials are valid for Apps that ask for no lifetime (renewed at 2/3 of it); 0: they never expire",
    default: String(DEFAULT_CREDENTIAL_POLICY.lifetime.defaultSeconds),
  },
  "credential-lifetime-min-seconds": {
    type: "string",
    env: "NATS_TENANCY_CREDENTIAL_LIFETIME_MIN_SECONDS",
    help: "the shortest lifetime an App may ask for (a third of it must cover the kubelet's refresh of mounted Secrets)",
    default: String(DEFAULT_CREDENTIAL_POLICY.lifetime.minSeconds),
  },
  "credential-lifetime-max-seconds": {
    type: "string",
    env: "NATS_TENANCY_CREDENTIAL_LIFETIME_MAX_SECONDS",
    help: "the longest lifetime an App may ask for; 0: no bound, and Apps may ask for credentials that never expire",
    default: String(DEFAULT_CREDENTIAL_POLICY.lifetime.maxSeconds),
  },
  concurrency: {
    type: "string",
    env: "NATS_TENANCY_CONCURRENCY",
    // Mostly waiting on the API server and the NATS servers' acknowledgements: measured by
    // bench/controller.ts, 1,000 Apps went Ready 18% sooner with 48 than with 16.
    help: "Apps reconciled at once",
    default: "32",
  },
  "log-level": {
    type: "string",
    env: "NATS_TENANCY_LOG_LEVEL",
    help: "fatal, error, warn, info, debug, trace or silent",
    default: "info",
  },
  "health-address": {
    type: "string",
    env: "NATS_TENANCY_HEALTH_ADDRESS",
    help: "host:port for /healthz, /readyz, /metrics",
    default: "0.0.0.0:8080",
  },
  "lease-name": {
    type: "string",
    env: "NATS_TENANCY_LEASE",
    help: "leader election Lease",
    default: "nats-tenancy-leader",
  },
  "lease-seconds": {
    type: "string",
    env: "NATS_TENANCY_LEASE_SECONDS",
    help: "leader Lease duration",
    default: "15",
  },
  "stuck-seconds": {
    type: "string",
    env: "NATS_TENANCY_STUCK_SECONDS",
    help: "/healthz fails once a reconcile has run this long (every call in it has a timeout, so it is stuck), and Kubernetes restarts the process",
    default: "900",
  },
  "api-timeout-seconds": {
    type: "string",
    env: "NATS_TENANCY_API_TIMEOUT_SECONDS",
    help: "timeout of every Kubernetes API request (watches excepted)",
    default: "30",
  },
  "webhook-address": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_ADDRESS",
    help: 'host:port the pod webhook serves HTTPS on, or "off"',
    default: "0.0.0.0:8443",
  },
  "webhook-service": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_SERVICE",
    help: "Service in front of the webhook port (port 443), registered with the API server",
    default: "nats-tenancy-webhook",
  },
  "webhook-url": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_URL",
    help: "register this URL instead of the Service (a webhook outside the cluster); its path is replaced by each webhook's own (/mutate-pods, /validate-apps)",
  },
  "webhook-config": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_CONFIG",
    help: "MutatingWebhookConfiguration name",
    default: "nats-tenancy",
  },
  "webhook-registration": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_REGISTRATION",
    help: 'who owns the MutatingWebhookConfiguration: "operator" writes all of it, "ca-bundle" (the chart renders it) only keeps its caBundle current',
    default: "operator",
  },
  "webhook-excluded-namespaces": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_EXCLUDED_NAMESPACES",
    help: "comma-separated namespaces never injected, besides the operator's own",
    default: DEFAULT_EXCLUDED_NAMESPACES.join(","),
  },
  "webhook-tls-secret": {
    type: "string",
    env: "NATS_TENANCY_WEBHOOK_TLS_SECRET",
    help: "Secret holding the webhook's serving certificate",
    default: "nats-tenancy-webhook-tls",
  },
  "max-environments-per-app": {
    type: "string",
    env: "NATS_TENANCY_MAX_ENVIRONMENTS_PER_APP",
    help: "ceiling: most environments an App may have; unset: none",
  },
  "max-apps-per-namespace": {
    type: "string",
    env: "NATS_TENANCY_MAX_APPS_PER_NAMESPACE",
    help: "ceiling: most Apps a namespace may hold (those with accounts keep them); unset: none",
  },
  "max-connections": {
    type: "string",
    env: "NATS_TENANCY_MAX_CONNECTIONS",
    help: "ceiling per environment: client connections; unset: none",
  },
  "max-payload": {
    type: "string",
    env: "NATS_TENANCY_MAX_PAYLOAD",
    help: "ceiling per environment: message payload in bytes; unset: none",
  },
  "max-subscriptions": {
    type: "string",
    env: "NATS_TENANCY_MAX_SUBSCRIPTIONS",
    help: "ceiling per environment: subscriptions; unset: none",
  },
  "max-jetstream-memory": {
    type: "string",
    env: "NATS_TENANCY_MAX_JETSTREAM_MEMORY",
    help: "ceiling per environment: JetStream memory bytes; unset: none",
  },
  "max-jetstream-storage": {
    type: "string",
    env: "NATS_TENANCY_MAX_JETSTREAM_STORAGE",
    help: "ceiling per environment: JetStream file storage bytes; unset: none",
  },
  "max-jetstream-streams": {
    type: "string",
    env: "NATS_TENANCY_MAX_JETSTREAM_STREAMS",
    help: "ceiling per environment: JetStream streams; unset: none",
  },
  "max-jetstream-consumers": {
    type: "string",
    env: "NATS_TENANCY_MAX_JETSTREAM_CONSUMERS",
    help: "ceiling per environment: JetStream consumers; unset: none",
  },
  identity: {
    type: "string",
    env: "POD_NAME",
    help: "this replica's name in the Lease (default: host name)",
  },
  help: { type: "boolean", env: "", help: "print this help" },
} as const;

type FlagName = keyof typeof FLAGS;

export function usage(): string {
  const lines = ["Usage: nats-tenancy [flags]", ""];
  for (const [name, flag] of Object.entries(FLAGS)) {
    const def = "default" in flag ? ` (default ${flag.default})` : "";
    const env = flag.env ? ` [${flag.env}]` : "";
    lines.push(`  --${name}${env}\n      ${flag.help}${def}`);
  }
  return lines.join("\n");
}

function integer(name: string, value: string, min: number, max: number): number {
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max)
    throw new OptionsError(`--${name}: "${value}" is not an integer from ${min} to ${max}`);
  return parsed;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function oneOf(name: string, value: string, allowed: string[]): string {
  if (!allowed.includes(value))
    throw new OptionsError(`--${name}: "${value}" is not one of ${allowed.join(", ")}`);
  return value;
}

function hostPort(name: string, value: string): { host: string; port: number } {
  const at = value.lastIndexOf(":");
  if (at < 0) throw new OptionsError(`--${name}: "${value}" is not host:port`);
  return { host: value.slice(0, at), port: integer(name, value.slice(at + 1), 0, 65535) };
}

const TEN_YEARS_SECONDS = 10 * 365 * 86_400;

/** The lifetime flags, checked together: the default must be one an App could ask for. */
function lifetimePolicy(get: (name: FlagName) => string | undefined): LifetimePolicy {
  const seconds = (name: FlagName, min: number) =>
    integer(name, get(name) ?? "", min, TEN_YEARS_SECONDS);
  const policy = {
    defaultSeconds: seconds("credential-lifetime-seconds", 0),
    minSeconds: seconds("credential-lifetime-min-seconds", 60),
    maxSeconds: seconds("credential-lifetime-max-seconds", 0),
  };
  if (policy.defaultSeconds !== 0 && policy.defaultSeconds < 60)
    throw new OptionsError(`${LIFETIME_SETTINGS.defaultSeconds.flag}: 0, or at least 60`);
  if (policy.maxSeconds !== 0 && policy.maxSeconds < policy.minSeconds)
    throw new OptionsError(
      `${LIFETIME_SETTINGS.maxSeconds.flag} must be 0 or at least ${LIFETIME_SETTINGS.minSeconds.flag}`,
    );
  const issue = lifetimeIssue(policy, policy.defaultSeconds);
  if (issue) throw new OptionsError(`${LIFETIME_SETTINGS.defaultSeconds.flag}: ${issue}`);
  return policy;
}

function operatorKeyMaxAge(get: (name: FlagName) => string | undefined): number {
  const name = "operator-signing-key-max-age-seconds";
  const value = integer(name, get(name) ?? "", 0, TEN_YEARS_SECONDS);
  // Each rotation restarts every NATS server twice.
  if (value !== 0 && value < 86_400) throw new OptionsError(`--${name}: 0, or at least 86400`);
  return value;
}

function credentialPolicy(get: (name: FlagName) => string | undefined): CredentialPolicy {
  const overlapSeconds = integer(
    "rotation-overlap-seconds",
    get("rotation-overlap-seconds") ?? "",
    1,
    30 * 86_400,
  );
  const signingKeyMaxAgeSeconds = integer(
    "signing-key-max-age-seconds",
    get("signing-key-max-age-seconds") ?? "",
    0,
    TEN_YEARS_SECONDS,
  );
  // Shorter, and a key would be replaced again before the one it replaced could leave.
  if (signingKeyMaxAgeSeconds !== 0 && signingKeyMaxAgeSeconds <= overlapSeconds)
    throw new OptionsError(
      "--signing-key-max-age-seconds: 0, or longer than --rotation-overlap-seconds",
    );
  return {
    rotationOverlapMs: overlapSeconds * 1000,
    lifetime: lifetimePolicy(get),
    signingKeyMaxAgeSeconds,
  };
}

/** The external names, each as a certificate spells it. */
function externalNames(list: string | undefined): string[] {
  const names = [
    ...new Set(
      (list ?? "")
        .split(",")
        .map((n) => n.trim().toLowerCase())
        .filter(Boolean),
    ),
  ];
  for (const name of names)
    if (
      isIP(name) === 0 &&
      !/^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(
        name,
      )
    )
      throw new OptionsError(`--external-names: ${name} is neither a host name nor an address`);
  return names;
}

/**
 * A URL outside clients are given, when the flag is set: they can verify the servers only by a
 * name listed.
 */
function outsideUrl(
  flag: "external-url" | "external-websocket-url",
  url: string | undefined,
  schemes: string[],
  names: string[],
): string | undefined {
  if (url === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new OptionsError(`--${flag}: ${url} is not a URL`);
  }
  if (!schemes.includes(parsed.protocol))
    throw new OptionsError(`--${flag}: ${url} is not ${schemes[0] ?? ""}//HOST:PORT`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!names.includes(host))
    throw new OptionsError(
      `--${flag}: ${host} is not in --external-names, so clients could not verify the servers by it`,
    );
  return url;
}

export function parseOptions(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): CliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: Object.fromEntries(
        Object.entries(FLAGS).map(([name, flag]) => [name, { type: flag.type }]),
      ),
      strict: true,
      allowPositionals: false,
    }).values as Partial<Record<FlagName, string | boolean>>;
  } catch (error) {
    throw new OptionsError(error instanceof Error ? error.message : String(error));
  }
  const get = (name: FlagName): string | undefined => {
    const flag = FLAGS[name];
    // An empty variable (a chart value left blank) means unset, not an empty setting.
    const value = parsed[name] ?? (flag.env ? env[flag.env] || undefined : undefined);
    if (value === undefined) return "default" in flag ? flag.default : undefined;
    return String(value);
  };
  const bool = (name: FlagName): boolean => ["true", "1", "yes"].includes(get(name) ?? "");

  const namespace = get("namespace") ?? "";
  const service = get("nats-service") ?? "nats";
  const clusterDomain = get("cluster-domain") ?? "cluster.local";
  const replicas = integer("nats-replicas", get("nats-replicas") ?? "", 1, 99);
  const serviceUrl = `tls://${service}.${namespace}.svc.${clusterDomain}:4222`;
  const externalNamesList = externalNames(get("external-names"));
  const externalUrl = outsideUrl(
    "external-url",
    get("external-url"),
    ["tls:", "nats:"],
    externalNamesList,
  );
  const externalWebsocketUrl = outsideUrl(
    "external-websocket-url",
    get("external-websocket-url"),
    ["wss:"],
    externalNamesList,
  );
  const health = hostPort("health-address", get("health-address") ?? "");
  const kubeconfig = get("kubeconfig");
  const role = oneOf("role", get("role") ?? "", [...ROLES]) as Role;
  const webhookAddress = get("webhook-address") ?? "off";
  // The controller keeps the webhook's certificate and registration; it serves no webhook.
  const webhook =
    webhookAddress === "off" || role === "controller"
      ? undefined
      : hostPort("webhook-address", webhookAddress);
  const webhookUrl = get("webhook-url");
  const ceiling = (name: FlagName, min: number, max: number): number | undefined => {
    const value = get(name);
    return value === undefined ? undefined : integer(name, value, min, max);
  };
  const limitCeilings: Partial<Record<LimitName, number>> = {};
  for (const limit of Object.keys(LIMIT_RANGES) as LimitName[]) {
    const value = ceiling(
      ceilingName(limit).flag.slice(2) as FlagName,
      LIMIT_RANGES[limit].min,
      LIMIT_RANGES[limit].max,
    );
    if (value !== undefined) limitCeilings[limit] = value;
  }
  const maxEnvironments = ceiling("max-environments-per-app", 1, MAX_ENVIRONMENTS);
  const maxApps = ceiling("max-apps-per-namespace", 1, 1_000_000);
  const ceilings: Ceilings = {
    limits: limitCeilings,
    ...(maxEnvironments !== undefined ? { environmentsPerApp: maxEnvironments } : {}),
    ...(maxApps !== undefined ? { appsPerNamespace: maxApps } : {}),
  };
  const seconds = (name: FlagName, max: number): number =>
    integer(name, get(name) ?? "", 60, max) * 1000;
  const leafLifetimeMs = seconds("certificate-lifetime-seconds", 10 * 365 * 86_400);
  const caPolicy = {
    ...DEFAULT_CA_POLICY,
    caLifetimeMs: seconds("ca-lifetime-seconds", 30 * 365 * 86_400),
    overlapMs: seconds("ca-overlap-seconds", 365 * 86_400),
  };
  if (caPolicy.caLifetimeMs <= leafLifetimeMs + 2 * caPolicy.overlapMs)
    throw new OptionsError(
      "--ca-lifetime-seconds must exceed the certificate lifetime plus twice the CA overlap",
    );
  return {
    ...(kubeconfig ? { kubeconfig } : {}),
    role,
    settings: {
      namespace,
      operatorName: get("operator-name") ?? "nats-tenancy",
      natsConfigSecret: get("nats-config-secret") ?? "",
      natsNames: {
        service,
        headlessService: `${service}-headless`,
        statefulSet: service,
        namespace,
        replicas,
        clusterDomain,
        loopback: bool("loopback-names"),
        ...(externalNamesList.length > 0 ? { external: externalNamesList } : {}),
      },
      leafLifetimeMs,
      caPolicy,
      operatorKeyMaxAgeSeconds: operatorKeyMaxAge(get),
      natsUrls: (get("nats-url") ?? serviceUrl).split(",").map((u) => u.trim()),
      appUrls: {
        url: get("app-nats-url") ?? serviceUrl,
        ...(externalUrl !== undefined ? { externalUrl } : {}),
        ...(externalWebsocketUrl !== undefined ? { externalWebsocketUrl } : {}),
      },
      expectedServers: replicas,
      resyncMs: integer("resync-seconds", get("resync-seconds") ?? "", 1, 86_400) * 1000,
      ...(oneOf("server-reload", get("server-reload") ?? "", ["on", "off"]) === "on"
        ? {
            serverReload: {
              // The StatefulSet's pods by their headless-Service names, which their certificate
              // carries.
              endpoint: (serverName: string) => ({
                host: `${serverName}.${service}-headless.${namespace}.svc.${clusterDomain}`,
                port: 4222,
              }),
              // A Secret reaches a mounted file within the kubelet's sync period (1 min by
              // default) plus its cache TTL.
              deadlineMs: 5 * 60_000,
            },
          }
        : {}),
      concurrency: integer("concurrency", get("concurrency") ?? "", 1, 256),
      ceilings,
      credentials: credentialPolicy(get),
      ...(webhookAddress !== "off"
        ? {
            webhook: {
              configName: get("webhook-config") ?? "",
              tlsSecret: get("webhook-tls-secret") ?? "",
              service: get("webhook-service") ?? "",
              servicePort: 443,
              ...(webhookUrl ? { url: webhookUrl } : {}),
              registration: oneOf("webhook-registration", get("webhook-registration") ?? "", [
                "operator",
                "ca-bundle",
              ]) as WebhookRegistration,
              excludedNamespaces: (get("webhook-excluded-namespaces") ?? "")
                .split(",")
                .map((n) => n.trim())
                .filter(Boolean),
              judgesApps: anyCeiling(ceilings),
            },
          }
        : {}),
    },
    ...(webhook ? { webhook } : {}),
    logLevel: oneOf("log-level", get("log-level") ?? "", LOG_LEVELS),
    healthHost: health.host,
    healthPort: health.port,
    leaseName: get("lease-name") ?? "",
    leaseDurationMs: integer("lease-seconds", get("lease-seconds") ?? "", 2, 600) * 1000,
    stuckAfterMs: integer("stuck-seconds", get("stuck-seconds") ?? "", 1, 86_400) * 1000,
    apiTimeoutMs: integer("api-timeout-seconds", get("api-timeout-seconds") ?? "", 1, 3600) * 1000,
    identity: get("identity") ?? hostname(),
    help: bool("help"),
  };
}
