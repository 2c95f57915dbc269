/**
 * A 3-node cluster in operator mode with a full resolver, client and route TLS issued by the
 * operator's CA code, and JetStream: configured by the product's own renderer, as deployed
 * servers are. TLS material can be rewritten and reloaded (SIGHUP) to walk renewals.
 */
import {
  buildOperatorArtifacts,
  generateOperatorSeeds,
  loadOperatorIdentity,
  type OperatorArtifacts,
  type OperatorIdentity,
} from "../../src/accounts/identities.ts";
import { DAY_MS, caBundle, stepCa, type CaPolicy, type CaState } from "../../src/ca/authority.ts";
import { ensureLeaf, natsRouteLeaf, natsServerLeaf, type NatsNames } from "../../src/ca/leaves.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { mintAppAccount, type MintedAccount } from "../../src/accounts/app-account.ts";
import type { AccountSpec } from "../../src/accounts/spec.ts";
import { ResolverClient, ResolverTimeoutError } from "../../src/accounts/resolver-client.ts";
import { startTenancyNats, type TenancyNatsCluster } from "../../src/embedded/tenancy-nats.ts";
import { renderNatsConfigFiles, type NatsConfigFiles } from "../../src/nats/server-config.ts";
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

export interface OperatorCluster extends TenancyNatsCluster {
  identity: OperatorIdentity;
  artifacts: OperatorArtifacts;
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

/** The NATS config Secret's files for this identity and TLS material. */
export function natsFiles(
  artifacts: OperatorArtifacts,
  identity: OperatorIdentity,
  m: TlsMaterial,
): NatsConfigFiles {
  return renderNatsConfigFiles({
    operatorJwt: artifacts.operatorJwt,
    systemAccount: identity.systemAccount.publicKey,
    systemAccountJwt: artifacts.systemAccountJwt,
    server: m.server,
    route: m.route,
    caBundle: caBundle(m.ca),
  });
}

export async function startOperatorCluster(
  binary: string,
  material?: TlsMaterial,
): Promise<OperatorCluster> {
  const identity = loadOperatorIdentity("nats-tenancy-test", generateOperatorSeeds());
  const artifacts = buildOperatorArtifacts(identity);
  const tls = material ?? (await issueTestTls());
  const cluster = await startTenancyNats({
    binary,
    files: natsFiles(artifacts, identity, tls),
    jetstream: { maxMemory: "64MB", maxFile: "256MB" },
  });
  const result: OperatorCluster = {
    ...cluster,
    urls: cluster.tlsUrls,
    identity,
    artifacts,
    tls,
    reloadTls: (m) => {
      result.tls = m;
      cluster.writeFiles(natsFiles(artifacts, identity, m));
      cluster.reload();
    },
  };
  try {
    await untilEveryServerAnswers(result);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return result;
}

/** A resolver client of the cluster's system user, expecting all three servers. */
export function connectResolver(cluster: OperatorCluster): Promise<ResolverClient> {
  return ResolverClient.connect({
    servers: cluster.urls,
    creds: cluster.artifacts.systemUserCreds,
    caFile: cluster.caFile,
    expectedServers: 3,
  });
}

/**
 * Routes can be up before each server's system subscriptions have reached the others, and a
 * request then misses a server (seen: a first push acknowledged by two of three). Tests start
 * once every server answers the resolver's requests.
 */
async function untilEveryServerAnswers(cluster: OperatorCluster): Promise<void> {
  const resolver = await connectResolver(cluster);
  try {
    await waitUntil(
      "every server answering the resolver",
      async () => (await resolver.list()).size === 3,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } finally {
    await resolver.close();
  }
}

/** Mints an app account for the cluster's operator and pushes it to every server. */
export async function pushTestAccount(
  cluster: OperatorCluster,
  spec: AccountSpec,
): Promise<MintedAccount> {
  const resolver = await connectResolver(cluster);
  try {
    const account = mintAppAccount(spec, cluster.identity);
    // A server of a cluster just started may still be joining it, or slow on a loaded machine:
    // the push is idempotent, so it goes again until all three acknowledge.
    await waitUntil(
      "every server acknowledges the test account",
      async () => {
        try {
          await resolver.push(account.stored.accountJwt, cluster.identity);
          return true;
        } catch (error) {
          if (error instanceof ResolverTimeoutError) return false;
          throw error;
        }
      },
      { timeoutMs: 30_000 },
    );
    return account;
  } finally {
    await resolver.close();
  }
}
