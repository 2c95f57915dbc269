/**
 * A Kubernetes control plane: etcd and kube-apiserver, with client-certificate auth for an
 * admin (system:masters) and RBAC. Alone (envtest-style, on loopback) nothing runs Pods and
 * namespaces never finish terminating; with `node` it is the API server of the test node
 * (src/embedded/node-cluster.ts), listening on the node's bridge so pods reach it.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import {
  createCa,
  generateSigningKeyPem,
  issueLeaf,
  type KeyAndCertificate,
} from "../pki/certificates.ts";
import { freePort } from "./ports.ts";
import { logTails, ManagedProcess } from "./process.ts";
import { ownedTempDir } from "./tempdir.ts";
import { waitUntil } from "./wait.ts";
import type { Toolchain } from "./toolchain.ts";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import { kubeconfigFileAccess } from "../kube/kubeconfig-access.ts";

export interface ControlPlaneOptions {
  toolchain: Pick<Toolchain, "etcd" | "kubeApiserver">;
  /** Directory for data, certificates and logs; a temporary one when omitted (removed on stop). */
  dir?: string;
  startTimeoutMs?: number;
  /** Serve a real node: listen on its bridge address, with service accounts, Node authorization and kubelet access. */
  node?: NodeApiSettings;
}

export interface NodeApiSettings {
  /** The node's bridge address: the API server binds and advertises it. */
  address: string;
  serviceCidr: string;
  /** The first service address, the `kubernetes` Service's ClusterIP (in the serving certificate). */
  serviceIp: string;
  clusterDomain: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  kubeconfigPath: string;
  kubeConfig: () => KubeConfig;
  /** The same cluster as the operator reaches it (new pooled connections on every call). */
  access: () => ClusterAccess;
  /** The CA that signed the API server's certificate (for webhooks' clients, kubeconfigs). */
  ca: KeyAndCertificate;
  /** That CA's certificate as a file, for the node's components. */
  caFile: string;
  /**
   * A kubeconfig file for another identity (a client certificate with `user` as CN and `group`
   * as O): lets a test tell the operator's requests from its own in the audit log.
   */
  kubeconfigFor: (user: string, group?: string) => Promise<string>;
  /** The key that signs service-account tokens (the controller-manager signs with it too). */
  serviceAccountKeyFile: string;
  /** JSON lines, one per write request (create, update, patch, delete) the API server served. */
  auditLog: string;
  processes: ManagedProcess[];
  /** Every port it listens on (for leak checks). */
  ports: number[];
  dir: string;
  logTails: (lines?: number) => string;
  /** Kills one of the two (an outage: no graceful shutdown) and starts it again on its data. */
  restart: (component: "etcd" | "kube-apiserver") => Promise<void>;
  stop: () => Promise<void>;
}

const DAY_MS = 24 * 60 * 60 * 1000;

