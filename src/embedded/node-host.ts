/**
 * The host side of the test node: what it changes on this machine outside its own state
 * directory (a bridge, an isolation rule, sysctls, host paths, iptables chains, cgroups,
 * mounts), recorded before it is changed, and the one clean-up that restores all of it. The
 * same clean-up runs before a node starts (a SIGKILLed owner could not run it) and after it
 * stops, so a crash costs nothing but time.
 */
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  rmdirSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { isRunning } from "./process.ts";

/** Where everything of the node lives; fixed, because a later run must find a dead run's state. */
export interface NodeNetwork {
  bridge: string;
  /** The node's own address on the bridge (also the pods' gateway). */
  address: string;
  podCidr: string;
  serviceCidr: string;
  serviceIp: string;
  dnsIp: string;
  clusterDomain: string;
}

/**
 * Every link and network namespace the node or its tests make is named with this prefix, so
 * the clean-up finds them all, whoever made them.
 */
export const HOST_NAME_PREFIX = "ntenancy";

export const NODE_NETWORK: NodeNetwork = {
  bridge: `${HOST_NAME_PREFIX}0`,
  address: "10.244.0.1",
  podCidr: "10.244.0.0/24",
  serviceCidr: "10.96.0.0/16",
  serviceIp: "10.96.0.1",
  dnsIp: "10.96.0.10",
  clusterDomain: "cluster.local",
};

const ISOLATION_COMMENT = "nats-tenancy-node-isolation";

// Changed by kubelet (kernel.*, vm.*), the CNI bridge plugin (ip_forward) or kube-proxy.
const SYSCTLS = [
  "net/ipv4/ip_forward",
  "net/ipv4/conf/all/route_localnet",
  "net/bridge/bridge-nf-call-iptables",
  "net/bridge/bridge-nf-call-ip6tables",
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

// Paths kubelet, containerd, libcni and the hostPath provisioner create whatever their flags say.
const HOST_PATHS = [
  "/var/lib/kubelet",
  "/var/log/pods",
  "/var/log/containers",
  "/usr/libexec/kubernetes",
  "/run/containerd",
  "/var/lib/cni",
  "/run/netns",
  "/tmp/hostpath_pv",
];

/** What the host looks like without a node: recorded before a node changes it. */
export interface HostSnapshot {
  sysctls: Record<string, string | undefined>;
  /** Those of HOST_PATHS that exist. */
  paths: string[];
  nftTables: string[];
}

export function hostSnapshot(): HostSnapshot {
  return {
    sysctls: Object.fromEntries(SYSCTLS.map((n) => [n, readSysctl(n)])),
    paths: HOST_PATHS.filter((p) => existsSync(p)),
    nftTables: nftTables(),
  };
}

function recordFile(stateDir: string): string {
  return `${stateDir}.host.json`;
}

function run(command: string, args: string[], input?: string): string {
  const result = spawnSync(command, args, { encoding: "utf8", input });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")}: ${result.stderr.trim() || `exit ${result.status}`}`,
    );
  }
  return result.stdout;
}

function tryRun(command: string, args: string[], input?: string): string {
  try {
    return run(command, args, input);
  } catch {
    return "";
  }
}

