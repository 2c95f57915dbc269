/**
 * A real single-node Kubernetes cluster on this machine: etcd and kube-apiserver (on the node's
 * bridge, so pods reach them), kube-controller-manager (with its hostPath provisioner),
 * kube-scheduler, containerd with runc and a CNI bridge, kubelet, kube-proxy (iptables) and
 * CoreDNS. Images are built here and imported; nothing is pulled.
 *
 * One per host (src/embedded/host-lock.ts). It needs root. Start first restores whatever a dead
 * earlier run left on the host; stop, and the owner's exit on a signal, restore it too.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AppsV1Api, CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { applyObjects } from "../kube/apply-objects.ts";
import { issueLeaf } from "../pki/certificates.ts";
import { startControlPlane, type ControlPlane } from "./control-plane.ts";
import { acquireHostLock } from "./host-lock.ts";
import { openUpProvisionedVolumes } from "./node-volumes.ts";
import { nodeAddons } from "./node-addons.ts";
import {
  cniConfig,
  containerdConfig,
  kubeletConfig,
  kubeProxyConfig,
  nodePaths,
} from "./node-config.ts";
import { cleanHost, NODE_NETWORK, prepareHost, type NodeNetwork } from "./node-host.ts";
import {
  baseImageNames,
  baseImages,
  buildImages,
  importImages,
  type BaseImageNames,
} from "./node-images.ts";
import type { ImageSpec } from "./oci-image.ts";
import { cleanUpOnExit, logTails, ManagedProcess } from "./process.ts";
import type { Toolchain } from "./toolchain.ts";
import { waitUntil } from "./wait.ts";

export const NODE_NAME = "nats-tenancy-node";
export const NODE_STATE_DIR = "/tmp/nats-tenancy-node";
export const NODE_LOCK_FILE = "/run/lock/nats-tenancy-node.lock";
const DAY_MS = 24 * 60 * 60 * 1000;

export interface NodeClusterOptions {
  toolchain: Toolchain;
  /** Images besides the base ones (sandbox, CoreDNS, nats-servers), e.g. a test app. */
  images?: ImageSpec[];
  /** Image archives built elsewhere (the operator image, from its Dockerfile). */
  archives?: { name: string; archive: string }[];
  startTimeoutMs?: number;
  /** How long to wait for another process's node to stop. */
  lockTimeoutMs?: number;
  /** The caller holds the host lock (a test that owns the host across several nodes' lives). */
  lockHeldByCaller?: boolean;
  log?: (line: string) => void;
}

export interface NodeCluster {
  controlPlane: ControlPlane;
  kubeconfigPath: string;
  kubeConfig: () => KubeConfig;
  network: NodeNetwork;
  nodeName: string;
  stateDir: string;
  /** The base images' names by role (extra images keep the names their specs gave). */
  images: BaseImageNames;
  processes: ManagedProcess[];
  /** Seconds from the start call to each milestone. */
  timings: Record<string, number>;
  logTails: (lines?: number) => string;
  stop: () => Promise<void>;
}

const REQUIRED = [
  { path: "/usr/sbin/runc", apt: "runc" },
  { path: "/usr/lib/cni/bridge", apt: "containernetworking-plugins" },
  { path: "/usr/lib/cni/host-local", apt: "containernetworking-plugins" },
  { path: "/usr/sbin/iptables", apt: "iptables" },
  { path: "/usr/sbin/conntrack", apt: "conntrack" },
  { path: "/usr/sbin/nft", apt: "nftables" },
  { path: "/usr/sbin/ip", apt: "iproute2" },
  { path: "/usr/bin/flock", apt: "util-linux" },
  { path: "/usr/bin/setpriv", apt: "util-linux" },
];

/** Why a node cannot run on this machine (root, packages), or undefined when it can. */
export function nodeUnavailableReason(
  host = { uid: process.getuid?.(), exists: existsSync },
): string | undefined {
  if (host.uid !== 0) return "the test node needs root (kubelet, containerd, iptables)";
  const missing = REQUIRED.filter((r) => !host.exists(r.path));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((m) => m.apt))].join(" ");
    return (
      `the test node needs ${missing.map((m) => m.path).join(", ")}: ` +
      `install them with 'apt-get install ${packages}'`
    );
  }
  return undefined;
}

