/** Resident memory as the node sees it: of one process, and of one pod's containers. */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export function rssMiB(pid: number | undefined): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${String(pid)}/status`, "utf8"))?.[1];
    return Math.round(Number(kb) / 1024);
  } catch {
    return 0;
  }
}

// The node's kubelet uses the cgroupfs driver: /kubepods/<qos>/pod<uid> (guaranteed pods sit
// directly under /kubepods).
const CGROUP_ROOTS = ["/sys/fs/cgroup/unified/kubepods", "/sys/fs/cgroup/kubepods"];

function podCgroup(uid: string): string | undefined {
  for (const root of CGROUP_ROOTS.filter(existsSync)) {
    for (const dir of [root, ...["burstable", "besteffort"].map((q) => join(root, q))]) {
      const candidate = join(dir, `pod${uid}`);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/** Sum of the RSS of a pod's processes, without its sandbox (pause). */
export function podRssMiB(uid: string): number {
  const cgroup = podCgroup(uid);
  if (!cgroup) return 0;
  let total = 0;
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true }))
      if (entry.isDirectory()) visit(join(dir, entry.name));
    const procs = join(dir, "cgroup.procs");
    if (!existsSync(procs)) return;
    for (const pid of readFileSync(procs, "utf8").split("\n").filter(Boolean)) {
      const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      if (comm !== "pause") total += rssMiB(Number(pid));
    }
  };
  visit(cgroup);
  return total;
}
