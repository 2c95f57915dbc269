/**
 * Access to the API server from the pod's service account or from a kubeconfig file, without
 * @kubernetes/client-node (see cluster-access.ts). It covers what an operator is run with:
 * the in-cluster token and CA, and kubeconfigs with client certificates or tokens (kind, k3s,
 * minikube, the test clusters). A kubeconfig needing more (an exec plugin, an auth provider, a
 * proxy) is handed to client-node, loaded only then.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { isIP } from "node:net";
import { parseAllDocuments } from "yaml";
import { AgentPool, reused, type ClusterAccess } from "./cluster-access.ts";

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** A value given inline, or a file read again (once a second at most) as it may be rotated. */
type Material = { data: string } | { file: string } | undefined;

export interface Endpoint {
  server: string;
  ca: Material;
  cert: Material;
  key: Material;
  token: Material;
  insecureSkipTlsVerify: boolean;
  tlsServerName: string | undefined;
}

function read(material: Material): string | undefined {
  if (!material) return undefined;
  return "data" in material ? material.data : readFileSync(material.file, "utf8");
}

export function endpointAccess(endpoint: Endpoint): ClusterAccess {
  const agents = new AgentPool();
  return {
    server: endpoint.server.replace(/\/+$/, ""),
    authorize: reused(() => {
      const token = read(endpoint.token)?.trim();
      // Without a name given, the server's certificate is checked against the URL's host.
      const agent = agents.agentFor({
        ca: read(endpoint.ca),
        cert: read(endpoint.cert),
        key: read(endpoint.key),
        rejectUnauthorized: !endpoint.insecureSkipTlsVerify,
        servername: endpoint.tlsServerName,
      });
      const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
      return Promise.resolve({ headers, agent });
    }),
    close: () => {
      agents.close();
      return Promise.resolve();
    },
  };
}

