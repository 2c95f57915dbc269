/**
 * N nats-server processes on loopback forming one cluster with routes. The configuration of
 * each node comes from the caller (the Helm chart's renderer in the product's own tests), so
 * the processes run exactly what a deployed server would.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "./wait.ts";
import { freePort } from "./ports.ts";
import { ManagedProcess } from "./process.ts";
import { ownedTempDir } from "./tempdir.ts";

export interface NatsNodeAddress {
  index: number;
  name: string;
  clientPort: number;
  clusterPort: number;
  monitorPort: number;
  /** A directory of this node's own (resolver store, JetStream). */
  dir: string;
}

export interface NatsClusterLayout {
  name: string;
  nodes: NatsNodeAddress[];
}

export type NatsConfigRenderer = (node: NatsNodeAddress, cluster: NatsClusterLayout) => string;

export interface NatsClusterOptions {
  binary: string;
  size?: number;
  name?: string;
  config?: NatsConfigRenderer;
  dir?: string;
  startTimeoutMs?: number;
}

export class NatsNode {
  process: ManagedProcess | undefined;
  readonly configFile: string;
  readonly logFile: string;

  readonly address: NatsNodeAddress;
  private readonly binary: string;

  constructor(address: NatsNodeAddress, binary: string, config: string) {
    this.address = address;
    this.binary = binary;
    this.configFile = join(address.dir, "nats.conf");
    this.logFile = join(address.dir, "nats.log");
    this.writeConfig(config);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.address.clientPort}`;
  }

  get monitorUrl(): string {
    return `http://127.0.0.1:${this.address.monitorPort}`;
  }

  writeConfig(config: string): void {
    writeFileSync(this.configFile, config);
  }

  start(): void {
    if (this.process?.running) throw new Error(`${this.address.name} is already running`);
    this.process = ManagedProcess.start({
      name: `nats-server ${this.address.name}`,
      command: this.binary,
      args: ["-c", this.configFile],
      logFile: this.logFile,
      cwd: this.address.dir,
    });
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }

  async monitor<T>(endpoint: string): Promise<T> {
    const res = await fetch(`${this.monitorUrl}/${endpoint}`, {
      signal: AbortSignal.timeout(2000),
    });
    if (!res.ok) throw new Error(`${endpoint}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  /** Distinct servers this node has routes to (2.10+ pools several connections per peer). */
  async routedPeers(): Promise<string[]> {
    const routez = await this.monitor<{ routes?: { remote_id: string }[] | null }>("routez");
    return [...new Set((routez.routes ?? []).map((r) => r.remote_id))];
  }

  async waitReady(peers: number, timeoutMs: number): Promise<void> {
    const processes = this.process ? [this.process] : [];
    await waitUntil(
      `${this.address.name} serving with routes to ${peers} peers`,
      // Not /healthz: with JetStream it reports (and on 2.9 can stall) until the JetStream
      // cluster has caught up, which is not what "the server is up" means here.
      async () => (await this.routedPeers()).length >= peers,
      { timeoutMs, processes },
    );
  }
}

export interface NatsCluster {
  layout: NatsClusterLayout;
  nodes: NatsNode[];
  urls: string[];
  /** Every port it listens on (for leak checks). */
  ports: number[];
  dir: string;
  waitReady: (timeoutMs?: number) => Promise<void>;
  logTails: (lines?: number) => string;
  stop: () => Promise<void>;
}

/** A cluster with routes and monitoring, and nothing else (no auth, no TLS). */
export const plainClusterConfig: NatsConfigRenderer = (node, cluster) =>
  [
    `server_name: ${node.name}`,
    `listen: "127.0.0.1:${node.clientPort}"`,
    `http: "127.0.0.1:${node.monitorPort}"`,
    "cluster {",
    `  name: ${cluster.name}`,
    `  listen: "127.0.0.1:${node.clusterPort}"`,
    "  routes: [",
    ...cluster.nodes
      .filter((peer) => peer.index !== node.index)
      .map((peer) => `    "nats-route://127.0.0.1:${peer.clusterPort}"`),
    "  ]",
    "}",
    "",
  ].join("\n");

export async function startNatsCluster(options: NatsClusterOptions): Promise<NatsCluster> {
  const size = options.size ?? 3;
  const owned = options.dir === undefined ? ownedTempDir("nats") : undefined;
  const dir = options.dir ?? owned?.dir ?? "";
  const render = options.config ?? plainClusterConfig;
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const addresses: NatsNodeAddress[] = [];
  for (let index = 0; index < size; index++) {
    const nodeDir = join(dir, `nats-${index}`);
    mkdirSync(nodeDir, { recursive: true });
    addresses.push({
      index,
      name: `nats-${index}`,
      clientPort: await freePort(),
      clusterPort: await freePort(),
      monitorPort: await freePort(),
      dir: nodeDir,
    });
  }
  const layout: NatsClusterLayout = { name: options.name ?? "nats-tenancy", nodes: addresses };
  const nodes = addresses.map(
    (address) => new NatsNode(address, options.binary, render(address, layout)),
  );
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
    owned?.release();
  };
  const waitReady = async (ms = timeoutMs): Promise<void> => {
    await Promise.all(nodes.map((n) => n.waitReady(size - 1, ms)));
  };
  try {
    for (const node of nodes) node.start();
    await waitReady();
  } catch (error) {
    const tails = nodes
      .map((n) => `--- ${n.address.name}\n${n.process?.tail(20) ?? ""}`)
      .join("\n");
    await stop();
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${tails}`, {
      cause: error,
    });
  }
  return {
    layout,
    nodes,
    urls: nodes.map((n) => n.url),
    ports: addresses.flatMap((a) => [a.clientPort, a.clusterPort, a.monitorPort]),
    dir,
    waitReady,
    logTails: (lines = 40) =>
      nodes
        .map(
          (n) =>
            `--- ${n.address.name} (${n.process?.describeExit() ?? "not started"}), ${n.logFile}\n${n.process?.tail(lines) ?? ""}`,
        )
        .join("\n"),
    stop,
  };
}
