/**
 * Provisions the binaries that the embedded control plane and the e2e tests run:
 * kube-apiserver, kubectl and etcd (built from a wrapper Go module), nats-server (Debian's
 * package and a recent release built from its Go module) and helm.
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
  natsServer: string;
  helm: string;
  helmKubeVersion: string;
  minGo: string;
}

export interface Toolchain {
  kubeApiserver: string;
  kubectl: string;
  etcd: string;
  helm: string;
  /** Every nats-server the product is tested against, oldest first. */
  natsServers: NatsServerBinary[];
}

export interface NatsServerBinary {
  /** Short label for test names, e.g. "debian-2.9.10" or "v2.12.15". */
  label: string;
  path: string;
}

export class ToolchainError extends Error {
  override name = "ToolchainError";
}

export const DEBIAN_NATS_SERVER = "/usr/sbin/nats-server";

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

function kubeLdflags(version: string): string {
  const [major, minor] = version.replace(/^v/, "").split(".");
  if (!major || !minor) throw new ToolchainError(`bad kubernetes pin ${version}`);
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

function helmLdflags(pins: Pins): string {
  const [major, minor] = pins.helmKubeVersion.split(".");
  return [
    `-X helm.sh/helm/v3/internal/version.version=${pins.helm}`,
    // The default capabilities for `helm template`, as helm's own Makefile sets them.
    `-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major ?? ""}`,
    `-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor ?? ""}`,
    `-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major ?? ""}`,
    `-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor ?? ""}`,
  ].join(" ");
}

const GO_ENV = { CGO_ENABLED: "0" };

function recipes(pins: Pins): Recipe[] {
  const kubeModDir = join(toolchainDir, "kube");
  const goMod = readFileSync(join(kubeModDir, "go.mod"), "utf8");
  const goSum = readFileSync(join(kubeModDir, "go.sum"), "utf8");
  const kubeFlags = `-s -w ${kubeLdflags(pins.kubernetes)}`;
  const natsFlags = "-s -w";
  const helmFlags = `-s -w ${helmLdflags(pins)}`;
  return [
    {
      name: "kube",
      version: pins.kubernetes,
      binaries: ["kube-apiserver", "kubectl", "etcd"],
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
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kubectl",
          ],
          kubeModDir,
        );
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
    {
      name: "nats-server",
      version: pins.natsServer,
      binaries: ["nats-server"],
      keyMaterial: [natsFlags],
      build: (out) =>
        runGo(
          [
            "install",
            "-trimpath",
            "-ldflags",
            natsFlags,
            `github.com/nats-io/nats-server/v2@${pins.natsServer}`,
          ],
          repoRoot,
          { GOBIN: out },
        ),
    },
    {
      name: "helm",
      version: pins.helm,
      binaries: ["helm"],
      keyMaterial: [helmFlags],
      build: (out) =>
        runGo(
          ["install", "-trimpath", "-ldflags", helmFlags, `helm.sh/helm/v3/cmd/helm@${pins.helm}`],
          repoRoot,
          { GOBIN: out },
        ),
    },
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
      `Go ${minGo} or newer is needed to build the test binaries (kube-apiserver, etcd, ` +
        `nats-server, helm) but 'go' was not found on PATH. Install Go (https://go.dev/doc/install, ` +
        `or Debian's golang-go if it is recent enough), make sure the Go module proxy is ` +
        `reachable, and run again. Binaries are built once and cached in ${cacheRoot()}.`,
    );
  }
  const version = result.stdout.trim().replace(/^go/, "");
  if (compareVersions(version, minGo) < 0) {
    throw new ToolchainError(
      `Go ${minGo} or newer is needed to build the test binaries; found go${version}.`,
    );
  }
}

function debianNatsServer(): NatsServerBinary {
  if (!existsSync(DEBIAN_NATS_SERVER)) {
    throw new ToolchainError(
      `${DEBIAN_NATS_SERVER} is missing: install Debian's package with 'apt-get install nats-server' ` +
        `(the tests run every NATS feature against it as well as against a recent release).`,
    );
  }
  const out = spawnSync(DEBIAN_NATS_SERVER, ["--version"], { encoding: "utf8" });
  const version = /v?(\d+\.\d+\.\d+)/.exec(out.stdout)?.[1] ?? "unknown";
  return { label: `debian-${version}`, path: DEBIAN_NATS_SERVER };
}

type Log = (line: string) => void;

/** Builds what is missing (printing progress through `log`) and returns every binary's path. */
export async function ensureToolchain(
  log: Log = (l) => process.stderr.write(`${l}\n`),
): Promise<Toolchain> {
  const pins = readPins();
  const natsDebian = debianNatsServer();
  const dirs = new Map<string, string>();
  for (const recipe of recipes(pins)) {
    const dir = recipeDir(recipe);
    dirs.set(recipe.name, dir);
    if (existsSync(join(dir, ".complete"))) continue;
    checkGo(pins.minGo);
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    const started = Date.now();
    log(
      `toolchain: building ${recipe.name} ${recipe.version} (${recipe.binaries.join(", ")}) into ${dir}; ` +
        `the first build takes several minutes`,
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
  const at = (name: string, binary: string): string => join(dirs.get(name) ?? "", binary);
  return {
    kubeApiserver: at("kube", "kube-apiserver"),
    kubectl: at("kube", "kubectl"),
    etcd: at("kube", "etcd"),
    helm: at("helm", "helm"),
    natsServers: [natsDebian, { label: pins.natsServer, path: at("nats-server", "nats-server") }],
  };
}
