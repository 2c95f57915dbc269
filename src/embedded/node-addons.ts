/**
 * What a cluster has besides its processes: cluster DNS (CoreDNS behind the kube-dns Service)
 * and a default StorageClass served by kube-controller-manager's hostPath provisioner.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import type { NodeNetwork } from "./node-host.ts";

export const STORAGE_CLASS = "standard";

// Only the cluster domain and reverse zones are answered; every other name gets NXDOMAIN from
// its own server block (CoreDNS orders plugins at compile time, `template` before
// `kubernetes`), and there is no `forward`, so no query leaves the machine. No cache and ttl 0:
// a new pod's name must resolve at once, not after a cached NXDOMAIN expires.
function corefile(network: NodeNetwork): string {
  const zones = `${network.clusterDomain} in-addr.arpa ip6.arpa`;
  return [
    `${network.clusterDomain}:53 in-addr.arpa:53 ip6.arpa:53 {`,
    "    errors",
    "    health {",
    "        lameduck 1s",
    "    }",
    "    ready",
    `    kubernetes ${zones} {`,
    "        pods insecure",
    "        ttl 0",
    "    }",
    "    reload 2s",
    "}",
    ".:53 {",
    "    errors",
    "    template ANY ANY {",
    "        rcode NXDOMAIN",
    "    }",
    "}",
    "",
  ].join("\n");
}

export function nodeAddons(network: NodeNetwork, corednsImage: string): KubernetesObject[] {
  const ns = "kube-system";
  const labels = { "k8s-app": "kube-dns" };
  return [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "coredns", namespace: ns } },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "system:coredns" },
      rules: [
        {
          apiGroups: [""],
          resources: ["endpoints", "services", "pods", "namespaces"],
          verbs: ["list", "watch"],
        },
        {
          apiGroups: ["discovery.k8s.io"],
          resources: ["endpointslices"],
          verbs: ["list", "watch"],
        },
      ],
    } as KubernetesObject,
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRoleBinding",
      metadata: { name: "system:coredns" },
      roleRef: {
        apiGroup: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        name: "system:coredns",
      },
      subjects: [{ kind: "ServiceAccount", name: "coredns", namespace: ns }],
    } as KubernetesObject,
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "coredns", namespace: ns },
      data: { Corefile: corefile(network) },
    } as KubernetesObject,
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "coredns", namespace: ns, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: "coredns",
            dnsPolicy: "Default",
            priorityClassName: "system-cluster-critical",
            containers: [
              {
                name: "coredns",
                image: corednsImage,
                imagePullPolicy: "Never",
                args: ["-conf", "/etc/coredns/Corefile"],
                ports: [
                  { name: "dns", containerPort: 53, protocol: "UDP" },
                  { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                ],
                readinessProbe: { httpGet: { path: "/ready", port: 8181 }, periodSeconds: 1 },
                livenessProbe: { httpGet: { path: "/health", port: 8080 } },
                volumeMounts: [{ name: "config", mountPath: "/etc/coredns", readOnly: true }],
              },
            ],
            volumes: [{ name: "config", configMap: { name: "coredns" } }],
          },
        },
      },
    } as KubernetesObject,
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "kube-dns", namespace: ns, labels },
      spec: {
        clusterIP: network.dnsIp,
        selector: labels,
        ports: [
          { name: "dns", port: 53, protocol: "UDP" },
          { name: "dns-tcp", port: 53, protocol: "TCP" },
        ],
      },
    } as KubernetesObject,
    {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: {
        name: STORAGE_CLASS,
        annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
      },
      // kube-controller-manager's own provisioner (--enable-hostpath-provisioner): directories
      // under /tmp/hostpath_pv, removed when their claim is deleted.
      provisioner: "kubernetes.io/host-path",
      reclaimPolicy: "Delete",
      volumeBindingMode: "Immediate",
    } as KubernetesObject,
  ];
}
