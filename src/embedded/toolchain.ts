/**
 * Provisions the binaries that the embedded control plane, the test node and the e2e tests run:
 * the Kubernetes components and etcd (built from a wrapper Go module), containerd, CoreDNS,
 * the pod sandbox program, every tested nats-server release and every tested helm line.
 *
 * Each tool is built once into a cache directory keyed by a hash of everything that decides
 * its bytes (pins, go.mod/go.sum, ldflags), so a pin change rebuilds and nothing else does.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const toolchainDir = join(repoRoot, "toolchain");

interface Pins {
  kubernetes: string;
  containerd: string;
  coredns: string;
  /** Oldest first; the last one is the default (the chart's and the demo's). */
  natsServers: string[];
  /** One per supported helm major line, oldest first. */
  helm: string[];
  helmKubeVersion: string;
  minGo: string;
}

/** A tested release of a program: a short label for test names, and its binary. */
export interface VersionedBinary {
  label: string;
  path: string;
}

export interface Toolchain {
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  kubelet: string;
  kubeControllerManager: string;
  kubeScheduler: string;
  kubeProxy: string;
  /** Directory holding containerd, containerd-shim-runc-v2 and ctr (containerd finds its shim on PATH). */
  containerdDir: string;
  coredns: string;
  /** The pod sandbox ("pause") program. */
  pause: string;
  /** The default helm: the v3 pin. */
  helm: string;
  /** Every helm line the chart is tested with. */
  helms: VersionedBinary[];
  /** Every nats-server the product is tested against, oldest first. */
  natsServers: VersionedBinary[];
  versions: { kubernetes: string; containerd: string; coredns: string };
}

export class ToolchainError extends Error {
  override name = "ToolchainError";
}

function readPins(): Pins {
  return JSON.parse(readFileSync(join(toolchainDir, "pins.json"), "utf8")) as Pins;
}

export function cacheRoot(): string {
  const explicit = process.env.NATS_TENANCY_CACHE;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), ".cache"), "nats-tenancy");
}

/** A Go build of one or more binaries, keyed so that any change to its inputs rebuilds. */
interface Recipe {
  name: string;
  version: string;
  binaries: string[];
  /** Inputs that decide the output besides the version: flags, module files. */
  keyMaterial: string[];
  build: (outDir: string) => Promise<void>;
}

function recipeDir(recipe: Recipe): string {
  const hash = createHash("sha256");
  for (const part of [recipe.version, ...recipe.binaries, ...recipe.keyMaterial]) {
    hash.update(part).update("\0");
  }
  return join(
    cacheRoot(),
    "bin",
    `${recipe.name}-${recipe.version}-${hash.digest("hex").slice(0, 12)}`,
  );
}

function majorMinor(version: string): [string, string] {
  const [major, minor] = version.replace(/^v/, "").split(".");
  if (!major || !minor) throw new ToolchainError(`bad version pin ${version}`);
  return [major, minor];
}

function kubeLdflags(version: string): string {
  const [major, minor] = majorMinor(version);
  // Without these /version reports v0.0.0-master, and kubeVersion checks (helm) misbehave.
  return ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]
    .flatMap((pkg) => [
      `-X ${pkg}.gitVersion=${version}`,
      `-X ${pkg}.gitMajor=${major}`,
      `-X ${pkg}.gitMinor=${minor}`,
      `-X ${pkg}.gitTreeState=clean`,
    ])
    .join(" ");
}

function helmLdflags(version: string, kubeVersion: string): string {
  const [helmMajor] = majorMinor(version);
  const [major, minor] = kubeVersion.split(".");
  const module = `helm.sh/helm/v${helmMajor}`;
  const flags = [`-s -w -X ${module}/internal/version.version=${version}`];
  // helm 3's lint checks deprecated APIs against this Kubernetes version, and `helm template`
  // checks a chart's kubeVersion against it, as its Makefile sets them (otherwise 1.20; helm 4
  // takes it from client-go).
  if (helmMajor === "3") {
    for (const pkg of ["pkg/lint/rules", "pkg/chartutil"]) {
      flags.push(
        `-X ${module}/${pkg}.k8sVersionMajor=${major ?? ""}`,
        `-X ${module}/${pkg}.k8sVersionMinor=${minor ?? ""}`,
      );
    }
  }
  return flags.join(" ");
}

const GO_ENV = { CGO_ENABLED: "0" };
const KUBE_COMMANDS = [
  "kube-apiserver",
  "kubectl",
  "kubelet",
  "kube-controller-manager",
  "kube-scheduler",
  "kube-proxy",
];

/** `go install module/cmd@version` of one or more commands of one module. */
function goInstall(
  name: string,
  version: string,
  commands: { path: string; binary: string }[],
  ldflags: string,
): Recipe {
  return {
    name,
    version,
    binaries: commands.map((c) => c.binary),
    keyMaterial: [ldflags, ...commands.map((c) => c.path)],
    build: (out) =>
      runGo(
        [
          "install",
          "-trimpath",
          "-ldflags",
          ldflags,
          ...commands.map((c) => `${c.path}@${version}`),
        ],
        repoRoot,
        { GOBIN: out },
      ),
  };
}

