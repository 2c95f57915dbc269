/**
 * Test-side wrappers around src/embedded: one shared toolchain lookup, fixtures that start
 * servers before a suite and always stop them after it, and the servers' log tails printed
 * for every failed test.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, afterEach, before } from "node:test";
import { startControlPlane, type ControlPlane } from "../../src/embedded/control-plane.ts";
import {
  startNatsCluster,
  type NatsCluster,
  type NatsClusterOptions,
} from "../../src/embedded/nats-cluster.ts";
import {
  nodeUnavailableReason,
  startNodeCluster,
  type NodeCluster,
  type NodeClusterOptions,
} from "../../src/embedded/node-cluster.ts";
import { operatorImageUnavailableReason } from "../../src/embedded/operator-image.ts";
import { ensureToolchain, type Toolchain } from "../../src/embedded/toolchain.ts";

// Node sets `passed` on the context given to afterEach; @types/node does not declare it yet.
function testPassed(t: object): boolean {
  return (t as { passed?: boolean }).passed !== false;
}

let toolchainPromise: Promise<Toolchain> | undefined;

export function toolchain(): Promise<Toolchain> {
  toolchainPromise ??= ensureToolchain();
  return toolchainPromise;
}

/** After every failed test of the suite, prints the tails of the servers' logs. */
export function printLogsOnFailure(
  label: string,
  servers: () => { logTails: (lines?: number) => string } | undefined,
): void {
  afterEach((t) => {
    const running = servers();
    if (!testPassed(t) && running) {
      process.stderr.write(
        `\n=== ${label} logs after failed test "${t.name}" ===\n${running.logTails()}\n`,
      );
    }
  });
}

/** Runs `setup` before the suite and its result's `stop` after it; prints logs on failures. */
function useFixture<T extends { stop: () => Promise<void>; logTails: (lines?: number) => string }>(
  label: string,
  setup: () => Promise<T>,
): () => T {
  let fixture: T | undefined;
  before(async () => {
    fixture = await setup();
  });
  afterEach((t) => {
    if (!testPassed(t) && fixture) {
      process.stderr.write(
        `\n=== ${label} logs after failed test "${t.name}" ===\n${fixture.logTails()}\n`,
      );
    }
  });
  after(async () => {
    await fixture?.stop();
  });
  return () => {
    if (!fixture) throw new Error(`${label} is not running (its before hook failed)`);
    return fixture;
  };
}

export function useControlPlane(): () => ControlPlane {
  return useFixture("control plane", async () =>
    startControlPlane({ toolchain: await toolchain() }),
  );
}

export function useNatsCluster(options: NatsClusterOptions): () => NatsCluster {
  return useFixture(`nats cluster (${options.binary})`, () => startNatsCluster(options));
}

/**
 * Why the node suites are skipped on this machine, or undefined to run them. Under CI
 * (CI=true) they always run, so a missing root or package fails the run instead of hiding.
 */
export function nodeSkipReason(): string | undefined {
  if (process.env.CI === "true") return undefined;
  const reason = nodeUnavailableReason();
  return reason ? `${reason} (set CI=true to fail instead of skipping)` : undefined;
}

/** Why the chart suites skip: no node, or no image builder (never under CI). */
export function chartSkipReason(): string | undefined {
  if (process.env.CI === "true") return undefined;
  const reason = nodeUnavailableReason() ?? operatorImageUnavailableReason();
  return reason ? `${reason} (set CI=true to fail instead of skipping)` : undefined;
}

/**
 * A real single-node cluster for the suite (one per host: suites in other files wait). Options
 * may be computed when the suite starts (an image that takes a while to build).
 */
export function useNodeCluster(
  options:
    | Omit<NodeClusterOptions, "toolchain">
    | (() => Promise<Omit<NodeClusterOptions, "toolchain">>) = {},
): () => NodeCluster {
  return useFixture("node cluster", async () =>
    startNodeCluster({
      ...(typeof options === "function" ? await options() : options),
      toolchain: await toolchain(),
      log: (line) => process.stderr.write(`${line}\n`),
    }),
  );
}

/**
 * Runs a fixture script (test/e2e/fixtures) that starts servers, prints what it holds as one
 * JSON line and waits to be killed: the clean-up tests kill it in different ways.
 */
export async function holdInChild(
  script: string,
  args: string[] = [],
): Promise<{ held: unknown; kill: (signal: NodeJS.Signals) => Promise<void> }> {
  const child = spawn(process.execPath, [script, ...args], {
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
      throw new Error(`${script} exited before it reported what it holds`);
    }),
  ]);
  return {
    held: JSON.parse(first) as unknown,
    kill: async (signal) => {
      child.kill(signal);
      await exited;
    },
  };
}
