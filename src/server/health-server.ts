/**
 * The HTTP endpoints every replica serves, leader or not: liveness, readiness and Prometheus
 * metrics.
 */
import Fastify, { LogController } from "fastify";
import type { Logger } from "pino";
import type { Metrics } from "../observability/metrics.ts";

export type Readiness = boolean | { ready: boolean; reason?: string };

export interface HealthServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  metrics: Metrics;
  ready: () => Readiness;
  /** Always live when omitted. */
  live?: () => boolean;
  logger: Logger;
}

export interface HealthServer {
  url: string;
  port: number;
  close: () => Promise<void>;
}

export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { registry } = options.metrics;
  const app = Fastify({
    loggerInstance: options.logger.child({ component: "health-server" }),
    // Probes and scrapes arrive every few seconds; a line for each would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
  });

  app.get("/healthz", async (_request, reply) => {
    const live = options.live?.() ?? true;
    return reply.code(live ? 200 : 503).send(live ? "ok" : "not live");
  });
  app.get("/readyz", async (_request, reply) => {
    const readiness = options.ready();
    const { ready, reason } = typeof readiness === "boolean" ? { ready: readiness } : readiness;
    return reply.code(ready ? 200 : 503).send(ready ? "ok" : (reason ?? "not ready"));
  });
  app.get("/metrics", async (_request, reply) => {
    return reply.type(registry.contentType).send(await registry.metrics());
  });

  const url = await app.listen({ host: options.host, port: options.port });
  return {
    url,
    port: Number(new URL(url).port),
    close: () => app.close(),
  };
}
