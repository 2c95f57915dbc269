/**
 * `npm start`. With a cluster (--kubeconfig, KUBECONFIG, in-cluster, or ~/.kube/config) it runs
 * the operator against it. With none it brings up an embedded control plane and NATS cluster,
 * runs the operator on them, applies an example App and prints its credentials and a command
 * that uses them, so a newcomer sees the whole path work.
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { PooledKubeConfig } from "../kube/kube-config.ts";
import { createLogger } from "../observability/logger.ts";
import { createMetrics } from "../observability/metrics.ts";
import { runDemo } from "./demo.ts";
import { OptionsError, parseOptions, usage, type CliOptions } from "./options.ts";
import { startOperatorProcess } from "./run-operator.ts";

function clusterGiven(options: CliOptions): boolean {
  return (
    Boolean(options.kubeconfig) ||
    Boolean(process.env.KUBERNETES_SERVICE_HOST) ||
    existsSync(join(homedir(), ".kube", "config"))
  );
}

async function runAgainstCluster(options: CliOptions): Promise<void> {
  const kubeConfig = new PooledKubeConfig();
  if (options.kubeconfig) kubeConfig.loadFromFile(options.kubeconfig);
  else kubeConfig.loadFromDefault();
  const logger = createLogger({ level: options.logLevel });
  const operator = await startOperatorProcess({
    kubeConfig,
    settings: options.settings,
    logger,
    metrics: createMetrics(),
    healthHost: options.healthHost,
    healthPort: options.healthPort,
    leaseName: options.leaseName,
    leaseDurationMs: options.leaseDurationMs,
    identity: options.identity,
    ...(options.webhook ? { webhook: options.webhook } : {}),
  });
  logger.info(
    {
      health: operator.healthUrl,
      namespace: options.settings.namespace,
      identity: options.identity,
    },
    "nats-tenancy operator started",
  );
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      logger.info({ signal }, "stopping");
      void operator.stop().then(() => {
        logger.info("stopped");
        process.exit(process.exitCode ?? 0);
      });
    });
  }
}

try {
  const options = parseOptions(process.argv.slice(2));
  if (options.help) process.stdout.write(`${usage()}\n`);
  else if (clusterGiven(options)) await runAgainstCluster(options);
  else await runDemo();
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`nats-tenancy: ${message}\n`);
  if (error instanceof OptionsError) process.stderr.write(`${usage()}\n`);
  process.exit(1);
}
