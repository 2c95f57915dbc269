/**
 * The test node leaves nothing on the host: not after a normal stop, not when its owner is
 * terminated, and not when its owner is SIGKILLed (the next start removes the dead run's
 * traces first). The suite holds the host lock throughout, so no other node runs meanwhile
 * and the host's state before it is a fair baseline.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { CoreV1Api } from "@kubernetes/client-node";
import { acquireHostLock, type HostLock } from "../../src/embedded/host-lock.ts";
import {
  NODE_LOCK_FILE,
  NODE_STATE_DIR,
  startNodeCluster,
} from "../../src/embedded/node-cluster.ts";
import { findLeftovers, hostBaseline, type HostBaseline } from "../../src/embedded/node-host.ts";
import { isRunning } from "../../src/embedded/process.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { nodeSkipReason, toolchain } from "./harness.ts";

interface Held {
  pids: number[];
  shims: number[];
  stateDir: string;
}

async function holdNode(): Promise<{
  held: Held;
  kill: (signal: NodeJS.Signals) => Promise<void>;
}> {
  const child = spawn(process.execPath, ["test/e2e/fixtures/hold-node.ts"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => {
      resolve();
    });
  });
  const first = await Promise.race([
    new Promise<string>((resolve) =>
      createInterface({ input: child.stdout }).once("line", resolve),
    ),
    exited.then(() => {
      throw new Error("hold-node exited before its node was up");
    }),
  ]);
  const held = JSON.parse(first) as Held;
  assert.ok(held.shims.length > 0, "a pod's shim runs");
  return {
    held,
    kill: async (signal) => {
      child.kill(signal);
      await exited;
    },
  };
}

describe("the test node leaves no trace", { skip: nodeSkipReason() }, () => {
  let lock: HostLock | undefined;
  let baseline: HostBaseline | undefined;
  before(async () => {
    lock = await acquireHostLock(NODE_LOCK_FILE, { timeoutMs: 15 * 60_000 });
    baseline = hostBaseline();
    assert.deepEqual(findLeftovers(NODE_STATE_DIR, baseline), [], "the host is clean before");
  });
  after(async () => {
    await lock?.release();
  });

  test("when its owner gets SIGTERM, the owner's exit restores the host", async () => {
    const { held, kill } = await holdNode();
    await kill("SIGTERM");
    for (const pid of [...held.pids, ...held.shims])
      assert.ok(!isRunning(pid), `pid ${pid} survived`);
    assert.deepEqual(findLeftovers(NODE_STATE_DIR, baseline ?? hostBaseline()), []);
  });

  test("when its owner is SIGKILLed, the next start removes the dead run's traces; a normal stop leaves none", async (t) => {
    const { held, kill } = await holdNode();
    await kill("SIGKILL");
    // The kernel kills the owner's children (death signal); shims and pods outlive them.
    await waitUntil(
      "the dead owner's children gone",
      () => Promise.resolve(!held.pids.some(isRunning)),
      {
        timeoutMs: 15_000,
      },
    );
    assert.ok(held.shims.some(isRunning), "the dead run's shims are still there to clean");
    assert.ok(existsSync(held.stateDir));
    const leftovers = findLeftovers(NODE_STATE_DIR, baseline ?? hostBaseline());
    assert.ok(leftovers.length > 0);
    const kinds = new Map<string, number>();
    for (const trace of leftovers) {
      const kind = /^(pod process|\S+)/.exec(trace)?.[1] ?? trace;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    t.diagnostic(`left by the dead run: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}`);

    const cluster = await startNodeCluster({
      toolchain: await toolchain(),
      lockHeldByCaller: true,
    });
    try {
      for (const pid of held.shims)
        assert.ok(!isRunning(pid), `the dead run's shim ${pid} survived`);
      const pods = await cluster.kubeConfig().makeApiClient(CoreV1Api).listPodForAllNamespaces();
      assert.deepEqual(
        pods.items.map((p) => p.metadata?.name).filter((n) => n === "sleeper"),
        [],
        "a fresh cluster: the dead run's pod is not in it",
      );
    } finally {
      await cluster.stop();
    }
    assert.deepEqual(findLeftovers(NODE_STATE_DIR, baseline ?? hostBaseline()), []);
  });
});
