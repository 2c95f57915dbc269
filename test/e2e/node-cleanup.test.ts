/**
 * The test node leaves nothing on the host: not after a normal stop, not when its owner is
 * terminated (and the host lock is freed only once the host is clean), not when its owner is
 * SIGKILLed (the next start removes the dead run's traces first), and not when a start fails.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { before, describe, test } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { acquireHostLock, type HostLock } from "../../src/embedded/host-lock.ts";
import {
  NODE_LOCK_FILE,
  NODE_STATE_DIR,
  startNodeCluster,
} from "../../src/embedded/node-cluster.ts";
import { findLeftovers, hostSnapshot, type HostSnapshot } from "../../src/embedded/node-host.ts";
import { isRunning } from "../../src/embedded/process.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { holdInChild, nodeSkipReason, toolchain } from "./harness.ts";

interface Held {
  pids: number[];
  shims: number[];
  stateDir: string;
}

async function holdNode(...args: string[]) {
  const holder = await holdInChild("test/e2e/fixtures/hold-node.ts", args);
  return { ...holder, held: holder.held as Held };
}

/** Runs `check` holding the host lock: no other suite's node runs meanwhile. */
async function withHostLock<T>(check: (lock: HostLock) => Promise<T>): Promise<T> {
  const lock = await acquireHostLock(NODE_LOCK_FILE, { timeoutMs: 15 * 60_000 });
  try {
    return await check(lock);
  } finally {
    await lock.release();
  }
}

describe("the test node leaves no trace", { skip: nodeSkipReason() }, () => {
  let clean: HostSnapshot | undefined;
  const host = (): HostSnapshot => clean ?? assert.fail("no snapshot of the clean host");
  before(async () => {
    clean = await withHostLock(() => {
      const snapshot = hostSnapshot();
      assert.deepEqual(findLeftovers(NODE_STATE_DIR, snapshot), [], "the host is clean before");
      return Promise.resolve(snapshot);
    });
  });

  test("when its owner gets SIGTERM, its exit restores the host before it frees the lock", async () => {
    const { held, kill } = await holdNode();
    const killed = kill("SIGTERM");
    // Asking for the lock from the moment of the signal: a lock freed before the clean-up had
    // finished would show this a half-cleaned host.
    await withHostLock(async () => {
      assert.deepEqual(findLeftovers(NODE_STATE_DIR, host()), []);
      await killed;
      for (const pid of [...held.pids, ...held.shims]) assert.ok(!isRunning(pid), `${pid} runs`);
    });
  });

  test("when its owner is SIGKILLed, the next start removes the dead run's traces; a normal stop leaves none", async (t) => {
    await withHostLock(async () => {
      const { held, kill } = await holdNode("--lock-held-by-caller");
      await kill("SIGKILL");
      // The kernel kills the owner's children (death signal); shims and pods outlive them.
      await waitUntil(
        "the dead owner's children gone",
        () => Promise.resolve(!held.pids.some(isRunning)),
        { timeoutMs: 15_000 },
      );
      assert.ok(held.shims.some(isRunning), "the dead run's shims are still there to clean");
      assert.ok(existsSync(held.stateDir));
      const leftovers = findLeftovers(NODE_STATE_DIR, host());
      const kinds = new Map<string, number>();
      for (const trace of leftovers) {
        const kind = /^(pod process|\S+)/.exec(trace)?.[1] ?? trace;
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      }
      t.diagnostic(`left by the dead run: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}`);
      assert.ok(kinds.has("pod process") && kinds.has("mount") && kinds.has("link"));

      const cluster = await startNodeCluster({
        toolchain: await toolchain(),
        lockHeldByCaller: true,
      });
      try {
        for (const pid of held.shims) assert.ok(!isRunning(pid), `the dead run's shim ${pid} runs`);
        const pods = await cluster.kubeConfig().makeApiClient(CoreV1Api).listPodForAllNamespaces();
        assert.ok(
          !pods.items.some((p) => p.metadata?.name === "sleeper"),
          "a fresh cluster: the dead run's pod is not in it",
        );
      } finally {
        await cluster.stop();
      }
      assert.deepEqual(findLeftovers(NODE_STATE_DIR, host()), []);
    });
  });

  test("a start that fails says why, frees the lock and leaves nothing", async () => {
    const missing = "/nonexistent/nats-tenancy-app";
    await assert.rejects(
      startNodeCluster({
        toolchain: await toolchain(),
        images: [
          {
            name: "localhost/broken:1",
            files: [{ source: missing, path: "/app" }],
            entrypoint: ["/app"],
          },
        ],
      }),
      (error: Error) => error.message.includes(missing),
    );
    await withHostLock(() => {
      assert.deepEqual(findLeftovers(NODE_STATE_DIR, host()), []);
      return Promise.resolve();
    });
  });
});
