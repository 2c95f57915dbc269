/**
 * `npm start`, and the image's entrypoint. With a cluster (--kubeconfig, KUBECONFIG, in-cluster,
 * or ~/.kube/config) it runs the operator against it. With none it brings up an embedded
 * control plane and NATS cluster, runs the operator on them, applies an example App and prints
 * its credentials and a command that uses them, so a newcomer sees the whole path work.
 */
import {
  defaultKubeconfigPaths,
  inClusterAccess,
  kubeconfigAccess,
} from "../kube/kubeconfig-access.ts";
import { createLogger } from "../observability/logger.ts";
import { createMetrics } from "../observability/metrics.ts";
import { clusterSource, type ClusterSource } from "./cluster-source.ts";
import { OptionsError, parseOptions, usage, type CliOptions } from "./options.ts";
import { startOperatorProcess } from "./run-operator.ts";

async function runAgainstCluster(
  options: CliOptions,
  source: Exclude<ClusterSource, { kind: "demo" }>,
): Promise<void> {
  const cluster =
    source.kind === "in-cluster"
      ? inClusterAccess()
      : await kubeconfigAccess(
          source.kind === "kubeconfig" ? [source.path] : defaultKubeconfigPaths(),
        );
  const logger = createLogger({ level: options.logLevel });
  const operator = await startOperatorProcess({
    cluster,
    settings: options.settings,
    logger,
    metrics: createMetrics(),
    healthHost: options.healthHost,
    healthPort: options.healthPort,
    leaseName: options.leaseName,
    leaseDurationMs: options.leaseDurationMs,
    stuckAfterMs: options.stuckAfterMs,
    apiTimeoutMs: options.apiTimeoutMs,
    identity: options.identity,
    ...(options.webhook ? { webhook: options.webhook } : {}),
    controller: options.role !== "webhook",
  });
  logger.info(
    {
      health: operator.healthUrl,
      namespace: options.settings.namespace,
      identity: options.identity,
      role: options.role,
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
  const source = options.help ? undefined : clusterSource(options.kubeconfig);
  if (!source) process.stdout.write(`${usage()}\n`);
  else if (source.kind === "demo") {
    // Loaded only here: the embedded stack is for a developer's machine, not the image.
    const { runDemo } = await import("./demo.ts");
    await runDemo();
  } else await runAgainstCluster(options, source);
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`nats-tenancy: ${message}\n`);
  if (error instanceof OptionsError) process.stderr.write(`${usage()}\n`);
  process.exit(1);
}
