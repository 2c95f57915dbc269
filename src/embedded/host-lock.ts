/**
 * A lock for the whole machine: the test node's bridge, kubelet ports, iptables chains and pod
 * cgroups exist once per host, so only one node may run at a time, whichever process starts it.
 *
 * The lock is a kernel flock held by a `flock ... sleep` child that dies with its owner (a
 * death signal): however the owner ends, the kernel releases the lock, so there is no stale
 * lock file to judge and no race in taking one over. The child is not one of the owner's
 * servers (those are killed first when the owner is interrupted): it is released by an exit
 * clean-up, which runs after the clean-ups registered later, such as the node's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { cleanUpOnExit } from "./process.ts";

export interface HostLock {
  release: () => Promise<void>;
}

const FLOCK = "/usr/bin/flock";
const SETPRIV = "/usr/bin/setpriv";

function holderOf(path: string): string {
  try {
    return readFileSync(`${path}.owner`, "utf8").trim();
  } catch {
    return "?";
  }
}

/** Resolves true once `child` holds the lock (flock execs sleep), false when it exits (held). */
async function holds(child: ChildProcess): Promise<boolean> {
  while (child.exitCode === null && child.signalCode === null) {
    try {
      if (readlinkSync(`/proc/${child.pid ?? 0}/exe`).endsWith("/sleep")) return true;
    } catch {
      // not exec'd yet, or gone
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

export async function acquireHostLock(
  path: string,
  options: { timeoutMs: number; log?: (line: string) => void },
): Promise<HostLock> {
  const deadline = Date.now() + options.timeoutMs;
  let reported = false;
  for (;;) {
    const child = spawn(
      SETPRIV,
      [
        "--pdeathsig",
        "KILL",
        "--",
        FLOCK,
        "--exclusive",
        "--nonblock",
        "--no-fork",
        path,
        "sleep",
        "infinity",
      ],
      { stdio: "ignore" },
    );
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        resolve();
      });
    });
    if (await holds(child)) {
      const owner = `${path}.owner`;
      const unlock = (): void => {
        rmSync(owner, { force: true });
        child.kill("SIGKILL");
      };
      const cancel = cleanUpOnExit(unlock);
      try {
        writeFileSync(owner, String(process.pid));
      } catch {
        // only informs whoever waits
      }
      return {
        release: async () => {
          cancel();
          unlock();
          await exited;
        },
      };
    }
    if (Date.now() > deadline) {
      throw new Error(`${path} is held by process ${holderOf(path)} (timed out waiting)`);
    }
    if (!reported) {
      options.log?.(`waiting for ${path}, held by process ${holderOf(path)}`);
      reported = true;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
