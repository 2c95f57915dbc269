import assert from "node:assert/strict";
import { createServer } from "node:net";
import { describe, test } from "node:test";
import { createLogger } from "../../src/observability/logger.ts";
import { createMetrics } from "../../src/observability/metrics.ts";
import { startHealthServer, type Readiness } from "../../src/server/health-server.ts";

/** Resolves once a fresh server could bind `port` on loopback, and closes it again. */
function bind(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.close(() => {
        resolve();
      });
    });
  });
}

describe("health server", () => {
  test("serves liveness, readiness and metrics, and frees its port on close", async () => {
    const metrics = createMetrics();
    let readiness: Readiness = { ready: false, reason: "waiting for the informers to sync" };
    let live = true;
    const server = await startHealthServer({
      host: "127.0.0.1",
      port: 0,
      metrics,
      ready: () => readiness,
      live: () => live,
      logger: createLogger({ level: "silent" }),
    });
    try {
      assert.ok(server.port > 0);
      assert.equal(server.url, `http://127.0.0.1:${server.port}`);
      const get = async (path: string) => {
        const response = await fetch(`${server.url}${path}`);
        return {
          status: response.status,
          type: response.headers.get("content-type"),
          body: await response.text(),
        };
      };

      assert.deepEqual(await get("/healthz"), {
        status: 200,
        type: "text/plain; charset=utf-8",
        body: "ok",
      });
      live = false;
      assert.equal((await get("/healthz")).status, 503);

      const notReady = await get("/readyz");
      assert.equal(notReady.status, 503);
      assert.equal(notReady.body, "waiting for the informers to sync");
      readiness = { ready: true };
      assert.equal((await get("/readyz")).status, 200);
      readiness = false;
      assert.deepEqual(await get("/readyz"), {
        status: 503,
        type: "text/plain; charset=utf-8",
        body: "not ready",
      });
      readiness = true;
      assert.equal((await get("/readyz")).status, 200);

      metrics.reconcileTotal.inc({ result: "success" });
      metrics.reconcileTotal.inc({ result: "success" });
      metrics.natsPushes.inc({ operation: "update" });
      const scrape = await get("/metrics");
      assert.equal(scrape.status, 200);
      assert.equal(scrape.type, metrics.registry.contentType);
      assert.match(scrape.body, /^nats_tenancy_reconcile_total\{result="success"\} 2$/m);
      assert.match(scrape.body, /^nats_tenancy_nats_pushes_total\{operation="update"\} 1$/m);
      assert.match(scrape.body, /^# TYPE nats_tenancy_reconcile_duration_seconds histogram$/m);
      assert.match(scrape.body, /^nats_tenancy_leader 0$/m);
      // Default process metrics share the prefix.
      assert.match(scrape.body, /^nats_tenancy_process_cpu_seconds_total /m);
    } finally {
      await server.close();
    }
    await bind(server.port);
    await assert.rejects(fetch(`${server.url}/healthz`));
  });
});
