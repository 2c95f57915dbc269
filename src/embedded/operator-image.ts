/**
 * The operator image for the test node, built from the repository's own Dockerfile, so the
 * image the tests install is the image users build. No registry is reachable here, so the
 * Dockerfile's base (NODE_IMAGE) is a local one: the pinned Node.js binary and npm, written by
 * the OCI writer at the paths the public node image uses. Debian's buildah builds it (vfs
 * storage, chroot isolation: no daemon, nothing mounted on the host); the result is an OCI
 * archive cached by the content of everything the build reads.
 */
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from "node:fs";
import { delimiter, dirname, join, relative } from "node:path";
import { nodeBinary, nodeImage } from "./node-images.ts";
import { writeImageArchive } from "./oci-image.ts";
import { runCommand } from "./process.ts";
import { ownedTempDir } from "./tempdir.ts";
import { cacheRoot } from "./toolchain.ts";

const REPOSITORY_ROOT = join(import.meta.dirname, "../..");
const BUILDAH = "/usr/bin/buildah";
export const OPERATOR_IMAGE_REPOSITORY = "localhost/nats-tenancy/operator";
// Part of the cache key: bump it when the way the image is built changes.
const FORMAT = "nats-tenancy-operator-image/1";
// Where the public image has npm; the Dockerfile runs it by this path.
const NPM_PATH = "/usr/local/lib/node_modules/npm";
// A TLS-intercepting proxy between this machine and the npm registry is trusted by the host's
// bundle; the build sees it read-only.
const HOST_CERTIFICATES = "/etc/ssl/certs";

export class OperatorImageError extends Error {
  override name = "OperatorImageError";
}

/** The npm the machine runs (the `node` package brings no npm of its own). */
function npmDirectory(): string {
  const execPath = process.env.npm_execpath;
  const candidates = [
    ...(execPath ? [join(dirname(execPath), "..")] : []),
    ...(process.env.PATH ?? "")
      .split(delimiter)
      .filter((dir) => existsSync(join(dir, "npm")))
      .map((dir) => join(dirname(realpathSync(join(dir, "npm"))), "..")),
  ];
  for (const dir of candidates) {
    const manifest = join(dir, "package.json");
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "npm"
    )
      return realpathSync(dir);
  }
  throw new OperatorImageError("npm not found on PATH: the operator image's base needs it");
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

/** Everything the Dockerfile reads from the build context (see .dockerignore). */
function contextFiles(): string[] {
  return [
    "Dockerfile",
    ".dockerignore",
    "package.json",
    "package-lock.json",
    ...filesUnder(join(REPOSITORY_ROOT, "src")).map((file) => relative(REPOSITORY_ROOT, file)),
  ];
}

/** Why the image cannot be built here, if it cannot. */
export function operatorImageUnavailableReason(): string | undefined {
  return existsSync(BUILDAH)
    ? undefined
    : `${BUILDAH} not found: install Debian's buildah (.ci/run does)`;
}

export interface BuiltImage {
  /** The reference containerd lists after the import. */
  name: string;
  /** Path of the OCI archive. */
  archive: string;
  /** Size of the archive (compressed layers). */
  bytes: number;
}

export interface OperatorImageOptions {
  log?: (line: string) => void;
}

export async function buildOperatorImage(options: OperatorImageOptions = {}): Promise<BuiltImage> {
  const unavailable = operatorImageUnavailableReason();
  if (unavailable) throw new OperatorImageError(unavailable);
  const imagesDir = join(cacheRoot(), "images");
  mkdirSync(imagesDir, { recursive: true });
  const nodeVersion = (
    JSON.parse(readFileSync(join(dirname(nodeBinary()), "..", "package.json"), "utf8")) as {
      version: string;
    }
  ).version;
  const base = await writeImageArchive(
    {
      ...nodeImage(
        `localhost/nats-tenancy/node-base:${nodeVersion}`,
        [{ source: npmDirectory(), path: NPM_PATH }],
        [],
      ),
    },
    imagesDir,
  );
  const key = createHash("sha256").update(`${FORMAT}\0${base.manifestDigest}\0`);
  for (const file of contextFiles()) {
    key
      .update(`${file}\0`)
      .update(readFileSync(join(REPOSITORY_ROOT, file)))
      .update("\0");
  }
  const tag = key.digest("hex").slice(0, 16);
  const name = `${OPERATOR_IMAGE_REPOSITORY}:${tag}`;
  const archive = join(imagesDir, `operator-${tag}.tar`);
  if (existsSync(archive)) {
    // The image cache sweeps archives no run has touched for two days.
    const now = new Date();
    utimesSync(archive, now, now);
  } else {
    const started = Date.now();
    options.log?.(`building ${name} from the Dockerfile with buildah`);
    const work = ownedTempDir("buildah");
    try {
      const storage = [
        "--root",
        join(work.dir, "root"),
        "--runroot",
        join(work.dir, "run"),
        "--storage-driver",
        "vfs",
      ];
      const env = { ...process.env, BUILDAH_ISOLATION: "chroot" };
      await runCommand(
        BUILDAH,
        [
          ...storage,
          "bud",
          "--pull-never",
          "--build-arg",
          `NODE_IMAGE=oci-archive:${base.archive}`,
          "--build-arg",
          `NODE_EXTRA_CA_CERTS=${HOST_CERTIFICATES}/ca-certificates.crt`,
          "--volume",
          `${HOST_CERTIFICATES}:${HOST_CERTIFICATES}:ro`,
          "--tag",
          name,
          ".",
        ],
        { cwd: REPOSITORY_ROOT, env },
      );
      // Beside the cache entry, so the rename that publishes it is atomic.
      const written = `${archive}.${String(process.pid)}.tmp`;
      try {
        await runCommand(BUILDAH, [...storage, "push", name, `oci-archive:${written}:${name}`], {
          env,
        });
        renameSync(written, archive);
      } finally {
        rmSync(written, { force: true });
      }
    } finally {
      work.release();
    }
    options.log?.(`built ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  return { name, archive, bytes: statSync(archive).size };
}
