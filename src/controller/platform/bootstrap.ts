/**
 * What must exist before any App is reconciled: the operator's identity (seeds in the key
 * store, JWTs signed once), the CA, and the NATS config Secret the servers mount (trust file,
 * server and route certificates, CA bundle). Runs on every start and every resync; when nothing
 * is due it writes nothing.
 */
import type { V1Secret } from "@kubernetes/client-node";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import {
  buildOperatorArtifacts,
  credsJwt,
  formatCreds,
  loadOperatorIdentity,
  type OperatorArtifacts,
  type OperatorIdentity,
} from "../../accounts/identities.ts";
import {
  OPERATOR_ENTRY,
  ensureOperatorSeeds,
  entryAccounts,
  saveOperatorKeys,
  type SecretStore,
} from "../../accounts/key-store.ts";
import {
  applyOperatorKeyStep,
  operatorKeyStage,
  operatorKeyStep,
  accountSignedBy,
  type OperatorKeyStep,
} from "../../accounts/operator-key-rotation.ts";
import { ROTATE_SIGNING_KEY_ANNOTATION } from "../../contract/credential-rotation.ts";
import { parseJwt } from "../../accounts/jwt.ts";
import { caBundle, type CaPolicy, type CaState } from "../../ca/authority.ts";
import { CA_ENTRY, ensureCa } from "../../ca/ca-store.ts";
import { KEYS_LABEL } from "../../accounts/kubernetes-secret-store.ts";
import {
  ensureLeaf,
  issuedByActive,
  natsRouteLeaf,
  natsServerLeaf,
  type NatsNames,
} from "../../ca/leaves.ts";
import { MANAGED_BY, applySecret, secretData } from "../../kube/apply-secret.ts";
import { JsonRequests, corePath } from "../../kube/json-requests.ts";
import { readSecretData, sameSecretData } from "../../kube/read-secret.ts";
import { NATS_CONFIG_FILES, renderNatsConfigFiles } from "../../nats/server-config.ts";
import { keyPairFrom } from "../../ca/tls-secret.ts";
import {
  readWebhookTls,
  ensureWebhook,
  type WebhookSettings,
} from "../../contract/webhook-registration.ts";

export interface BootstrapSettings {
  /** The operator's namespace: key store, CA and NATS config Secret. */
  namespace: string;
  /** The NATS operator's name (in its JWT). */
  operatorName: string;
  natsConfigSecret: string;
  natsNames: NatsNames;
  leafLifetimeMs: number;
  caPolicy: CaPolicy;
  /** The pod webhook's registration and certificate; absent: no webhook. */
  webhook?: WebhookSettings;
  /** The operator's signing key is replaced once this old (seconds); 0: only when asked. */
  operatorKeyMaxAgeSeconds?: number;
}

/** What the platform sees of the NATS servers, for the operator key's next step. */
export interface ServersSeen {
  /** The signing keys every server trusts; undefined: unknown (not asked yet, or not all answered). */
  trustedByAll?: string[];
  /** Each server's copy of an account (its resolver's), and how many servers there are. */
  accounts?: { lookup: (account: string) => Promise<string[]>; expected: number };
}

export interface Bootstrapped {
  identity: OperatorIdentity;
  artifacts: OperatorArtifacts;
  ca: CaState;
  /** Every CA a client may meet during a rotation (apps' ca.crt). */
  caBundle: string;
  /** The NATS servers' certificate in the config Secret: what each must present once reloaded. */
  natsServerCertificatePem: string;
  /** What was written, for the log: empty on a restart with everything in place. */
  changes: string[];
  /** Where a rotation of the operator's signing key stands; absent: none under way. */
  operatorKeyRotation?: NonNullable<ReturnType<typeof operatorKeyStage>>;
}

/**
 * The operator's identity or CA is missing while an installation exists: making new ones would
 * cut off every tenant, so the operator waits for the Secret to be restored.
 */
export class PlatformMissingError extends Error {
  override name = "PlatformMissingError";
}

