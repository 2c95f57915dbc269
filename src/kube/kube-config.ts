/**
 * The operator's ClusterAccess from a client-node KubeConfig, for what holds one: the CLI, the
 * tests, and kubeconfigs that need client-node (exec plugins, auth providers, proxies).
 */
import type { Agent } from "node:http";
import type { RequestOptions } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { AgentPool, reused, type ClusterAccess } from "./cluster-access.ts";

/**
 * The operator's access (cluster-access.ts) through a client-node KubeConfig: for kubeconfigs
 * with exec plugins, auth providers or proxies, and for the CLI and tests, which hold a
 * KubeConfig. client-node works out the TLS material and the Authorization header (running the
 * exec plugin, refreshing its token) at most once a second.
 */
export function kubeConfigAccess(kubeConfig: KubeConfig): ClusterAccess {
  const agents = new AgentPool();
  const server = () => {
    const url = kubeConfig.getCurrentCluster()?.server;
    if (!url) throw new Error("the kubeconfig names no current cluster");
    return url.replace(/\/+$/, "");
  };
  return {
    get server() {
      return server();
    },
    authorize: reused(async () => {
      const options: RequestOptions = {};
      await kubeConfig.applyToHTTPSOptions(options);
      const headers = Object.fromEntries(
        Object.entries(options.headers ?? {}).map(([name, value]) => [name, String(value)]),
      );
      // A proxy's agent is client-node's. Otherwise the agent is this pool's: client-node keeps
      // one per cluster and user name, so a rotated certificate file would not reach it, and it
      // carries the PEM texts that Node hashes on every request (see AgentPool).
      const agent = kubeConfig.getCurrentCluster()?.proxyUrl
        ? (options.agent as Agent)
        : agents.agentFor({
            ca: options.ca as string | Buffer | undefined,
            cert: options.cert as string | Buffer | undefined,
            key: options.key as string | Buffer | undefined,
            rejectUnauthorized: options.rejectUnauthorized,
            servername: options.servername,
          });
      return { headers, agent };
    }),
    close: () => {
      agents.close();
      return Promise.resolve();
    },
  };
}
