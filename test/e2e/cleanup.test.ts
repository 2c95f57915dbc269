import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import { isPortFree } from "../../src/embedded/ports.ts";
import { isRunning } from "../../src/embedded/process.ts";
import { ownedTempDir } from "../../src/embedded/tempdir.ts";
import { waitUntil } from "../../src/embedded/wait.ts";

interface Held {
  pids: number[];
  ports: number[];
  dirs: string[];
}

async function holdServers(): Promise<{
  held: Held;
  kill: (signal: NodeJS.Signals) => Promise<void>;
}> {
  const child = spawn(process.execPath, ["test/e2e/fixtures/hold-servers.ts"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      resolve();
    }),
  );
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once("line", resolve)),
    exited.then(() => {
      throw new Error("hold-servers exited before it started its servers");
    }),
  ]);
  const held = JSON.parse(first) as Held;
  assert.equal(held.pids.length, 5, "etcd, kube-apiserver and 3 nats-servers");
  assert.ok(held.pids.every(isRunning), "all servers run before the kill");
  return {
    held,
    kill: async (signal) => {
      child.kill(signal);
      await exited;
    },
  };
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
