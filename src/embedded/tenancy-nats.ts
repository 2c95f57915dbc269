/**
 * A local NATS cluster configured the way the chart configures one: each server's own file
 * from the product's renderer, plus the files of the NATS config Secret (trust file, TLS
 * certificates, CA bundle) in a directory the servers read, as a Secret volume would hold them.
 */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import {
  NATS_CONFIG_FILES,
  renderServerConfig,
  type NatsConfigFiles,
  type ServerTls,
} from "../nats/server-config.ts";
import { startNatsCluster, type NatsCluster } from "./nats-cluster.ts";
import { ownedTempDir } from "./tempdir.ts";

export interface TenancyNatsOptions {
  binary: string;
  files: NatsConfigFiles;
  size?: number;
  jetstream?: { maxMemory: string; maxFile: string };
}

export interface TenancyNatsCluster extends NatsCluster {
  /** Where the Secret's files are (the mount). */
  secretDir: string;
  /** The CA bundle file clients use (NATS_CA_FILE). */
  caFile: string;
  /** Client URLs by host name, as the servers' certificates name them. */
  tlsUrls: string[];
  /** Replaces the Secret's files, as the kubelet swaps a Secret volume. */
  writeFiles: (files: NatsConfigFiles) => void;
  /** Makes every server re-read its configuration (what the chart's reloader does). */
  reload: () => void;
}

export async function startTenancyNats(options: TenancyNatsOptions): Promise<TenancyNatsCluster> {
  const mount = ownedTempDir("nats-secret");
  const file = (name: string): string => join(mount.dir, name);
  // Each file is replaced whole (write, then rename): a client re-reading its CA file
  // mid-update never sees half a bundle. The bundle goes first, so it already trusts whatever
  // the reload will present.
  const writeFiles = (files: NatsConfigFiles): void => {
    const order = [NATS_CONFIG_FILES.caBundle, ...Object.keys(files)];
    for (const name of new Set(order)) {
      const content = files[name as keyof NatsConfigFiles];
      const secret = name.endsWith(".key");
      writeFileSync(`${file(name)}.tmp`, content, { mode: secret ? 0o600 : 0o644 });
      renameSync(`${file(name)}.tmp`, file(name));
    }
  };
  writeFiles(options.files);
  const caFile = file(NATS_CONFIG_FILES.caBundle);
  const clientTls: ServerTls = {
    certFile: file(NATS_CONFIG_FILES.certificate),
    keyFile: file(NATS_CONFIG_FILES.key),
    caFile,
  };
  const routeTls: ServerTls = {
    certFile: file(NATS_CONFIG_FILES.routeCertificate),
    keyFile: file(NATS_CONFIG_FILES.routeKey),
    caFile,
  };
  let cluster: NatsCluster;
  try {
    cluster = await startNatsCluster({
      binary: options.binary,
      size: options.size ?? 3,
      config: (node, layout) => {
        mkdirSync(node.dir, { recursive: true });
        return renderServerConfig({
          serverName: node.name,
          listen: `127.0.0.1:${node.clientPort}`,
          monitor: `127.0.0.1:${node.monitorPort}`,
          cluster: {
            name: layout.name,
            listen: `127.0.0.1:${node.clusterPort}`,
            routes: layout.nodes
              .filter((p) => p.index !== node.index)
              .map((p) => `nats-route://localhost:${p.clusterPort}`),
            tls: routeTls,
          },
          trustInclude: relative(node.dir, file(NATS_CONFIG_FILES.trust)),
          dataDir: node.dir,
          clientTls,
          ...(options.jetstream ? { jetstream: options.jetstream } : {}),
        });
      },
    });
  } catch (error) {
    mount.release();
    throw error;
  }
  return {
    ...cluster,
    secretDir: mount.dir,
    caFile,
    tlsUrls: cluster.nodes.map((n) => `tls://localhost:${n.address.clientPort}`),
    writeFiles,
    reload: () => {
      for (const node of cluster.nodes) node.process?.signal("SIGHUP");
    },
    stop: async () => {
      await cluster.stop();
      mount.release();
    },
  };
}
