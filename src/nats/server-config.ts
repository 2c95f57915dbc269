/**
 * The nats-server configuration of a cluster member in operator mode with a `full` resolver.
 * One renderer for every place a server is configured (the chart's ConfigMap, the embedded
 * cluster, the tests), so they cannot drift apart.
 *
 * Two files: the server's own (names, ports, routes, TLS file paths: known when the chart is
 * installed) includes the trust file (operator JWT, system account, preload: known only once the
 * operator has minted its identity), which the operator writes into the NATS config Secret.
 */
export interface ServerTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface ServerConfigInput {
  /** The name, or an environment variable holding it (`$POD_NAME`: one file for every pod). */
  serverName: string;
  /** host:port for clients. */
  listen: string;
  /** host:port for the monitoring endpoint. */
  monitor: string;
  cluster: { name: string; listen: string; routes: string[]; tls?: ServerTls };
  /** Path of the trust file (see renderTrustConfig), relative to this configuration file. */
  trustInclude: string;
  /** A directory of this server's own: resolver store and JetStream data live under it. */
  dataDir: string;
  clientTls?: ServerTls;
  jetstream?: { maxMemory: string; maxFile: string };
  /** Largest payload the server accepts; accounts narrow it further. */
  maxPayload?: string;
  /** A WebSocket listener (browsers, clients outside), with the client certificate. */
  websocket?: { listen: string; tls: ServerTls };
}

function quote(value: string): string {
  return JSON.stringify(value);
}

function tlsBlock(tls: ServerTls, indent: string, verifyPeers: boolean): string[] {
  return [
    `${indent}tls {`,
    `${indent}  cert_file: ${quote(tls.certFile)}`,
    `${indent}  key_file: ${quote(tls.keyFile)}`,
    `${indent}  ca_file: ${quote(tls.caFile)}`,
    ...(verifyPeers ? [`${indent}  verify: true`] : []),
    `${indent}  timeout: 5`,
    `${indent}}`,
  ];
}

export function renderServerConfig(input: ServerConfigInput): string {
  const lines = [
    // nats-server resolves an unquoted $VARIABLE from the environment.
    `server_name: ${/^\$[A-Z_]+$/.test(input.serverName) ? input.serverName : quote(input.serverName)}`,
    `listen: ${quote(input.listen)}`,
    `http: ${quote(input.monitor)}`,
    `max_payload: ${input.maxPayload ?? "8388608"}`,
    ...(input.clientTls ? tlsBlock(input.clientTls, "", false) : []),
    "cluster {",
    `  name: ${quote(input.cluster.name)}`,
    `  listen: ${quote(input.cluster.listen)}`,
    // Clients learn no server addresses, so they reconnect through the address they were
    // given (under the chart, the Service). A pod's address outlives the pod in a client's
    // list: a reconnect to it hung until nats.js's 20 s connect timeout, once per stale address.
    "  no_advertise: true",
    ...(input.cluster.tls ? tlsBlock(input.cluster.tls, "  ", true) : []),
    "  routes: [",
    ...input.cluster.routes.map((route) => `    ${quote(route)}`),
    "  ]",
    "}",
    `include ${quote(input.trustInclude)}`,
    "resolver {",
    "  type: full",
    `  dir: ${quote(`${input.dataDir}/jwt`)}`,
    // The operator deletes accounts of deleted apps.
    "  allow_delete: true",
    // Servers sync their stores with each other at this interval (drift repair between peers).
    '  interval: "2m"',
    '  timeout: "5s"',
    // No `limit`: a full store would refuse new accounts.
    "}",
  ];
  if (input.websocket) {
    lines.push(
      "websocket {",
      `  listen: ${quote(input.websocket.listen)}`,
      ...tlsBlock(input.websocket.tls, "  ", false),
      "}",
    );
  }
  if (input.jetstream) {
    lines.push(
      "jetstream {",
      `  store_dir: ${quote(`${input.dataDir}/jetstream`)}`,
      `  max_memory_store: ${input.jetstream.maxMemory}`,
      `  max_file_store: ${input.jetstream.maxFile}`,
      "}",
    );
  }
  return `${lines.join("\n")}\n`;
}

export interface TrustConfigInput {
  operatorJwt: string;
  systemAccount: string;
  systemAccountJwt: string;
}

export function renderTrustConfig(input: TrustConfigInput): string {
  return [
    `operator: ${quote(input.operatorJwt)}`,
    `system_account: ${quote(input.systemAccount)}`,
    // Without the system account preloaded, its users fail until a lookup succeeds.
    "resolver_preload {",
    `  ${input.systemAccount}: ${quote(input.systemAccountJwt)}`,
    "}",
    "",
  ].join("\n");
}

/**
 * The NATS config Secret's keys, which are also the file names where the servers mount it:
 * the operator writes them, the servers' configuration points at them.
 */
export const NATS_CONFIG_FILES = {
  trust: "trust.conf",
  certificate: "tls.crt",
  key: "tls.key",
  routeCertificate: "route.crt",
  routeKey: "route.key",
  caBundle: "ca.crt",
} as const;

export type NatsConfigFiles = Record<
  (typeof NATS_CONFIG_FILES)[keyof typeof NATS_CONFIG_FILES],
  string
>;

export interface NatsConfigInput extends TrustConfigInput {
  server: { certificatePem: string; privateKeyPem: string };
  route: { certificatePem: string; privateKeyPem: string };
  caBundle: string;
}

/** Every file of the NATS config Secret. */
export function renderNatsConfigFiles(input: NatsConfigInput): NatsConfigFiles {
  return {
    [NATS_CONFIG_FILES.trust]: renderTrustConfig(input),
    [NATS_CONFIG_FILES.certificate]: input.server.certificatePem,
    [NATS_CONFIG_FILES.key]: input.server.privateKeyPem,
    [NATS_CONFIG_FILES.routeCertificate]: input.route.certificatePem,
    [NATS_CONFIG_FILES.routeKey]: input.route.privateKeyPem,
    [NATS_CONFIG_FILES.caBundle]: input.caBundle,
  };
}