/** The pod's own service account: its token is read again as the kubelet rotates it. */
export function inClusterAccess(
  env: Record<string, string | undefined> = process.env,
  dir = SERVICE_ACCOUNT_DIR,
): ClusterAccess {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) throw new Error("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT unset");
  return endpointAccess({
    server: `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
    ca: { file: join(dir, "ca.crt") },
    cert: undefined,
    key: undefined,
    token: { file: join(dir, "token") },
    insecureSkipTlsVerify: false,
    tlsServerName: undefined,
  });
}

type Named<T> = { name?: unknown } & { [K in keyof T]?: T[K] };
type Fields = Record<string, unknown>;

interface KubeconfigDocument {
  "current-context"?: unknown;
  clusters?: Named<{ cluster: Fields }>[];
  users?: Named<{ user: Fields }>[];
  contexts?: Named<{ context: Fields }>[];
}

/** What this file understands of a user; anything else goes to client-node. */
const USER_FIELDS = new Set([
  "client-certificate",
  "client-certificate-data",
  "client-key",
  "client-key-data",
  "token",
  "tokenFile",
]);
const CLUSTER_FIELDS = new Set([
  "server",
  "certificate-authority",
  "certificate-authority-data",
  "insecure-skip-tls-verify",
  "tls-server-name",
  "extensions",
]);

export class KubeconfigError extends Error {
  override name = "KubeconfigError";
}

function material(fields: Fields, key: string, base: string, decode: boolean): Material {
  const data = fields[`${key}-data`] ?? (key === "token" ? fields.token : undefined);
  if (typeof data === "string")
    return { data: decode ? Buffer.from(data, "base64").toString("utf8") : data };
  const file = key === "token" ? fields.tokenFile : fields[key];
  if (typeof file === "string") return { file: isAbsolute(file) ? file : join(base, file) };
  return undefined;
}

/** The kubeconfig paths as kubectl reads them: KUBECONFIG's list, or ~/.kube/config. */
export function defaultKubeconfigPaths(
  env: Record<string, string | undefined> = process.env,
): string[] {
  const listed = (env.KUBECONFIG ?? "").split(delimiter).filter(Boolean);
  return listed.length > 0 ? listed : [join(homedir(), ".kube", "config")];
}

/**
 * The endpoint of the current context, merged as kubectl merges files (the first file to name a
 * context, cluster, user or the current context wins), or undefined when its user or cluster
 * needs what only client-node does.
 */
export function kubeconfigEndpoint(paths: readonly string[]): Endpoint | undefined {
  const clusters = new Map<string, { fields: Fields; base: string }>();
  const users = new Map<string, { fields: Fields; base: string }>();
  const contexts = new Map<string, Fields>();
  let current: string | undefined;
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      if (paths.length > 1 && (error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw new KubeconfigError(`cannot read the kubeconfig ${path}: ${(error as Error).message}`);
    }
    const base = dirname(path);
    for (const document of parseAllDocuments(text)) {
      if (document.errors.length > 0)
        throw new KubeconfigError(`the kubeconfig ${path} is not valid YAML`);
      const config = (document.toJS() ?? {}) as KubeconfigDocument;
      if (typeof config["current-context"] === "string" && config["current-context"] && !current)
        current = config["current-context"];
      const add = (
        map: Map<string, { fields: Fields; base: string }>,
        name: unknown,
        f: unknown,
      ) => {
        if (typeof name === "string" && !map.has(name))
          map.set(name, { fields: (f ?? {}) as Fields, base });
      };
      for (const c of config.clusters ?? []) add(clusters, c.name, c.cluster);
      for (const u of config.users ?? []) add(users, u.name, u.user);
      for (const c of config.contexts ?? [])
        if (typeof c.name === "string" && !contexts.has(c.name))
          contexts.set(c.name, c.context ?? {});
    }
  }
  if (!current) throw new KubeconfigError(`no current context in ${paths.join(", ")}`);
  const context = contexts.get(current);
  if (!context) throw new KubeconfigError(`the current context ${current} is not defined`);
  const cluster = clusters.get(String(context.cluster));
  if (!cluster) throw new KubeconfigError(`context ${current} names no defined cluster`);
  const user = typeof context.user === "string" ? users.get(context.user) : undefined;
  const userFields = user?.fields ?? {};
  if (
    Object.keys(userFields).some((key) => !USER_FIELDS.has(key)) ||
    Object.keys(cluster.fields).some((key) => !CLUSTER_FIELDS.has(key))
  )
    return undefined;
  const server = cluster.fields.server;
  if (typeof server !== "string" || !server)
    throw new KubeconfigError(`cluster ${String(context.cluster)} has no server`);
  if (!server.startsWith("https://"))
    throw new KubeconfigError(
      `cluster ${String(context.cluster)}: the server ${server} is not https`,
    );
  const userBase = user?.base ?? cluster.base;
  return {
    server,
    ca: material(cluster.fields, "certificate-authority", cluster.base, true),
    cert: material(userFields, "client-certificate", userBase, true),
    key: material(userFields, "client-key", userBase, true),
    token: material(userFields, "token", userBase, false),
    insecureSkipTlsVerify: cluster.fields["insecure-skip-tls-verify"] === true,
    tlsServerName:
      typeof cluster.fields["tls-server-name"] === "string"
        ? cluster.fields["tls-server-name"]
        : undefined,
  };
}

/** Access through one kubeconfig file this module covers (the test clusters' own). */
export function kubeconfigFileAccess(path: string): ClusterAccess {
  const endpoint = kubeconfigEndpoint([path]);
  if (!endpoint) throw new KubeconfigError(`${path} needs client-node: use kubeconfigAccess`);
  return endpointAccess(endpoint);
}

/** Access through the kubeconfig files; client-node serves those this file does not cover. */
export async function kubeconfigAccess(paths: readonly string[]): Promise<ClusterAccess> {
  const endpoint = kubeconfigEndpoint(paths);
  if (endpoint) return endpointAccess(endpoint);
  const [{ KubeConfig }, { kubeConfigAccess }] = await Promise.all([
    import("@kubernetes/client-node"),
    import("./kube-config.ts"),
  ]);
  const kubeConfig = new KubeConfig();
  if (paths.length === 1) kubeConfig.loadFromFile(paths[0] ?? "");
  else kubeConfig.loadFromDefault();
  return kubeConfigAccess(kubeConfig);
}
