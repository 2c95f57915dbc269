/**
 * Everything the operator needs, on loopback: the control plane with the App CRD and the
 * operator's namespace, and a NATS cluster configured from the NATS config Secret exactly as
 * the chart mounts it. Bootstrap runs first because the servers cannot start without that
 * Secret; the operator's own bootstrap then finds everything in place.
 */
import { NO_CEILINGS } from "../accounts/ceilings.ts";
import { CoreV1Api } from "@kubernetes/client-node";
import { KubernetesSecretStore } from "../accounts/kubernetes-secret-store.ts";
import { DEFAULT_CREDENTIAL_POLICY } from "../accounts/credential-policy.ts";
import { DAY_MS, DEFAULT_CA_POLICY } from "../ca/authority.ts";
import type { ControllerSettings } from "../controller/leader-loops.ts";
import { bootstrap } from "../controller/platform/bootstrap.ts";
import { installAppManifests } from "./install-app-manifests.ts";
import { readSecretData } from "../kube/read-secret.ts";
import { NATS_CONFIG_FILES, type NatsConfigFiles } from "../nats/server-config.ts";
import { startControlPlane, type ControlPlane } from "./control-plane.ts";
import { startTenancyNats, type TenancyNatsCluster } from "./tenancy-nats.ts";
import type { Toolchain } from "./toolchain.ts";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import { JsonRequests } from "../kube/json-requests.ts";

export const LOCAL_NAMESPACE = "nats-tenancy-system";

export interface LocalStack {
  controlPlane: ControlPlane;
  nats: TenancyNatsCluster;
  /** The operator's settings for this stack (URLs, namespace, loopback certificate names). */
  settings: ControllerSettings;
  /** Copies the NATS config Secret to the servers' files and makes them reload. */
  syncNatsConfig: () => Promise<void>;
  logTails: (lines?: number) => string;
  stop: () => Promise<void>;
}

export function localSettings(namespace: string, replicas: number): ControllerSettings {
  return {
    namespace,
    operatorName: "nats-tenancy",
    natsConfigSecret: "nats-tenancy-nats-config",
    natsNames: {
      service: "nats",
      headlessService: "nats-headless",
      statefulSet: "nats",
      namespace,
      replicas,
      clusterDomain: "cluster.local",
      loopback: true,
    },
    leafLifetimeMs: 90 * DAY_MS,
    caPolicy: DEFAULT_CA_POLICY,
    natsUrls: [],
    appUrls: { url: "" },
    expectedServers: replicas,
    resyncMs: 300_000,
    concurrency: 8,
    ceilings: NO_CEILINGS,
    credentials: DEFAULT_CREDENTIAL_POLICY,
  };
}

async function natsConfigFiles(
  cluster: ClusterAccess,
  settings: ControllerSettings,
): Promise<NatsConfigFiles> {
  const data = await readSecretData(
    new JsonRequests(cluster),
    settings.namespace,
    settings.natsConfigSecret,
  );
  if (!data) throw new Error(`Secret ${settings.natsConfigSecret} was not written`);
  const files = {} as NatsConfigFiles;
  for (const name of Object.values(NATS_CONFIG_FILES)) {
    const content = data[name];
    if (content === undefined) throw new Error(`${settings.natsConfigSecret} lacks ${name}`);
    files[name] = content;
  }
  return files;
}

export async function startLocalStack(options: {
  toolchain: Toolchain;
  natsBinary: string;
  namespace?: string;
  replicas?: number;
  /** Runs once the operator's namespace exists, before anything is in it (a key restore). */
  beforeBootstrap?: (controlPlane: ControlPlane, namespace: string) => Promise<void>;
}): Promise<LocalStack> {
  const namespace = options.namespace ?? LOCAL_NAMESPACE;
  const replicas = options.replicas ?? 3;
  const controlPlane = await startControlPlane({ toolchain: options.toolchain });
  try {
    const kc = controlPlane.kubeConfig();
    await installAppManifests(kc);
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    await options.beforeBootstrap?.(controlPlane, namespace);
    const base = localSettings(namespace, replicas);
    const cluster = controlPlane.access();
    await bootstrap(cluster, new KubernetesSecretStore(cluster, namespace), base);
    const nats = await startTenancyNats({
      binary: options.natsBinary,
      files: await natsConfigFiles(cluster, base),
      size: replicas,
      jetstream: { maxMemory: "64MB", maxFile: "256MB" },
    });
    const settings: ControllerSettings = {
      ...base,
      natsUrls: nats.tlsUrls,
      appUrls: { url: nats.tlsUrls[0] ?? "" },
    };
    return {
      controlPlane,
      nats,
      settings,
      syncNatsConfig: async () => {
        nats.writeFiles(await natsConfigFiles(cluster, settings));
        nats.reload();
      },
      logTails: (lines) => `${controlPlane.logTails(lines)}\n${nats.logTails(lines)}`,
      stop: async () => {
        await nats.stop();
        await controlPlane.stop();
      },
    };
  } catch (error) {
    await controlPlane.stop();
    throw error;
  }
}
