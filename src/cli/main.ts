/**
 * `npm start`. With a cluster (KUBECONFIG or in-cluster) it checks the connection; with none it
 * brings up the embedded control plane and a 3-node NATS cluster so a newcomer can see the
 * pieces work, prints how to reach them, and runs until Ctrl-C.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { KubeConfig, VersionApi } from "@kubernetes/client-node";
import { startControlPlane } from "../embedded/control-plane.ts";
import { startNatsCluster } from "../embedded/nats-cluster.ts";
import { ensureToolchain } from "../embedded/toolchain.ts";

const say = (line = ""): void => {
  process.stdout.write(`${line}\n`);
};

function clusterGiven(): boolean {
  return (
    Boolean(process.env.KUBECONFIG) ||
    Boolean(process.env.KUBERNETES_SERVICE_HOST) ||
    existsSync(join(homedir(), ".kube", "config"))
  );
}

async function runAgainstCluster(): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const version = await kc.makeApiClient(VersionApi).getCode();
  say(
    `nats-tenancy: connected to ${kc.getCurrentCluster()?.server ?? "the cluster"} (Kubernetes ${version.gitVersion}).`,
  );
  say("The App controller is not part of this build yet; nothing to reconcile.");
}

async function runEmbedded(): Promise<void> {
  say("nats-tenancy: no cluster given (KUBECONFIG unset); starting an embedded one.");
  const tools = await ensureToolchain((line) => {
    say(line);
  });
  const started = Date.now();
  const controlPlane = await startControlPlane({ toolchain: tools });
  say(
    `control plane (etcd + kube-apiserver) up in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  const natsBinary = tools.natsServers[tools.natsServers.length - 1];
  if (!natsBinary) throw new Error("no nats-server in the toolchain");
  const nats = await startNatsCluster({ binary: natsBinary.path, size: 3 });
  say(`3-node NATS cluster (${natsBinary.label}) up`);
  say();
  say("Try it from another shell:");
  say(`  export KUBECONFIG=${controlPlane.kubeconfigPath}`);
  say(`  ${tools.kubectl} get namespaces`);
  say(`  NATS servers: ${nats.urls.join(", ")}`);
  say();
  say("Ctrl-C stops everything and removes its files.");
  // The embedded processes' own exit hooks stop the servers and remove their files on Ctrl-C.
  await new Promise(() => undefined);
}

try {
  if (clusterGiven()) await runAgainstCluster();
  else await runEmbedded();
} catch (error) {
  process.stderr.write(`nats-tenancy: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