export async function startNodeCluster(options: NodeClusterOptions): Promise<NodeCluster> {
  const reason = nodeUnavailableReason();
  if (reason) throw new Error(reason);
  const started = Date.now();
  const timings: Record<string, number> = {};
  const mark = (what: string): void => {
    timings[what] = (Date.now() - started) / 1000;
  };
  const log = options.log ?? (() => undefined);
  const timeoutMs = options.startTimeoutMs ?? 120_000;
  const tools = options.toolchain;
  const network = NODE_NETWORK;
  const stateDir = NODE_STATE_DIR;

  const lock = options.lockHeldByCaller
    ? { release: () => Promise.resolve() }
    : await acquireHostLock(NODE_LOCK_FILE, {
        timeoutMs: options.lockTimeoutMs ?? 15 * 60_000,
        log,
      });
  mark("lock");
  const cancelExitCleanup = cleanUpOnExit(() => {
    cleanHost(stateDir);
  });
  const processes: ManagedProcess[] = [];
  let controlPlane: ControlPlane | undefined;
  let volumes: { stop: () => void } | undefined;
  const stop = async (): Promise<void> => {
    volumes?.stop();
    // Every process at once: graceful stops are pointless, the state is thrown away.
    await Promise.all([...processes, ...(controlPlane?.processes ?? [])].map((p) => p.kill()));
    try {
      cleanHost(stateDir);
    } finally {
      cancelExitCleanup();
      await lock.release();
    }
  };

  try {
    // Whatever a dead earlier owner left (its shims and pods outlive it) goes first.
    cleanHost(stateDir);
    mark("host cleaned");
    prepareHost(stateDir, network);
    mark("host prepared");
    const images = baseImageNames(tools);
    const paths = nodePaths(stateDir, images.pause);
    const logs = join(stateDir, "logs");
    const pki = join(stateDir, "pki");
    for (const dir of [
      logs,
      pki,
      paths.cniConfDir,
      join(stateDir, "run"),
      join(stateDir, "kubelet"),
    ]) {
      mkdirSync(dir, { recursive: true });
    }
    const write = (path: string, content: string): string => {
      writeFileSync(path, content, { mode: 0o600 });
      return path;
    };
    write(join(paths.cniConfDir, "10-nats-tenancy-node.conflist"), cniConfig(paths, network));
    const start = (
      name: string,
      command: string,
      args: string[],
      env?: NodeJS.ProcessEnv,
    ): ManagedProcess => {
      const p = ManagedProcess.start({
        name,
        command,
        args,
        env,
        logFile: join(logs, `${name}.log`),
      });
      processes.push(p);
      return p;
    };

    const containerd = start(
      "containerd",
      join(tools.containerdDir, "containerd"),
      ["--config", write(join(stateDir, "containerd.toml"), containerdConfig(paths))],
      // containerd finds its runc shim on PATH.
      { ...process.env, PATH: `${tools.containerdDir}:${process.env.PATH ?? ""}` },
    );
    const ctr = join(tools.containerdDir, "ctr");
    const imported = (async () => {
      const archives = await buildImages([...baseImages(tools, images), ...(options.images ?? [])]);
      mark("images built");
      await waitUntil(
        "containerd socket",
        () => Promise.resolve(existsSync(paths.containerdSocket)),
        {
          timeoutMs,
          processes: [containerd],
          intervalMs: 50,
        },
      );
      await importImages(ctr, paths.containerdSocket, [...archives, ...(options.archives ?? [])]);
      mark("images imported");
    })();
    imported.catch(() => undefined); // awaited below; this only keeps an early failure handled

    controlPlane = await startControlPlane({
      toolchain: tools,
      dir: join(stateDir, "control-plane"),
      startTimeoutMs: timeoutMs,
      node: network,
    });
    mark("api server ready");
    const cp = controlPlane;
    const caFile = cp.caFile;
    const serving = await issueLeaf(cp.ca, {
      commonName: NODE_NAME,
      dnsNames: [NODE_NAME],
      ipAddresses: [network.address],
      server: true,
      lifetimeMs: 30 * DAY_MS,
    });
    const [managerKubeconfig, schedulerKubeconfig, proxyKubeconfig, kubeletKubeconfig] =
      await Promise.all([
        // One system:masters identity: per-controller service-account credentials delay every
        // controller's start by seconds on two cores.
        cp.kubeconfigFor("system:kube-controller-manager", "system:masters"),
        cp.kubeconfigFor("system:kube-scheduler"),
        cp.kubeconfigFor("system:kube-proxy"),
        cp.kubeconfigFor(`system:node:${NODE_NAME}`, "system:nodes"),
      ]);
    const controllerFlags = (kubeconfig: string): string[] => [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      "--bind-address=127.0.0.1",
      "--leader-elect=false",
      "--profiling=false",
      "--v=0",
    ];
    start("kube-controller-manager", tools.kubeControllerManager, [
      ...controllerFlags(managerKubeconfig),
      `--service-account-private-key-file=${cp.serviceAccountKeyFile}`,
      `--root-ca-file=${caFile}`,
      "--allocate-node-cidrs=false",
      "--enable-hostpath-provisioner=true",
    ]);
    start("kube-scheduler", tools.kubeScheduler, controllerFlags(schedulerKubeconfig));

    // Cluster DNS and storage are objects; their pods wait for the node.
    const kc = cp.kubeConfig();
    await applyObjects(kc, nodeAddons(network, images.coredns), "nats-tenancy-node");
    volumes = openUpProvisionedVolumes(kc, log);

    await imported;
    const kubelet = start("kubelet", tools.kubelet, [
      `--config=${write(
        join(stateDir, "kubelet.json"),
        kubeletConfig(paths, network, {
          caFile,
          servingCert: write(join(pki, "kubelet.crt"), serving.certificatePem),
          servingKey: write(join(pki, "kubelet.key"), serving.privateKeyPem),
        }),
      )}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--root-dir=${join(stateDir, "kubelet")}`,
      `--cert-dir=${join(stateDir, "kubelet", "pki")}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${network.address}`,
      "--v=0",
    ]);
    const proxy = start("kube-proxy", tools.kubeProxy, [
      `--config=${write(join(stateDir, "kube-proxy.json"), kubeProxyConfig(network, proxyKubeconfig, NODE_NAME))}`,
      "--v=0",
    ]);

    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const all = [...processes, ...cp.processes];
    await waitUntil(
      `node ${NODE_NAME} Ready`,
      async () => {
        const node = await core.readNode({ name: NODE_NAME });
        return (
          node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false
        );
      },
      { timeoutMs, processes: all },
    );
    mark("node ready");
    await waitUntil(
      "CoreDNS available",
      async () => {
        const deployment = await apps.readNamespacedDeployment({
          name: "coredns",
          namespace: "kube-system",
        });
        return (deployment.status?.availableReplicas ?? 0) >= 1;
      },
      { timeoutMs, processes: [kubelet, proxy, containerd] },
    );
    mark("dns ready");
    const waited = timings.lock ?? 0;
    log(
      `node cluster up in ${((timings["dns ready"] ?? 0) - waited).toFixed(1)} s` +
        (waited >= 1 ? ` (after ${waited.toFixed(1)} s waiting for another run's node)` : ""),
    );

    return {
      controlPlane: cp,
      kubeconfigPath: cp.kubeconfigPath,
      kubeConfig: () => cp.kubeConfig(),
      network,
      nodeName: NODE_NAME,
      stateDir,
      images,
      processes,
      timings,
      logTails: (lines) => logTails([...cp.processes, ...processes], lines),
      stop,
    };
  } catch (error) {
    try {
      await stop();
    } catch (cleanupError) {
      // Both matter: why the node did not start, and what it left on the host.
      throw new AggregateError(
        [error, cleanupError],
        "the test node failed to start and to clean up",
        { cause: cleanupError },
      );
    }
    throw error;
  }
}