/**
 * Throws PlatformMissingError if anything shows an installation was made with the identity or
 * CA that is now missing: the servers' config (its trust file or certificates) or stored accounts.
 * A fresh cluster has neither and bootstraps on its own.
 */
async function refuseOverInstallation(
  store: SecretStore,
  natsConfig: Record<string, string> | undefined,
  settings: BootstrapSettings,
  missing: { entry: string; what: string; startOver: string },
): Promise<void> {
  let accounts = 0;
  for await (const { name, data } of store.entries()) accounts += entryAccounts(name, data).length;
  if (!natsConfig && accounts === 0) return;
  const trusted = natsConfig?.[OPERATOR_JWT]
    ? ` the NATS servers trust operator ${parseJwt(natsConfig[OPERATOR_JWT]).sub},`
    : "";
  throw new PlatformMissingError(
    `the ${missing.what} Secret ${settings.namespace}/${missing.entry} is missing, but` +
      `${trusted} the NATS config Secret ${settings.natsConfigSecret} ${natsConfig ? "exists" : "is missing"} ` +
      `and ${String(accounts)} account${accounts === 1 ? "" : "s"} are stored: nothing new is made. ` +
      `Restore the Secret from a backup; or, to start over deliberately, ${missing.startOver}`,
  );
}

// Public JWTs kept beside the trust file so a restart compares instead of re-signing.
const OPERATOR_JWT = "operator.jwt";
const SYSTEM_ACCOUNT_JWT = "system-account.jwt";
const SYSTEM_USER_JWT = "system-user.jwt";

const OPERATOR_KEY_STEPS: Record<OperatorKeyStep, string> = {
  introduce: "a new key is trusted beside the current one; the NATS servers restart to load it",
  promote: "the new key signs now; every account is signed anew, the old key stays trusted",
  retire: "no account is signed by the old key any more: it leaves; the NATS servers restart",
  forget: "every NATS server runs without the old key: the rotation is done",
  count: "its age is counted from now for the schedule",
};

