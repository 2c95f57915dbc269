import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, before, describe, test } from "node:test";
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  V1MicroTime,
  type V1LeaseSpec,
} from "@kubernetes/client-node";
import { boundedAccess, type ClusterAccess } from "../../src/kube/cluster-access.ts";
import { kubeConfigAccess } from "../../src/kube/kube-config.ts";
import { JsonRequests, corePath } from "../../src/kube/json-requests.ts";
import { LeaderElector } from "../../src/runtime/leader-election.ts";
import { LeaderGated } from "../../src/runtime/leader-gated.ts";
import type { Loop } from "../../src/runtime/loop.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { startProxy } from "./fixtures/tcp-proxy.ts";
import { useControlPlane } from "./harness.ts";

const namespace = "leader-election";
const LEASE_MS = 2000;
const RENEW_MS = 500;
const RETRY_MS = 300;

interface Candidate {
  identity: string;
  elector: LeaderElector;
  /** When onStartedLeading and onStoppedLeading were called, in order. */
  events: { event: "started" | "stopped"; atMs: number }[];
}

describe("leader election on a real API server", () => {
  const controlPlane = useControlPlane();
  const leases = () => controlPlane().kubeConfig().makeApiClient(CoordinationV1Api);
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? "silent" });
  const running: LeaderElector[] = [];

  before(async () => {
    const core = controlPlane().kubeConfig().makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((elector) => elector.stop()));
  });

  function candidate(
    lease: string,
    identity: string,
    overrides: { leaseDurationMs?: number; cluster?: ClusterAccess; clock?: () => number } = {},
  ): Candidate {
    const events: Candidate["events"] = [];
    const elector = new LeaderElector({
      cluster: overrides.cluster ?? controlPlane().access(),
      namespace,
      name: lease,
      identity,
      leaseDurationMs: overrides.leaseDurationMs ?? LEASE_MS,
      renewIntervalMs: RENEW_MS,
      retryIntervalMs: RETRY_MS,
      ...(overrides.clock ? { clock: overrides.clock } : {}),
      logger,
      onStartedLeading: () => events.push({ event: "started", atMs: Date.now() }),
      onStoppedLeading: () => events.push({ event: "stopped", atMs: Date.now() }),
    });
    running.push(elector);
    elector.start();
    return { identity, elector, events };
  }

  const spec = async (lease: string): Promise<V1LeaseSpec> =>
    (await leases().readNamespacedLease({ name: lease, namespace })).spec ?? {};

  const leading = (who: Candidate, timeoutMs = 10_000): Promise<void> =>
    waitUntil(`${who.identity} leading`, () => Promise.resolve(who.elector.isLeader()), {
      timeoutMs,
      intervalMs: 20,
    });

  /** Another replica writes itself into the Lease, as if it had taken it over. */
  const usurp = async (name: string): Promise<void> => {
    const lease = await leases().readNamespacedLease({ name, namespace });
    await leases().replaceNamespacedLease({
      name,
      namespace,
      body: {
        metadata: lease.metadata,
        spec: {
          holderIdentity: "usurper",
          leaseDurationSeconds: 60,
          acquireTime: new V1MicroTime(),
          renewTime: new V1MicroTime(),
        },
      },
    });
  };

  /** The control plane's access, its server replaced by `server`. */
  const through = (server: string): ClusterAccess => {
    const direct = controlPlane().kubeConfig();
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: direct.clusters.map((cluster) => ({ ...cluster, server })),
      users: direct.users,
      contexts: direct.contexts,
      currentContext: direct.currentContext,
    });
    return kubeConfigAccess(config);
  };

  /** Replica "a" of leader-gated loops on `lease`; a failure to start is noted in `seen`. */
  const gatedOn = (lease: string, build: () => Promise<Loop[]>, seen: string[]): LeaderGated =>
    new LeaderGated({
      election: {
        cluster: controlPlane().access(),
        namespace,
        name: lease,
        identity: "a",
        leaseDurationMs: LEASE_MS,
        renewIntervalMs: RENEW_MS,
        retryIntervalMs: RETRY_MS,
      },
      build,
      logger,
      onFailure: (error) => {
        seen.push(`failed: ${String(error)}`);
      },
    });

  /** When `who` last started leading. */
  const startedAt = (who: Candidate): number =>
    who.events.findLast((e) => e.event === "started")?.atMs ?? Number.NaN;

  test("of two electors on one Lease exactly one leads, and the Lease names it", async () => {
    const a = candidate("pair", "a");
    const b = candidate("pair", "b");
    await waitUntil(
      "a leader",
      () => Promise.resolve(a.elector.isLeader() || b.elector.isLeader()),
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    // Both keep competing through several renewals: leadership is neither shared nor moved.
    await sleep(4 * RENEW_MS);
    const [leader, follower] = a.elector.isLeader() ? [a, b] : [b, a];
    assert.equal(follower.elector.isLeader(), false);
    assert.deepEqual(
      leader.events.map((e) => e.event),
      ["started"],
    );
    assert.deepEqual(follower.events, []);
    const held = await spec("pair");
    assert.equal(held.holderIdentity, leader.identity);
    assert.equal(held.leaseDurationSeconds, LEASE_MS / 1000);
    assert.equal(held.leaseTransitions ?? 0, 0);
  });

  test("a leader that stops releases the Lease, and the standby takes over at once", async () => {
    // Long enough that a takeover by expiry would fail the test's bound.
    const leaseDurationMs = 15_000;
    const a = candidate("handover", "a", { leaseDurationMs });
    await leading(a);
    const b = candidate("handover", "b", { leaseDurationMs });
    await sleep(2 * RETRY_MS);
    assert.equal(b.elector.isLeader(), false);

    const stoppedAt = Date.now();
    await a.elector.stop();
    assert.equal(a.elector.isLeader(), false);
    assert.deepEqual(
      a.events.map((e) => e.event),
      ["started", "stopped"],
    );
    await leading(b, leaseDurationMs / 3);
    const tookMs = startedAt(b) - stoppedAt;
    assert.ok(tookMs < leaseDurationMs / 3, `the standby took ${String(tookMs)} ms to take over`);
    const held = await spec("handover");
    assert.equal(held.holderIdentity, "b");
    assert.equal(held.leaseTransitions, 1);
  });

  test("a Lease its holder stopped renewing is taken over when it expires, not before", async () => {
    const ghost = {
      holderIdentity: "ghost",
      leaseDurationSeconds: LEASE_MS / 1000,
      acquireTime: new V1MicroTime(),
      renewTime: new V1MicroTime(),
    };
    await leases().createNamespacedLease({
      namespace,
      body: { metadata: { name: "ghost", namespace }, spec: ghost },
    });
    const c = candidate("ghost", "c");
    // The holder renews for longer than a lease duration: c has to keep waiting.
    let lastRenewalMs = Date.now();
    for (let i = 0; i < 6; i++) {
      await sleep(RENEW_MS);
      assert.equal(c.elector.isLeader(), false, "took a Lease that its holder renews");
      const lease = await leases().readNamespacedLease({ name: "ghost", namespace });
      lastRenewalMs = Date.now();
      await leases().replaceNamespacedLease({
        name: "ghost",
        namespace,
        body: {
          metadata: lease.metadata,
          spec: { ...ghost, renewTime: new V1MicroTime(lastRenewalMs) },
        },
      });
    }
    // Then the holder vanishes without releasing.
    await leading(c);
    const afterMs = startedAt(c) - lastRenewalMs;
    assert.ok(afterMs >= LEASE_MS, `took over ${String(afterMs)} ms after the last renewal`);
    const held = await spec("ghost");
    assert.equal(held.holderIdentity, "c");
    assert.equal(held.leaseTransitions, 1);
  });

  test("a standby whose clock runs a minute ahead leaves alone a Lease its holder renews", async () => {
    const a = candidate("skewed", "a");
    await leading(a);
    const b = candidate("skewed", "b", { clock: () => Date.now() + 60_000 });
    // Judged by the holder's renewTime against b's clock, the Lease looks a minute old.
    await sleep(3 * LEASE_MS);
    assert.equal(b.elector.isLeader(), false, "the skewed standby took a renewed Lease");
    assert.deepEqual(
      b.events.map((e) => e.event),
      [],
    );
    assert.equal((await spec("skewed")).holderIdentity, "a");
  });

  test("a leader steps down when another replica holds the Lease", async () => {
    const a = candidate("usurped", "a");
    await leading(a);
    await usurp("usurped");
    await waitUntil("a stepped down", () => Promise.resolve(!a.elector.isLeader()), {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    assert.deepEqual(
      a.events.map((e) => e.event),
      ["started", "stopped"],
    );
    assert.equal((await spec("usurped")).holderIdentity, "usurper");
  });

  test("a leader cut off from the API server steps down before a standby can take over", async () => {
    const direct = controlPlane().kubeConfig();
    const proxy = await startProxy(new URL(direct.getCurrentCluster()?.server ?? ""));
    try {
      const a = candidate("cut-off", "a", { cluster: through(proxy.server) });
      await leading(a);
      const b = candidate("cut-off", "b");
      await sleep(2 * RENEW_MS);
      assert.equal(b.elector.isLeader(), false);

      proxy.blackHole();
      const renewTime = (await spec("cut-off")).renewTime;
      const lastRenewalMs = new Date(renewTime ?? 0).getTime();
      await leading(b);
      const stopped = a.events.find((e) => e.event === "stopped");
      assert.ok(stopped, "the cut-off leader never stepped down");
      assert.ok(
        stopped.atMs < lastRenewalMs + LEASE_MS,
        `stepped down ${String(stopped.atMs - lastRenewalMs)} ms after its last renewal`,
      );
      assert.ok(startedAt(b) >= lastRenewalMs + LEASE_MS, "the standby took an unexpired Lease");
      assert.ok(startedAt(b) > stopped.atMs, "two leaders at once");
      assert.equal(a.elector.isLeader(), false);
    } finally {
      await Promise.all(running.splice(0).map((elector) => elector.stop()));
      await proxy.close();
    }
  });

  test("losing the Lease aborts the leader's API requests in flight, then stops its loops", async () => {
    const direct = controlPlane().kubeConfig();
    const proxy = await startProxy(new URL(direct.getCurrentCluster()?.server ?? ""));
    const viaProxy = through(proxy.server);
    const seen: string[] = [];
    let inFlight: Promise<unknown> | undefined;
    let leanInFlight: Promise<unknown> | undefined;
    let term: AbortSignal | undefined;
    // The loop's requests go through a proxy that never answers, so one is in flight for good
    // unless the term's signal ends it.
    const hanging: Loop = {
      start: (signal) => {
        term = signal;
        proxy.blackHole();
        const requests = new JsonRequests(boundedAccess(viaProxy, { signal }));
        inFlight = requests.get("/api/v1/namespaces");
        inFlight.catch(() => undefined);
        leanInFlight = requests.send({
          method: "POST",
          path: corePath("secrets", "default"),
          body: { metadata: { name: "never-sent" }, data: {} },
        });
        leanInFlight.catch(() => undefined);
        seen.push("started");
        return Promise.resolve();
      },
      stop: () => {
        seen.push(`stopped, signal ${term?.aborted ? "aborted" : "live"}`);
        return Promise.resolve();
      },
    };
    const gated = gatedOn("gated", () => Promise.resolve([hanging]), seen);
    try {
      gated.start();
      await waitUntil("the loop started", () => Promise.resolve(seen.includes("started")), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      await usurp("gated");
      for (const request of [inFlight, leanInFlight]) {
        await assert.rejects(
          request ?? Promise.resolve(),
          (error: unknown) => (error as Error).name === "AbortError",
        );
      }
      await waitUntil("the loop stopped", () => Promise.resolve(seen.length === 2), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      assert.deepEqual(seen, ["started", "stopped, signal aborted"]);
      assert.equal(gated.isLeader(), false);
      assert.deepEqual(gated.loops(), []);
      // After the term, nothing more is sent.
      await assert.rejects(
        new JsonRequests(
          boundedAccess(controlPlane().access(), { signal: term ?? AbortSignal.abort() }),
        ).get("/api/v1/namespaces"),
        (error: unknown) => (error as Error).name === "AbortError",
      );
    } finally {
      await gated.stop();
      await proxy.close();
    }
  });

  test("a replica that loses the Lease while its loops are being built never starts them", async () => {
    const building = Promise.withResolvers<undefined>();
    const seen: string[] = [];
    const never: Loop = {
      start: () => {
        seen.push("started");
        return Promise.resolve();
      },
      stop: () => {
        seen.push("stopped");
        return Promise.resolve();
      },
    };
    // The build (a bootstrap, say) is still running when the Lease goes, and does not notice.
    const gated = gatedOn(
      "slow-start",
      async () => {
        seen.push("building");
        await building.promise;
        return [never];
      },
      seen,
    );
    try {
      gated.start();
      await waitUntil("the build started", () => Promise.resolve(seen.includes("building")), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      assert.deepEqual(gated.ready(), { ready: false, reason: "the leader's loops are starting" });
      await usurp("slow-start");
      await waitUntil("a stood down", () => Promise.resolve(!gated.isLeader()), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      building.resolve(undefined);
      await sleep(3 * RETRY_MS);
      assert.ok(!seen.includes("started"), "a loop started after the Lease was lost");
      assert.ok(
        !seen.some((e) => e.startsWith("failed")),
        "the lost Lease was taken for a failure",
      );
      assert.deepEqual(gated.loops(), []);
    } finally {
      await gated.stop();
    }
  });
});
