/**
 * Configuration files of the test node's components: containerd, the CNI network, kubelet and
 * kube-proxy. Every path points into the node's state directory and every listener at loopback
 * or the node's bridge address.
 */
import type { NodeNetwork } from "./node-host.ts";

export interface NodePaths {
  stateDir: string;
  containerdSocket: string;
  cniConfDir: string;
  /** The pod sandbox image; containerd tries to pull (and fails) if no imported image has this name. */
  pauseImage: string;
}

export function nodePaths(stateDir: string, pauseImage: string): NodePaths {
  return {
    stateDir,
    containerdSocket: `${stateDir}/run/containerd.sock`,
    cniConfDir: `${stateDir}/cni/net.d`,
    pauseImage,
  };
}

/** containerd 2.x (config version 3) with its CRI plugin; runc and the CNI plugins from Debian. */
export function containerdConfig(paths: NodePaths): string {
  const s = paths.stateDir;
  return `version = 3
root = "${s}/containerd/root"
state = "${s}/containerd/state"

[grpc]
  address = "${paths.containerdSocket}"
[ttrpc]
  address = "${paths.containerdSocket}.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${s}/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${paths.pauseImage}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower the sandbox's oom_score_adj to -998.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "${s}/run/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${paths.cniConfDir}"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
`;
}

/** A bridge with the node's address as gateway; no masquerade (nothing is to leave the bridge). */
export function cniConfig(paths: NodePaths, network: NodeNetwork): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "nats-tenancy-node",
    plugins: [
      {
        type: "bridge",
        bridge: network.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: `${paths.stateDir}/cni/ipam`,
          ranges: [[{ subnet: network.podCidr, gateway: network.address }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
    ],
  });
}

export interface KubeletFiles {
  caFile: string;
  servingCert: string;
  servingKey: string;
}

/** KubeletConfiguration (JSON is YAML): cgroupfs, no host DNS in pods, images never collected. */
export function kubeletConfig(paths: NodePaths, network: NodeNetwork, files: KubeletFiles): string {
  return JSON.stringify({
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    cgroupDriver: "cgroupfs",
    // 1.35+ refuses cgroup v1 hosts (this machine's kind) unless told otherwise.
    failCgroupV1: false,
    containerRuntimeEndpoint: `unix://${paths.containerdSocket}`,
    address: network.address,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort: 10248,
    tlsCertFile: files.servingCert,
    tlsPrivateKeyFile: files.servingKey,
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: files.caFile },
    },
    authorization: { mode: "Webhook" },
    clusterDomain: network.clusterDomain,
    clusterDNS: [network.dnsIp],
    // No host nameserver or search domain reaches a pod.
    resolvConf: "",
    failSwapOn: false,
    staticPodPath: "",
    serializeImagePulls: false,
    // The images were imported, not pulled: collecting one would break every pod that uses it.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: {
      "memory.available": "100Mi",
      "nodefs.available": "1%",
      "imagefs.available": "1%",
      "nodefs.inodesFree": "1%",
    },
    maxPods: 110,
    podPidsLimit: -1,
    syncFrequency: "10s",
    nodeStatusReportFrequency: "10s",
    volumeStatsAggPeriod: "0s",
    volumePluginDir: `${paths.stateDir}/kubelet/volume-plugins`,
    podLogsDir: `${paths.stateDir}/kubelet/pod-logs`,
  });
}

export function kubeProxyConfig(
  network: NodeNetwork,
  kubeconfig: string,
  nodeName: string,
): string {
  return JSON.stringify({
    apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
    kind: "KubeProxyConfiguration",
    mode: "iptables",
    clientConnection: { kubeconfig },
    hostnameOverride: nodeName,
    clusterCIDR: network.podCidr,
    detectLocalMode: "ClusterCIDR",
    metricsBindAddress: "127.0.0.1:10249",
    healthzBindAddress: "127.0.0.1:10256",
    nodePortAddresses: [`${network.address}/32`],
    // Zeros leave the host's conntrack sysctls alone.
    conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: "0s", tcpCloseWaitTimeout: "0s" },
    iptables: {
      localhostNodePorts: false,
      masqueradeAll: false,
      syncPeriod: "30s",
      minSyncPeriod: "1s",
    },
  });
}