function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${name}`, "utf8").trim();
  } catch {
    return undefined;
  }
}

function nftTables(): string[] {
  return tryRun("nft", ["list", "tables"])
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("table "));
}

/**
 * Records the host's state, then makes the bridge, its address and the isolation rule. The
 * record is written before anything changes and removed only by a clean-up that restored
 * everything, so a crashed run's record survives until then.
 */
export function prepareHost(stateDir: string, network = NODE_NETWORK): void {
  const file = recordFile(stateDir);
  if (!existsSync(file)) writeFileSync(file, JSON.stringify(hostSnapshot()));
  mkdirSync(stateDir, { recursive: true });
  writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  if (!existsSync(`/sys/class/net/${network.bridge}`)) {
    run("ip", ["link", "add", network.bridge, "type", "bridge"]);
  }
  const prefix = network.podCidr.split("/")[1] ?? "24";
  run("ip", ["addr", "replace", `${network.address}/${prefix}`, "dev", network.bridge]);
  run("ip", ["link", "set", network.bridge, "up"]);
  // Nothing a pod sends may leave the bridge: no traffic from this node reaches another machine.
  // In mangle, which every forwarded packet meets before the filter rules kube-proxy prepends.
  const rule = ["FORWARD", "-i", network.bridge, "!", "-o", network.bridge];
  const tag = ["-m", "comment", "--comment", ISOLATION_COMMENT, "-j", "DROP"];
  for (const iptables of ["iptables", "ip6tables"]) {
    const present = spawnSync(iptables, ["-t", "mangle", "-C", ...rule, ...tag]).status === 0;
    if (!present) run(iptables, ["-t", "mangle", "-I", ...rule, ...tag]);
  }
}

/** Packets the isolation rule has dropped since the node started: pod packets bound off the bridge. */
export function isolationDrops(): number {
  const listing = run("iptables", ["-t", "mangle", "-L", "FORWARD", "-v", "-x", "-n"]);
  const line = listing.split("\n").find((l) => l.includes(ISOLATION_COMMENT));
  return Number(line?.trim().split(/\s+/)[0] ?? Number.NaN);
}

// The programs a node starts; matched together with the state directory in their flags, so
// that neither another containerd nor a `tail -f` of a node's log is taken for ours.
const NODE_PROGRAMS = new Set([
  "containerd",
  "containerd-shim-runc-v2",
  "runc",
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
]);

/** Running processes of a node whose state is in `stateDir`. */
function nodeProcesses(stateDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const program = readlinkSync(`/proc/${entry}/exe`).replace(/ \(deleted\)$/, "");
      if (!NODE_PROGRAMS.has(program.slice(program.lastIndexOf("/") + 1))) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmdline.includes(`${stateDir}/`) && isRunning(pid)) pids.push(pid);
    } catch {
      // a kernel thread (no exe), or gone meanwhile
    }
  }
  return pids;
}

/** Every kubepods cgroup directory, deepest first, in every hierarchy (cgroup v1 and v2). */
function podCgroups(): string[] {
  const roots = ["/sys/fs/cgroup"];
  try {
    for (const entry of readdirSync("/sys/fs/cgroup")) roots.push(join("/sys/fs/cgroup", entry));
  } catch {
    return [];
  }
  const found: string[] = [];
  const walk = (dir: string): void => {
    found.push(dir);
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return; // removed meanwhile
    }
    for (const name of entries) walk(join(dir, name));
  };
  for (const root of roots) {
    const dir = join(root, "kubepods");
    if (existsSync(dir)) walk(dir);
  }
  return found.sort((a, b) => b.length - a.length);
}

function pidsInCgroups(dirs: string[]): number[] {
  const pids = new Set<number>();
  for (const dir of dirs) {
    try {
      for (const line of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) {
        if (line.trim() !== "") pids.add(Number(line));
      }
    } catch {
      // removed meanwhile
    }
  }
  return [...pids].filter((pid) => isRunning(pid));
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Kills `find()`'s processes until none is left (zombies count as gone: init reaps them). */
function killAll(what: string, find: () => number[], timeoutMs = 10_000): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = find().filter((pid) => isRunning(pid));
    if (pids.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${what} survive SIGKILL: ${pids.join(", ")}`);
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    sleep(100);
  }
}

function ownLinks(): string[] {
  return readdirSync("/sys/class/net").filter((l) => l.startsWith(HOST_NAME_PREFIX));
}

function ownNetworkNamespaces(): string[] {
  return existsSync("/run/netns")
    ? readdirSync("/run/netns").filter((n) => n.startsWith(HOST_NAME_PREFIX))
    : [];
}

