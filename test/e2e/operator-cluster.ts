/**
 * A 3-node cluster in operator mode with a full resolver, client and route TLS from a test CA,
 * and JetStream: configured by the product's own renderer, as deployed servers are.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  buildOperatorArtifacts,
  generateOperatorSeeds,
  loadOperatorIdentity,
  type OperatorArtifacts,
  type OperatorIdentity,
} from "../../src/accounts/identities.ts";
import { startNatsCluster, type NatsCluster } from "../../src/embedded/nats-cluster.ts";
import { ownedTempDir } from "../../src/embedded/tempdir.ts";
import { renderServerConfig, type ServerTls } from "../../src/nats/server-config.ts";
import { createCa, issueLeaf } from "../../src/pki/certificates.ts";

export interface OperatorCluster extends NatsCluster {
  identity: OperatorIdentity;
  artifacts: OperatorArtifacts;
  caFile: string;
}

const DAY = 24 * 60 * 60 * 1000;

export async function startOperatorCluster(binary: string): Promise<OperatorCluster> {
  const identity = loadOperatorIdentity("nats-tenancy-test", generateOperatorSeeds());
  const artifacts = buildOperatorArtifacts(identity);
  const pki = ownedTempDir("pki");
  const ca = await createCa({ commonName: "nats-tenancy test CA", lifetimeMs: DAY });
  const leaf = await issueLeaf(ca, {
    commonName: "nats",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    server: true,
    client: true,
    lifetimeMs: DAY,
  });
  mkdirSync(pki.dir, { recursive: true });
  const tls: ServerTls = {
    certFile: join(pki.dir, "tls.crt"),
    keyFile: join(pki.dir, "tls.key"),
    caFile: join(pki.dir, "ca.crt"),
  };
  writeFileSync(tls.certFile, leaf.certificatePem);
  writeFileSync(tls.keyFile, leaf.privateKeyPem, { mode: 0o600 });
  writeFileSync(tls.caFile, ca.certificatePem);
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
            .map((p) => `nats-route://127.0.0.1:${p.clusterPort}`),
          tls,
        },
        operatorJwt: artifacts.operatorJwt,
        systemAccount: identity.systemAccount.publicKey,
        systemAccountJwt: artifacts.systemAccountJwt,
        dataDir: node.dir,
        clientTls: tls,
        jetstream: { maxMemory: "64MB", maxFile: "256MB" },
      }),
  });
  return {
    ...cluster,
    urls: cluster.nodes.map((n) => `tls://127.0.0.1:${n.address.clientPort}`),
    identity,
    artifacts,
    caFile: tls.caFile,
    stop: async () => {
      await cluster.stop();
      pki.release();
    },
  };
}