export async function bootstrap(
  cluster: ClusterAccess,
  store: SecretStore,
  settings: BootstrapSettings,
  nowMs = Date.now(),
  servers: ServersSeen = {},
): Promise<Bootstrapped> {
  const changes: string[] = [];
  const requests = new JsonRequests(cluster);
  const existing = await readSecretData(requests, settings.namespace, settings.natsConfigSecret);
  let seeds = await ensureOperatorSeeds(store, () =>
    refuseOverInstallation(store, existing, settings, {
      entry: OPERATOR_ENTRY,
      what: "operator identity",
      startOver:
        `delete the Secret ${settings.natsConfigSecret} and the Secrets labelled ` +
        `${KEYS_LABEL}=true in ${settings.namespace}; every app then gets new credentials`,
    }),
  );
  const request = (
    await requests.get<V1Secret>(corePath("secrets", settings.namespace, OPERATOR_ENTRY))
  ).metadata?.annotations?.[ROTATE_SIGNING_KEY_ANNOTATION];
  const step = await operatorKeyStep(seeds, {
    request,
    maxAgeSeconds: settings.operatorKeyMaxAgeSeconds ?? 0,
    nowMs,
    serversTrust: servers.trustedByAll,
    // Not connected, or a server did not answer: not known, so the old key stays.
    signedBy: (key) =>
      servers.accounts
        ? accountSignedBy(store, key, servers.accounts).catch(() => undefined)
        : Promise.resolve(undefined),
  });
  if (step) {
    const next = applyOperatorKeyStep(seeds, step, { request, nowMs });
    await saveOperatorKeys(store, seeds, next);
    seeds = next;
    changes.push(`operator signing key: ${OPERATOR_KEY_STEPS[step]}`);
  }
  const identity = loadOperatorIdentity(settings.operatorName, seeds);
  const stage = operatorKeyStage(seeds);

  const previousUserJwt = existing?.[SYSTEM_USER_JWT];
  const artifacts = buildOperatorArtifacts(
    identity,
    {
      ...(existing?.[OPERATOR_JWT] ? { operatorJwt: existing[OPERATOR_JWT] } : {}),
      ...(existing?.[SYSTEM_ACCOUNT_JWT] ? { systemAccountJwt: existing[SYSTEM_ACCOUNT_JWT] } : {}),
      ...(previousUserJwt
        ? { systemUserCreds: formatCreds(previousUserJwt, identity.systemUser) }
        : {}),
    },
    nowMs,
  );

  const serverSpec = natsServerLeaf(settings.natsNames, settings.leafLifetimeMs);
  const routeSpec = natsRouteLeaf(settings.natsNames, settings.leafLifetimeMs);
  const previousServer = keyPairFrom(
    existing,
    NATS_CONFIG_FILES.certificate,
    NATS_CONFIG_FILES.key,
  );
  const previousRoute = keyPairFrom(
    existing,
    NATS_CONFIG_FILES.routeCertificate,
    NATS_CONFIG_FILES.routeKey,
  );
  const { webhook } = settings;
  const previousWebhook = webhook
    ? await readWebhookTls(cluster, settings.namespace, webhook)
    : undefined;
  const ca = await ensureCa(
    store,
    settings.caPolicy,
    nowMs,
    (state) =>
      issuedByActive(previousServer, state) &&
      issuedByActive(previousRoute, state) &&
      (!webhook || issuedByActive(previousWebhook?.leaf, state)),
    () =>
      refuseOverInstallation(store, existing, settings, {
        entry: CA_ENTRY,
        what: "CA",
        startOver:
          `delete the Secret ${settings.natsConfigSecret}; every NATS client must then get ` +
          "the new CA bundle (restart the app pods)",
      }),
  );
  changes.push(...ca.steps.map((step) => `CA ${step ?? "changed"}`));
  const server = await ensureLeaf(previousServer, serverSpec, ca.state, nowMs);
  const route = await ensureLeaf(previousRoute, routeSpec, ca.state, nowMs);
  if (server.reason) changes.push(`NATS server certificate: ${server.reason}`);
  if (route.reason) changes.push(`NATS route certificate: ${route.reason}`);

  const bundle = caBundle(ca.state);
  const systemUserJwt = credsJwt(artifacts.systemUserCreds);
  const desired: Record<string, string> = {
    ...renderNatsConfigFiles({
      operatorJwt: artifacts.operatorJwt,
      systemAccount: identity.systemAccount.publicKey,
      systemAccountJwt: artifacts.systemAccountJwt,
      server: server.leaf,
      route: route.leaf,
      caBundle: bundle,
    }),
    [OPERATOR_JWT]: artifacts.operatorJwt,
    [SYSTEM_ACCOUNT_JWT]: artifacts.systemAccountJwt,
    [SYSTEM_USER_JWT]: systemUserJwt ?? "",
  };
  if (!sameSecretData(existing, desired)) {
    await applySecret(requests, {
      apiVersion: "v1",
      kind: "Secret",
      type: "Opaque",
      metadata: {
        name: settings.natsConfigSecret,
        namespace: settings.namespace,
        labels: { ...MANAGED_BY, "nats-tenancy.io/nats-config": "true" },
      },
      data: secretData(desired),
    });
    changes.push(`NATS config Secret ${settings.natsConfigSecret} written`);
  }
  if (webhook) {
    changes.push(
      ...(await ensureWebhook({
        cluster,
        namespace: settings.namespace,
        settings: webhook,
        previous: previousWebhook ?? {},
        ca: ca.state,
        caBundle: bundle,
        leafLifetimeMs: settings.leafLifetimeMs,
        loopback: settings.natsNames.loopback ?? false,
        nowMs,
      })),
    );
  }
  return {
    identity,
    artifacts,
    ca: ca.state,
    caBundle: bundle,
    natsServerCertificatePem: server.leaf.certificatePem,
    changes,
    ...(stage ? { operatorKeyRotation: stage } : {}),
  };
}