function mountsUnder(prefixes: string[]): string[] {
  const lines = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const points = lines
    .map((l) => l.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\(\d{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => prefixes.some((prefix) => p === prefix || p.startsWith(`${prefix}/`)));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Mounts of the node (everything is under its state directory) and of its tests' namespaces. */
function nodeMounts(stateDir: string): string[] {
  const netns = `/run/netns/${HOST_NAME_PREFIX}`;
  return [
    ...mountsUnder([stateDir]),
    ...mountsUnder(["/run/netns"]).filter((m) => m.startsWith(netns)),
  ];
}

const OWN_CHAIN = /^(KUBE-|CNI-)/;

/** iptables-restore input that removes every KUBE-/CNI- chain, the jumps to them and our rule. */
function iptablesCleanup(save: string): string {
  const out: string[] = [];
  let table = "";
  let deletes: string[] = [];
  let chains: string[] = [];
  const flush = (): void => {
    if (table && (deletes.length > 0 || chains.length > 0)) {
      out.push(
        `*${table}`,
        ...deletes,
        ...chains.map((c) => `-F ${c}`),
        ...chains.map((c) => `-X ${c}`),
        "COMMIT",
      );
    }
    deletes = [];
    chains = [];
  };
  for (const line of save.split("\n")) {
    if (line.startsWith("*")) {
      flush();
      table = line.slice(1);
    } else if (line.startsWith(":")) {
      const chain = line.slice(1).split(" ")[0] ?? "";
      if (OWN_CHAIN.test(chain)) chains.push(chain);
    } else if (line.startsWith("-A ")) {
      const chain = line.split(" ")[1] ?? "";
      const jumpsToOwn = / -j (KUBE-|CNI-)/.test(line);
      if (!OWN_CHAIN.test(chain) && (jumpsToOwn || line.includes(ISOLATION_COMMENT))) {
        deletes.push(`-D ${line.slice(3)}`);
      }
    } else if (line === "COMMIT") {
      flush();
      table = "";
    }
  }
  return out.length > 0 ? `${out.join("\n")}\n` : "";
}

function iptablesLeftovers(): string[] {
  const found: string[] = [];
  for (const iptables of ["iptables", "ip6tables"]) {
    for (const line of tryRun(`${iptables}-save`, []).split("\n")) {
      if (/KUBE-|CNI-/.test(line) || line.includes(ISOLATION_COMMENT))
        found.push(`${iptables}: ${line}`);
    }
  }
  return found;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Restores the host: kills what a node left (shims and containers outlive kubelet and
 * containerd), unmounts, removes its network namespaces and links, the iptables chains and
 * rules, new nft tables, the pod cgroups and the host paths it created, puts the sysctls back
 * and removes the state directory. Every step runs even if an earlier one failed; the record
 * of the host goes only when all succeeded, so a failure is retried by the next start. Safe to
 * run on a clean host; refuses to touch a host whose Kubernetes traces no node recorded.
 */
export function cleanHost(stateDir: string): void {
  const file = recordFile(stateDir);
  const record = existsSync(file)
    ? (JSON.parse(readFileSync(file, "utf8")) as HostSnapshot)
    : undefined;
  if (!record) {
    // The record is written before a node changes anything, so these belong to someone else.
    const foreign = [...podCgroups().map((d) => `cgroup ${d}`), ...iptablesLeftovers()];
    if (foreign.length > 0) {
      throw new Error(
        `this host has Kubernetes traces that no test node recorded (${foreign.slice(0, 3).join("; ")}): ` +
          `another Kubernetes node seems to run here, and the test node would wreck it`,
      );
    }
  }
  const problems: string[] = [];
  const step = (what: string, action: () => void): void => {
    try {
      action();
    } catch (error) {
      problems.push(`${what}: ${errorText(error)}`);
    }
  };
  step("node processes", () => {
    killAll("node processes", () => nodeProcesses(stateDir));
  });
  step("pod processes", () => {
    killAll("pod processes", () => pidsInCgroups(podCgroups()));
  });
  step("network namespaces", () => {
    for (const namespace of ownNetworkNamespaces()) run("ip", ["netns", "del", namespace]);
  });
  step("mounts", () => {
    for (const point of nodeMounts(stateDir)) tryRun("umount", ["--lazy", point]);
    const left = nodeMounts(stateDir);
    if (left.length > 0) throw new Error(`still mounted: ${left.join(", ")}`);
  });
  step("links", () => {
    for (const link of ownLinks()) run("ip", ["link", "del", link]);
  });
  step("iptables", () => {
    // A second pass covers a rule that kube-proxy or kubelet added while they were dying.
    for (let pass = 0; pass < 2 && iptablesLeftovers().length > 0; pass++) {
      for (const iptables of ["iptables", "ip6tables"]) {
        const script = iptablesCleanup(tryRun(`${iptables}-save`, []));
        if (script) tryRun(`${iptables}-restore`, ["--noflush"], script);
      }
    }
    const rules = iptablesLeftovers();
    if (rules.length > 0) throw new Error(`rules survive:\n${rules.join("\n")}`);
  });
  step("cgroups", () => {
    for (const dir of podCgroups()) rmdirSync(dir);
  });
  if (record) {
    step("nft tables", () => {
      const before = new Set(record.nftTables);
      for (const table of nftTables()) {
        if (before.has(table)) continue;
        const [, family, name] = table.split(" ");
        if (!family || !name) continue;
        const listing = run("nft", ["list", "table", family, name]);
        // Only empty ones: iptables-nft leaves its tables behind once our chains are gone.
        const hasRules = listing
          .split("\n")
          .some((l) => !/^\s*(table |chain |type |policy |\}|$)/.test(l));
        if (!hasRules) run("nft", ["delete", "table", family, name]);
      }
    });
    step("host paths", () => {
      for (const path of HOST_PATHS.filter((p) => !record.paths.includes(p))) {
        for (const point of mountsUnder([path])) tryRun("umount", ["--lazy", point]);
        // Never delete through a mount into someone else's files.
        if (mountsUnder([path]).length > 0) throw new Error(`${path} is still mounted`);
        rmSync(path, { recursive: true, force: true });
      }
    });
    step("sysctls", () => {
      for (const [name, value] of Object.entries(record.sysctls)) {
        if (value !== undefined && readSysctl(name) !== value) {
          writeFileSync(`/proc/sys/${name}`, value);
        }
      }
    });
  }
  if (nodeMounts(stateDir).length === 0) {
    step("state directory", () => {
      rmSync(stateDir, { recursive: true, force: true });
    });
  }
  if (problems.length > 0) {
    throw new Error(
      `the test node's clean-up left the host unclean (the next start tries again):\n${problems.join("\n")}`,
    );
  }
  rmSync(file, { force: true });
}

/** Every trace of a node on the host, one line each; empty when the host is as `before`. */
export function findLeftovers(stateDir: string, before: HostSnapshot): string[] {
  const found: string[] = [];
  for (const pid of nodeProcesses(stateDir)) found.push(`process ${pid}`);
  for (const pid of pidsInCgroups(podCgroups())) found.push(`pod process ${pid}`);
  for (const point of nodeMounts(stateDir)) found.push(`mount ${point}`);
  for (const link of ownLinks()) found.push(`link ${link}`);
  for (const namespace of ownNetworkNamespaces()) found.push(`netns ${namespace}`);
  // A pod's end of a veth pair that outlived its bridge has no master.
  for (const link of readdirSync("/sys/class/net")) {
    if (link.startsWith("veth") && !existsSync(`/sys/class/net/${link}/master`)) {
      found.push(`link ${link}`);
    }
  }
  found.push(...iptablesLeftovers());
  const tables = new Set(before.nftTables);
  for (const table of nftTables()) if (!tables.has(table)) found.push(`nft ${table}`);
  for (const dir of podCgroups()) found.push(`cgroup ${dir}`);
  for (const path of HOST_PATHS) {
    if (!before.paths.includes(path) && existsSync(path)) found.push(`path ${path}`);
  }
  for (const [name, value] of Object.entries(before.sysctls)) {
    const now = readSysctl(name);
    if (now !== value) found.push(`sysctl ${name}=${now ?? "?"} (was ${value ?? "?"})`);
  }
  if (existsSync(stateDir)) found.push(`dir ${stateDir}`);
  if (existsSync(recordFile(stateDir))) found.push(`file ${recordFile(stateDir)}`);
  return found;
}
