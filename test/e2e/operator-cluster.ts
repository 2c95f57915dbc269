/**
 * A 3-node cluster in operator mode with a full resolver, client and route TLS issued by the
 * operator's CA code, and JetStream: configured by the product's own renderer, as deployed
 * servers are. TLS material can be rewritten and reloaded (SIGHUP) to walk renewals.
 */
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  buildOperatorArtifacts,
  generateOperatorSeeds,
  loadOperatorIdentity,
  type OperatorArtifacts,
  type OperatorIdentity,
} from "../../src/accounts/identities.ts";
import { DAY_MS, caBundle, stepCa, type CaPolicy, type CaState } from "../../src/ca/authority.ts";
import { ensureLeaf, natsRouteLeaf, natsServerLeaf, type NatsNames } from "../../src/ca/leaves.ts";
import { startNatsCluster, type NatsCluster } from "../../src/embedded/nats-cluster.ts";
import { ownedTempDir } from "../../src/embedded/tempdir.ts";
import { renderServerConfig, type ServerTls } from "../../src/nats/server-config.ts";
import type { KeyAndCertificate } from "../../src/pki/certificates.ts";

export const TEST_CA_POLICY: CaPolicy = {
  caLifetimeMs: 30 * DAY_MS,
  overlapMs: 2 * DAY_MS,
  commonName: "nats-tenancy test CA",
};
export const TEST_NAMES: NatsNames = {
  service: "nats",
  headlessService: "nats-headless",
  statefulSet: "nats",
  namespace: "nats-tenancy-system",
  replicas: 3,
  clusterDomain: "cluster.local",
  loopback: true,
};
export const LEAF_LIFETIME_MS = 9 * DAY_MS;

export interface TlsMaterial {
  ca: CaState;
  server: KeyAndCertificate;
  route: KeyAndCertificate;
}

export interface OperatorCluster extends NatsCluster {
  identity: OperatorIdentity;
  artifacts: OperatorArtifacts;
  /** The CA bundle file clients use (NATS_CA_FILE). */
  caFile: string;
  tls: TlsMaterial;
  /** Writes new TLS material where the servers read it and makes every server reload. */
  reloadTls: (material: TlsMaterial) => void;
}

export async function issueTestTls(nowMs = Date.now()): Promise<TlsMaterial> {
  const { state } = await stepCa(undefined, TEST_CA_POLICY, nowMs, false);
  return {
    ca: state,
    server: (
      await ensureLeaf(undefined, natsServerLeaf(TEST_NAMES, LEAF_LIFETIME_MS), state, nowMs)
    ).leaf,
    route: (await ensureLeaf(undefined, natsRouteLeaf(TEST_NAMES, LEAF_LIFETIME_MS), state, nowMs))
      .leaf,
  };
}

export async function startOperatorCluster(
  binary: string,
  material?: TlsMaterial,
): Promise<OperatorCluster> {
  const identity = loadOperatorIdentity("nats-tenancy-test", generateOperatorSeeds());
  const artifacts = buildOperatorArtifacts(identity);
  const pki = ownedTempDir("pki");
  const clientTls: ServerTls = {
    certFile: join(pki.dir, "tls.crt"),
    keyFile: join(pki.dir, "tls.key"),
    caFile: join(pki.dir, "ca.crt"),
  };
  const routeTls: ServerTls = {
    certFile: join(pki.dir, "route.crt"),
    keyFile: join(pki.dir, "route.key"),
    caFile: clientTls.caFile,
  };
  let tls = material ?? (await issueTestTls());
  // Each file is replaced whole (write, then rename), as a Kubernetes Secret volume swaps its
  // files: a client re-reading its CA file mid-update must never see half a bundle. The
  // bundle goes first, so it already trusts whatever the reload will present.
  const put = (path: string, content: string, mode = 0o644): void => {
    writeFileSync(`${path}.tmp`, content, { mode });
    renameSync(`${path}.tmp`, path);
  };
  const write = (m: TlsMaterial): void => {
    put(clientTls.caFile, caBundle(m.ca));
    put(clientTls.certFile, m.server.certificatePem);
    put(clientTls.keyFile, m.server.privateKeyPem, 0o600);
    put(routeTls.certFile, m.route.certificatePem);
    put(routeTls.keyFile, m.route.privateKeyPem, 0o600);
  };
  write(tls);
  const cluster = await startNatsCluster({
    binary,
    size: 3,
    config: (node, layout) =>
      renderServerConfig({
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
        operatorJwt: artifacts.operatorJwt,
        systemAccount: identity.systemAccount.publicKey,
        systemAccountJwt: artifacts.systemAccountJwt,
        dataDir: node.dir,
        clientTls,
        jetstream: { maxMemory: "64MB", maxFile: "256MB" },
      }),
  });
  const result: OperatorCluster = {
    ...cluster,
    urls: cluster.nodes.map((n) => `tls://localhost:${n.address.clientPort}`),
    identity,
    artifacts,
    caFile: clientTls.caFile,
    tls,
    reloadTls: (m) => {
      tls = m;
      result.tls = m;
      write(m);
      for (const node of cluster.nodes) node.process?.signal("SIGHUP");
    },
    stop: async () => {
      await cluster.stop();
      pki.release();
    },
  };
  return result;
}
