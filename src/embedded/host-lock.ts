/**
 * A lock for the whole machine: the test node's bridge, kubelet ports, iptables chains and pod
 * cgroups exist once per host, so only one node may run at a time, whichever process starts it.
 *
 * The lock is a kernel flock held by a `flock ... sleep` child that dies with its owner
 * (ManagedProcess's death signal): however the owner ends, the kernel releases the lock, so
 * there is no stale lock file to judge and no race in taking one over.
 */
import { readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { ManagedProcess } from "./process.ts";

export interface HostLock {
  release: () => Promise<void>;
}

const FLOCK = "/usr/bin/flock";

function holderOf(path: string): string {
  try {
    return readFileSync(`${path}.owner`, "utf8").trim();
  } catch {
    return "?";
  }
}

export async function acquireHostLock(
  path: string,
  options: { timeoutMs: number; log?: (line: string) => void },
): Promise<HostLock> {
  const deadline = Date.now() + options.timeoutMs;
  let reported = false;
  for (;;) {
    const holder = ManagedProcess.start({
      name: "host lock",
      command: FLOCK,
      args: ["--exclusive", "--nonblock", "--no-fork", path, "sleep", "infinity"],
      logFile: "/dev/null",
    });
    // flock execs sleep once it holds the lock, and exits at once when another process holds it.
    for (;;) {
      if (!holder.running) break;
      let exe = "";
      try {
        exe = readlinkSync(`/proc/${holder.pid ?? 0}/exe`);
      } catch {
        // not started yet, or gone
      }
      if (exe.endsWith("/sleep")) {
        writeFileSync(`${path}.owner`, String(process.pid));
        return {
          release: async () => {
            await holder.stop(1000);
          },
        };
      }
      await new Promise((r) => setTimeout(r, 20));
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
