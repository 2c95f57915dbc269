import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { isPortFree } from "../../src/embedded/ports.ts";
import { isRunning } from "../../src/embedded/process.ts";
import { ownedTempDir } from "../../src/embedded/tempdir.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { holdInChild } from "./harness.ts";

interface Held {
  pids: number[];
  ports: number[];
  dirs: string[];
}

async function holdServers(): Promise<{
  held: Held;
  kill: (signal: NodeJS.Signals) => Promise<void>;
}> {
  const holder = await holdInChild("test/e2e/fixtures/hold-servers.ts");
  const held = holder.held as Held;
  assert.equal(held.pids.length, 5, "etcd, kube-apiserver and 3 nats-servers");
  assert.ok(held.pids.every(isRunning), "all servers run before the kill");
  return { held, kill: holder.kill };
}

async function assertNothingLeft(held: Held): Promise<void> {
  await waitUntil("servers gone", () => Promise.resolve(!held.pids.some(isRunning)), {
    timeoutMs: 15_000,
  });
  // A killed multi-threaded server can show as a zombie a moment before its sockets close.
  await waitUntil(
    "ports released",
    async () => {
      for (const port of held.ports) if (!(await isPortFree(port))) return false;
      return true;
    },
    { timeoutMs: 10_000 },
  );
}

describe("the harness leaves nothing running", () => {
  for (const signal of ["SIGINT", "SIGTERM", "SIGKILL"] as const) {
    test(`when its owner gets ${signal}`, async () => {
      const { held, kill } = await holdServers();
      await kill(signal);
      await assertNothingLeft(held);
      if (signal === "SIGKILL") {
        // Nothing ran in the owner to remove its directories: the next owner sweeps them.
        ownedTempDir("probe").release();
      }
      for (const dir of held.dirs) assert.ok(!existsSync(dir), `${dir} was left behind`);
    });
  }
});