function recipes(pins: Pins): Recipe[] {
  const kubeModDir = join(toolchainDir, "kube");
  const pauseDir = join(toolchainDir, "pause");
  const goMod = readFileSync(join(kubeModDir, "go.mod"), "utf8");
  const goSum = readFileSync(join(kubeModDir, "go.sum"), "utf8");
  const pauseSource = readFileSync(join(pauseDir, "main.go"), "utf8");
  const kubeFlags = `-s -w ${kubeLdflags(pins.kubernetes)}`;
  const containerdModule = "github.com/containerd/containerd/v2";
  return [
    {
      name: "kube",
      version: pins.kubernetes,
      binaries: [...KUBE_COMMANDS, "etcd"],
      keyMaterial: [goMod, goSum, kubeFlags],
      build: async (out) => {
        await runGo(
          [
            "build",
            "-trimpath",
            "-ldflags",
            kubeFlags,
            "-o",
            `${out}/`,
            ...KUBE_COMMANDS.map((c) => `k8s.io/kubernetes/cmd/${c}`),
          ],
          kubeModDir,
        );
        // The etcd server release that k8s.io/apiserver requires, from the same module graph.
        await runGo(
          [
            "build",
            "-trimpath",
            "-ldflags",
            "-s -w",
            "-o",
            join(out, "etcd"),
            "go.etcd.io/etcd/server/v3",
          ],
          kubeModDir,
        );
      },
    },
    goInstall(
      "containerd",
      pins.containerd,
      ["containerd", "containerd-shim-runc-v2", "ctr"].map((binary) => ({
        path: `${containerdModule}/cmd/${binary}`,
        binary,
      })),
      `-s -w -X ${containerdModule}/version.Version=${pins.containerd}`,
    ),
    goInstall(
      "coredns",
      pins.coredns,
      [{ path: "github.com/coredns/coredns", binary: "coredns" }],
      "-s -w",
    ),
    {
      name: "pause",
      version: "1",
      binaries: ["pause"],
      keyMaterial: [pauseSource],
      build: (out) =>
        runGo(["build", "-trimpath", "-ldflags", "-s -w", "-o", join(out, "pause"), "."], pauseDir),
    },
    ...pins.natsServers.map((version) =>
      goInstall(
        "nats-server",
        version,
        [{ path: "github.com/nats-io/nats-server/v2", binary: "nats-server" }],
        "-s -w",
      ),
    ),
    ...pins.helm.map((version) => {
      const [major] = majorMinor(version);
      return goInstall(
        "helm",
        version,
        [{ path: `helm.sh/helm/v${major}/cmd/helm`, binary: "helm" }],
        helmLdflags(version, pins.helmKubeVersion),
      );
    }),
  ];
}

function runGo(args: string[], cwd: string, env: Record<string, string> = {}): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("go", args, {
      cwd,
      env: { ...process.env, ...GO_ENV, ...env },
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolvePromise();
      else reject(new ToolchainError(`go ${args.join(" ")} failed (${signal ?? `exit ${code}`})`));
    });
  });
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function checkGo(minGo: string): void {
  const result = spawnSync("go", ["env", "GOVERSION"], { encoding: "utf8" });
  if (result.error || result.status !== 0) {
    throw new ToolchainError(
      `Go ${minGo} or newer is needed to build the test binaries (Kubernetes, etcd, containerd, ` +
        `CoreDNS, nats-server, helm) but 'go' was not found on PATH. Install Go ` +
        `(https://go.dev/doc/install, or Debian's golang-go if it is recent enough), make sure the ` +
        `Go module proxy is reachable, and run again. Binaries are built once and cached in ${cacheRoot()}.`,
    );
  }
  const version = result.stdout.trim().replace(/^go/, "");
  if (compareVersions(version, minGo) < 0) {
    throw new ToolchainError(
      `Go ${minGo} or newer is needed to build the test binaries; found go${version}.`,
    );
  }
}

type Log = (line: string) => void;

/** Builds what is missing (printing progress through `log`) and returns every binary's path. */
export async function ensureToolchain(
  log: Log = (l) => process.stderr.write(`${l}\n`),
): Promise<Toolchain> {
  const pins = readPins();
  const dirs = new Map<string, string>();
  const all = recipes(pins);
  for (const [index, recipe] of all.entries()) {
    const dir = recipeDir(recipe);
    dirs.set(`${recipe.name}@${recipe.version}`, dir);
    if (existsSync(join(dir, ".complete"))) continue;
    checkGo(pins.minGo);
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const started = Date.now();
    log(
      `toolchain: [${index + 1}/${all.length}] building ${recipe.name} ${recipe.version} ` +
        `(${recipe.binaries.join(", ")}) into ${dir}; the first build takes minutes`,
    );
    await recipe.build(tmp);
    for (const binary of recipe.binaries) {
      if (!existsSync(join(tmp, binary)))
        throw new ToolchainError(`${recipe.name}: build produced no ${binary}`);
    }
    writeFileSync(join(tmp, ".complete"), `${new Date().toISOString()}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    log(`toolchain: built ${recipe.name} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const at = (name: string, version: string, binary: string): string =>
    join(dirs.get(`${name}@${version}`) ?? "", binary);
  const kube = (binary: string): string => at("kube", pins.kubernetes, binary);
  const helms = pins.helm.map((v) => ({ label: `helm-${v}`, path: at("helm", v, "helm") }));
  return {
    kubeApiserver: kube("kube-apiserver"),
    kubectl: kube("kubectl"),
    etcd: kube("etcd"),
    kubelet: kube("kubelet"),
    kubeControllerManager: kube("kube-controller-manager"),
    kubeScheduler: kube("kube-scheduler"),
    kubeProxy: kube("kube-proxy"),
    containerdDir: dirname(at("containerd", pins.containerd, "containerd")),
    coredns: at("coredns", pins.coredns, "coredns"),
    pause: at("pause", "1", "pause"),
    helm: helms.find((h) => h.label.startsWith("helm-v3"))?.path ?? "",
    helms,
    natsServers: pins.natsServers.map((v) => ({
      label: v,
      path: at("nats-server", v, "nats-server"),
    })),
    versions: { kubernetes: pins.kubernetes, containerd: pins.containerd, coredns: pins.coredns },
  };
}