function httpGet(
  url: string,
  tls?: { ca: string; cert: string; key: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith("https:") ? httpsRequest : httpRequest;
    const req = request(url, { ...tls, timeout: 2000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

// Writes, and reads of single Secrets, at Metadata level: enough to count who changed what and
// who read which keys, without logging bodies.
const AUDIT_POLICY = [
  "apiVersion: audit.k8s.io/v1",
  "kind: Policy",
  "omitStages: [RequestReceived]",
  "rules:",
  "- level: Metadata",
  "  verbs: [create, update, patch, delete, deletecollection]",
  "- level: Metadata",
  "  verbs: [get]",
  "  resources: [{ group: '', resources: [secrets] }]",
  "- level: None",
  "",
].join("\n");

function kubeconfigYaml(server: string, ca: string, client: KeyAndCertificate): string {
  const b64 = (text: string): string => Buffer.from(text).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: embedded",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(ca)}`,
    "users:",
    "- name: admin",
    "  user:",
    `    client-certificate-data: ${b64(client.certificatePem)}`,
    `    client-key-data: ${b64(client.privateKeyPem)}`,
    "contexts:",
    "- name: embedded",
    "  context:",
    "    cluster: embedded",
    "    user: admin",
    "    namespace: default",
    "current-context: embedded",
    "",
  ].join("\n");
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const owned = options.dir === undefined ? ownedTempDir("kube") : undefined;
  const dir = options.dir ?? owned?.dir ?? "";
  const certDir = join(dir, "pki");
  mkdirSync(certDir, { recursive: true });
  const timeoutMs = options.startTimeoutMs ?? 60_000;

  const ca = await createCa({
    commonName: "nats-tenancy embedded kube CA",
    lifetimeMs: 30 * DAY_MS,
  });
  const node = options.node;
  const serving = await issueLeaf(ca, {
    commonName: "kube-apiserver",
    dnsNames: [
      "localhost",
      "kubernetes",
      "kubernetes.default",
      "kubernetes.default.svc",
      ...(node ? [`kubernetes.default.svc.${node.clusterDomain}`] : []),
    ],
    ipAddresses: ["127.0.0.1", ...(node ? [node.address, node.serviceIp] : [])],
    server: true,
    lifetimeMs: 30 * DAY_MS,
  });
  const admin = await issueLeaf(ca, {
    commonName: "admin",
    organization: "system:masters",
    server: false,
    client: true,
    lifetimeMs: 30 * DAY_MS,
  });
  const serviceAccountKey = await generateSigningKeyPem();
  const file = (name: string, content: string): string => {
    const path = join(certDir, name);
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };
  const caFile = file("ca.crt", ca.certificatePem);
  const servingCert = file("apiserver.crt", serving.certificatePem);
  const servingKey = file("apiserver.key", serving.privateKeyPem);
  const saKey = file("sa.key", serviceAccountKey.privateKeyPem);
  const saPub = file("sa.pub", serviceAccountKey.publicKeyPem);
  const auditPolicy = file("audit-policy.yaml", AUDIT_POLICY);
  const auditLog = join(dir, "audit.log");

  const [etcdClientPort, etcdPeerPort, apiPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const peerUrl = `http://127.0.0.1:${etcdPeerPort}`;
  const processes: ManagedProcess[] = [];

  const stop = async (): Promise<void> => {
    // The API server first: it would otherwise log etcd connection errors until it exits.
    for (const p of [...processes].reverse()) await p.stop();
    owned?.release();
  };

  try {
    const startEtcd = (): ManagedProcess =>
      ManagedProcess.start({
        name: "etcd",
        command: options.toolchain.etcd,
        args: [
          "--name=embedded",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=embedded=${peerUrl}`,
          "--unsafe-no-fsync=true",
          "--log-level=warn",
        ],
        logFile: join(dir, "etcd.log"),
      });
    const etcdReady = (): Promise<void> =>
      waitUntil(
        "etcd health",
        async () => (await httpGet(`${etcdUrl}/health`)).body.includes('"health":"true"'),
        { timeoutMs, processes },
      );
    processes.push(startEtcd());
    await etcdReady();

    const host = node?.address ?? "127.0.0.1";
    const server = `https://${host}:${apiPort}`;
    let modeArgs: string[];
    if (node) {
      const kubeletClient = await issueLeaf(ca, {
        commonName: "kube-apiserver-kubelet-client",
        organization: "system:masters",
        server: false,
        client: true,
        lifetimeMs: 30 * DAY_MS,
      });
      modeArgs = [
        `--service-cluster-ip-range=${node.serviceCidr}`,
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        `--service-account-issuer=https://kubernetes.default.svc.${node.clusterDomain}`,
        `--kubelet-client-certificate=${file("kubelet-client.crt", kubeletClient.certificatePem)}`,
        `--kubelet-client-key=${file("kubelet-client.key", kubeletClient.privateKeyPem)}`,
        `--kubelet-certificate-authority=${caFile}`,
        "--kubelet-preferred-address-types=InternalIP",
      ];
    } else {
      modeArgs = [
        "--service-cluster-ip-range=10.0.0.0/24",
        // No controller-manager creates service accounts' tokens.
        "--disable-admission-plugins=ServiceAccount",
        "--authorization-mode=RBAC",
        `--service-account-issuer=${server}`,
        // Without a node the `kubernetes` Service would point at an address no pod can use.
        "--endpoint-reconciler-type=none",
      ];
    }
    const startApiserver = (): ManagedProcess =>
      ManagedProcess.start({
        name: "kube-apiserver",
        command: options.toolchain.kubeApiserver,
        args: [
          `--etcd-servers=${etcdUrl}`,
          `--cert-dir=${certDir}`,
          `--tls-cert-file=${servingCert}`,
          `--tls-private-key-file=${servingKey}`,
          `--client-ca-file=${caFile}`,
          `--secure-port=${apiPort}`,
          `--bind-address=${host}`,
          `--advertise-address=${host}`,
          ...modeArgs,
          "--allow-privileged=true",
          `--service-account-key-file=${saPub}`,
          `--service-account-signing-key-file=${saKey}`,
          `--audit-policy-file=${auditPolicy}`,
          `--audit-log-path=${auditLog}`,
          "--audit-log-mode=blocking",
          "--profiling=false",
          "--v=0",
        ],
        logFile: join(dir, "kube-apiserver.log"),
      });
    const tls = { ca: ca.certificatePem, cert: admin.certificatePem, key: admin.privateKeyPem };
    const apiserverReady = (): Promise<void> =>
      waitUntil(
        "kube-apiserver /readyz",
        async () => {
          const res = await httpGet(`${server}/readyz`, tls);
          return res.status === 200;
        },
        { timeoutMs, processes },
      );
    processes.push(startApiserver());
    await apiserverReady();
    // The default namespace is created by a post-start hook that /readyz does not wait for.
    await waitUntil(
      "namespace default",
      async () => (await httpGet(`${server}/api/v1/namespaces/default`, tls)).status === 200,
      { timeoutMs, processes },
    );

    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, ca.certificatePem, admin), {
      mode: 0o600,
    });
    const restart = async (component: "etcd" | "kube-apiserver"): Promise<void> => {
      const index = component === "etcd" ? 0 : 1;
      await processes[index]?.kill();
      processes[index] = component === "etcd" ? startEtcd() : startApiserver();
      await (component === "etcd" ? etcdReady() : apiserverReady());
    };
    return {
      server,
      kubeconfigPath,
      restart,
      kubeConfig: () => {
        const kc = new KubeConfig();
        kc.loadFromFile(kubeconfigPath);
        return kc;
      },
      access: () => kubeconfigFileAccess(kubeconfigPath),
      ca,
      kubeconfigFor: async (user, group) => {
        const client = await issueLeaf(ca, {
          commonName: user,
          ...(group ? { organization: group } : {}),
          server: false,
          client: true,
          lifetimeMs: 30 * DAY_MS,
        });
        const path = join(dir, `kubeconfig-${user.replace(/[^a-z0-9-]/gi, "_")}`);
        writeFileSync(path, kubeconfigYaml(server, ca.certificatePem, client), { mode: 0o600 });
        return path;
      },
      caFile,
      serviceAccountKeyFile: saKey,
      auditLog,
      processes,
      ports: [etcdClientPort, etcdPeerPort, apiPort],
      dir,
      logTails: (lines) => logTails(processes, lines),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
