/**
 * Container images with no registry and no base image: host files (plus, for dynamically
 * linked executables, the loader and shared libraries they need) written as an OCI
 * image-layout tar for `ctr -n k8s.io images import`, so pods run them with
 * `imagePullPolicy: Never`.
 *
 * Archives are cached by content and byte-for-byte reproducible: the same files and settings
 * give the same archive, name and manifest digest, and an unchanged image is never rewritten.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { extract, pack, type Header, type Pack } from "tar-stream";
import { removeOnExit } from "./process.ts";

export interface ImageFile {
  /** A host file or directory (copied recursively); symlinks are followed. */
  source: string;
  /** Absolute path in the image. */
  path: string;
  /** Permission bits for `path` itself (not a directory's contents); the source's by default. */
  mode?: number;
}

export interface ImageSpec {
  /**
   * Full reference, e.g. "localhost/nats-tenancy/nats-server:v2.15.3"; ":latest" when it has
   * no tag. Give it a registry host: the kubelet expands "nats-server:v1" to docker.io/library.
   */
  name: string;
  files: ImageFile[];
  entrypoint: string[];
  cmd?: string[];
  /** PATH defaults to DEFAULT_PATH. */
  env?: Record<string, string>;
  workingDir?: string;
  /** e.g. "65534:65534" */
  user?: string;
  labels?: Record<string, string>;
}

export interface ImageArchive {
  /** The reference containerd lists after the import. */
  name: string;
  /** Path of the OCI image-layout tar. */
  archive: string;
  /** "sha256:<hex>" */
  manifestDigest: string;
  configDigest: string;
  bytes: number;
}

export const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

// Part of the cache key: bump it when the archive's layout or contents change for equal inputs.
const FORMAT = "nats-tenancy-oci-image/1";
const PLATFORM = { architecture: "amd64", os: "linux" };
const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar",
};
// Fixed metadata so that equal inputs give equal bytes; containerd uses the numeric ids.
const TAR_HEADER = { mtime: new Date(0), uid: 0, gid: 0, uname: "", gname: "" };

const PASSWD =
  "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n";
const GROUP = "root:x:0:\nnogroup:x:65534:\n";

type Entry =
  | { type: "directory"; mode: number }
  | { type: "file"; mode: number; size: number; source: string | Buffer; sha256?: string };

/** What every image has unless the caller supplies the path: enough for a non-root user. */
const DEFAULT_ENTRIES: [string, Entry][] = [
  ["/etc/passwd", fileEntry(PASSWD)],
  ["/etc/group", fileEntry(GROUP)],
  ["/tmp", { type: "directory", mode: 0o1777 }],
  ["/proc", { type: "directory", mode: 0o755 }],
  ["/sys", { type: "directory", mode: 0o755 }],
  ["/dev", { type: "directory", mode: 0o755 }],
];

function fileEntry(text: string): Entry {
  const source = Buffer.from(text);
  return { type: "file", mode: 0o644, size: source.length, source };
}

interface Blob {
  digest: string;
  size: number;
}

/**
 * Writes `spec` as `<cacheDir>/<name>-<key>.tar`, or returns that archive when an earlier call
 * wrote it. The key covers every setting and the sha256 of every file in the layer (streamed:
 * about 0.2 s for a 126 MB node binary, cheap enough that size+mtime shortcuts are not worth
 * their false hits).
 */
export async function writeImageArchive(spec: ImageSpec, cacheDir: string): Promise<ImageArchive> {
  const { name, tag } = parseName(spec.name);
  const entries = new Map<string, Entry>();
  for (const file of spec.files) {
    await addSource(entries, file.source, imagePath(file.path), file.mode, new Set());
  }
  await addSharedLibraries(entries);
  for (const [path, entry] of DEFAULT_ENTRIES) {
    if (!entries.has(path)) entries.set(path, entry);
  }
  addParents(entries);
  const entrypoint = spec.entrypoint[0];
  if (entrypoint?.startsWith("/") && entries.get(entrypoint)?.type !== "file") {
    throw new Error(`image ${name}: entrypoint ${entrypoint} is not among its files`);
  }

  const paths = [...entries.keys()].sort();
  const runtime = runtimeConfig(spec);
  const key = createHash("sha256").update(`${FORMAT}\0${name}\0${JSON.stringify(runtime)}\0`);
  for (const path of paths) {
    const entry = entries.get(path);
    if (entry?.type === "file") entry.sha256 = await sha256(entry.source);
    const content = entry?.type === "file" ? [entry.size, entry.sha256] : [];
    key.update(`${JSON.stringify([path, entry?.type, entry?.mode, ...content])}\n`);
  }
  // Cut so that the name and the temp suffixes stay within a file name's 255 bytes.
  const stemName = name.replace(/[^\w.-]+/g, "_").slice(0, 160);
  const archive = join(cacheDir, `${stemName}-${key.digest("hex").slice(0, 16)}.tar`);

  if (existsSync(archive)) {
    try {
      const digests = await readDigests(archive);
      // Marks it used: the sweep below removes archives no run has used for a while.
      const now = new Date();
      await utimes(archive, now, now);
      return { name, archive, ...digests, bytes: (await stat(archive)).size };
    } catch {
      // Unreadable (damaged by something else, since we only rename complete archives): rewrite.
    }
  }

  await mkdir(cacheDir, { recursive: true });
  await sweep(cacheDir);
  const stem = `${archive}.${process.pid}.${randomBytes(4).toString("hex")}`;
  const layerTemp = `${stem}.layer.tmp`;
  const archiveTemp = `${stem}.tmp`;
  const forget = [removeOnExit(layerTemp), removeOnExit(archiveTemp)];
  try {
    const layer = await writeTar(layerTemp, async (tar) => {
      for (const path of paths) {
        const entry = entries.get(path);
        if (entry) await addLayerEntry(tar, path, entry);
      }
    });
    const config = json({
      architecture: PLATFORM.architecture,
      os: PLATFORM.os,
      config: runtime,
      rootfs: { type: "layers", diff_ids: [layer.digest] },
    });
    const manifest = json({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: config.digest, size: config.size },
      layers: [{ mediaType: MEDIA.layer, digest: layer.digest, size: layer.size }],
    });
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.index,
      manifests: [
        {
          mediaType: MEDIA.manifest,
          digest: manifest.digest,
          size: manifest.size,
          platform: PLATFORM,
          annotations: {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": tag,
          },
        },
      ],
    });
    // index.json and the manifest come first so that a cache hit finds them without
    // reading past the layer.
    const outer = await writeTar(archiveTemp, async (tar) => {
      await addEntry(
        tar,
        { name: "oci-layout", mode: 0o644 },
        Buffer.from('{"imageLayoutVersion":"1.0.0"}'),
      );
      await addEntry(tar, { name: "index.json", mode: 0o644 }, index.bytes);
      await addEntry(tar, { name: "blobs/", type: "directory", mode: 0o755 });
      await addEntry(tar, { name: "blobs/sha256/", type: "directory", mode: 0o755 });
      for (const blob of [manifest, config]) {
        await addEntry(tar, { name: blobPath(blob.digest), mode: 0o644 }, blob.bytes);
      }
      await addEntry(
        tar,
        { name: blobPath(layer.digest), mode: 0o644, size: layer.size },
        layerTemp,
      );
    });
    await rename(archiveTemp, archive);
    return {
      name,
      archive,
      manifestDigest: manifest.digest,
      configDigest: config.digest,
      bytes: outer.size,
    };
  } finally {
    for (const stop of forget) stop();
    await rm(layerTemp, { force: true });
    await rm(archiveTemp, { force: true });
  }
}

function parseName(reference: string): { name: string; tag: string } {
  if (reference.includes("@")) throw new Error(`image name ${reference}: give a tag, not a digest`);
  const colon = reference.lastIndexOf(":");
  if (colon <= reference.lastIndexOf("/")) return { name: `${reference}:latest`, tag: "latest" };
  const tag = reference.slice(colon + 1);
  if (!/^\w[\w.-]{0,127}$/.test(tag)) throw new Error(`image name ${reference}: bad tag`);
  return { name: reference, tag };
}

function imagePath(path: string): string {
  if (!path.startsWith("/")) throw new Error(`image path ${path} is not absolute`);
  const normal = posix.normalize(path);
  return normal.length > 1 ? normal.replace(/\/$/, "") : normal;
}

function runtimeConfig(spec: ImageSpec): Record<string, unknown> {
  const env = { PATH: DEFAULT_PATH, ...spec.env };
  return {
    User: spec.user,
    Env: Object.entries(env)
      .sort(([a], [b]) => compare(a, b))
      .map(([key, value]) => `${key}=${value}`),
    Entrypoint: spec.entrypoint,
    Cmd: spec.cmd,
    WorkingDir: spec.workingDir,
    Labels:
      spec.labels &&
      Object.fromEntries(Object.entries(spec.labels).sort(([a], [b]) => compare(a, b))),
  };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `ancestors` holds the directories being copied (as dev:inode), to stop symlink loops. */
async function addSource(
  entries: Map<string, Entry>,
  source: string,
  path: string,
  mode: number | undefined,
  ancestors: Set<string>,
): Promise<void> {
  const info = await stat(source);
  if (info.isFile()) {
    if (path === "/") throw new Error(`${source} is a file and cannot be the image's root`);
    if (entries.has(path)) throw new Error(`image path ${path} is given twice`);
    entries.set(path, { type: "file", mode: mode ?? info.mode & 0o7777, size: info.size, source });
  } else if (info.isDirectory()) {
    const id = `${info.dev}:${info.ino}`;
    if (ancestors.has(id)) throw new Error(`symlink loop at ${source}`);
    const existing = entries.get(path);
    if (existing?.type === "file") throw new Error(`image path ${path} is given twice`);
    // Two sources may fill one directory; the first decides its mode.
    if (!existing && path !== "/")
      entries.set(path, { type: "directory", mode: mode ?? info.mode & 0o7777 });
    const inner = new Set(ancestors).add(id);
    for (const child of (await readdir(source)).sort(compare)) {
      await addSource(entries, join(source, child), posix.join(path, child), undefined, inner);
    }
  } else {
    throw new Error(`${source} is neither a file nor a directory`);
  }
}

/**
 * The loader and the libraries of every dynamically linked executable, at their host paths,
 * unless the caller put something there. ldd lists the whole closure, so its output is not
 * fed back in.
 */
async function addSharedLibraries(entries: Map<string, Entry>): Promise<void> {
  const needed = new Set<string>();
  for (const entry of entries.values()) {
    if (entry.type !== "file" || typeof entry.source !== "string") continue;
    const interpreter = await elfInterpreter(entry.source);
    if (interpreter === undefined) continue;
    needed.add(interpreter);
    for (const library of sharedLibraries(entry.source)) needed.add(library);
  }
  for (const library of [...needed].sort(compare)) {
    const path = imagePath(library);
    if (!entries.has(path)) await addSource(entries, library, path, undefined, new Set());
  }
}

const PT_INTERP = 3;

/**
 * The PT_INTERP path (the dynamic loader) an ELF file names, or undefined for anything that
 * is not ELF or has none: static executables such as CGO_ENABLED=0 Go binaries, and libraries.
 */
async function elfInterpreter(file: string): Promise<string | undefined> {
  const handle = await open(file, "r");
  try {
    const header = Buffer.alloc(64);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    if (bytesRead < 52 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const wide = header[4] === 2;
    const little = header[5] === 1;
    if ((!wide && header[4] !== 1) || (!little && header[5] !== 2)) return undefined;
    if (wide && bytesRead < 64) return undefined;
    const u16 = (b: Buffer, at: number) => (little ? b.readUInt16LE(at) : b.readUInt16BE(at));
    const u32 = (b: Buffer, at: number) => (little ? b.readUInt32LE(at) : b.readUInt32BE(at));
    const word = (b: Buffer, at: number) =>
      wide ? Number(little ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)) : u32(b, at);
    const tableOffset = word(header, wide ? 0x20 : 0x1c);
    const entrySize = u16(header, wide ? 0x36 : 0x2a);
    const count = u16(header, wide ? 0x38 : 0x2c);
    if (count === 0 || entrySize < (wide ? 56 : 32)) return undefined;
    const table = Buffer.alloc(entrySize * count);
    if ((await handle.read(table, 0, table.length, tableOffset)).bytesRead < table.length) {
      return undefined;
    }
    for (let at = 0; at < table.length; at += entrySize) {
      if (u32(table, at) !== PT_INTERP) continue;
      const offset = word(table, at + (wide ? 0x08 : 0x04));
      const size = Math.min(word(table, at + (wide ? 0x20 : 0x10)), 4096);
      const path = Buffer.alloc(size);
      await handle.read(path, 0, size, offset);
      return path.toString("utf8").replace(/\0[^]*$/, "");
    }
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Host paths of the libraries and loader `ldd` reports (linux-vdso is in the kernel). */
function sharedLibraries(file: string): string[] {
  let output: string;
  try {
    output = execFileSync("ldd", [file], {
      encoding: "utf8",
      env: { ...process.env, LC_ALL: "C" },
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`ldd ${file} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
  const libraries: string[] = [];
  for (const line of output.split("\n")) {
    if (line.includes("linux-vdso")) continue;
    if (/=>\s*not found/.test(line)) {
      throw new Error(`${file} needs ${line.trim().split(/\s/)[0] ?? ""}, which ldd did not find`);
    }
    const path = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)/.exec(line)?.[1];
    if (path) libraries.push(path);
  }
  return libraries;
}

function addParents(entries: Map<string, Entry>): void {
  for (const path of [...entries.keys()]) {
    for (let parent = posix.dirname(path); parent !== "/"; parent = posix.dirname(parent)) {
      const existing = entries.get(parent);
      if (existing?.type === "file")
        throw new Error(`image path ${parent} is a file but holds ${path}`);
      if (existing) break;
      entries.set(parent, { type: "directory", mode: 0o755 });
    }
  }
}

async function sha256(source: string | Buffer): Promise<string> {
  const hash = createHash("sha256");
  if (typeof source !== "string") return hash.update(source).digest("hex");
  for await (const chunk of createReadStream(source, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

function json(value: unknown): Blob & { bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify(value));
  return {
    bytes,
    digest: `sha256:${createHash("sha256").update(bytes).digest("hex")}`,
    size: bytes.length,
  };
}

function blobPath(digest: string): string {
  return `blobs/sha256/${digest.slice("sha256:".length)}`;
}

async function addLayerEntry(tar: Pack, path: string, entry: Entry): Promise<void> {
  const name = path.slice(1);
  if (entry.type === "directory") {
    await addEntry(tar, { name: `${name}/`, type: "directory", mode: entry.mode });
  } else {
    await addEntry(tar, { name, mode: entry.mode, size: entry.size }, entry.source, entry.sha256);
  }
}

/**
 * Adds one entry; a string body is a file streamed in (its header must carry the size). With
 * `expected`, fails if the content no longer has that sha256, so a file edited after the cache
 * key was computed cannot end up in an archive named for its old content.
 */
async function addEntry(
  tar: Pack,
  header: Partial<Header> & { name: string },
  body?: Buffer | string,
  expected?: string,
): Promise<void> {
  const full = { type: "file" as const, ...TAR_HEADER, ...header };
  if (typeof body !== "string") {
    await openEntry(tar, full, body).finished;
    return;
  }
  const { sink, finished } = openEntry(tar, full);
  const hash = createHash("sha256");
  try {
    await pipeline(
      createReadStream(body, { highWaterMark: 1 << 20 }),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          yield chunk;
        }
      },
      sink,
    );
    await finished;
  } catch (error) {
    throw new Error(`adding ${body} to the image: ${String(error)}`, { cause: error });
  }
  if (expected !== undefined && hash.digest("hex") !== expected) {
    throw new Error(`${body} changed while the image was being written`);
  }
}

function openEntry(tar: Pack, header: Partial<Header> & { name: string }, body?: Buffer) {
  let sink!: ReturnType<Pack["entry"]>;
  const finished = new Promise<void>((resolve, reject) => {
    sink = body
      ? tar.entry(header, body, settle(resolve, reject))
      : tar.entry(header, settle(resolve, reject));
  });
  finished.catch(() => undefined);
  // Its errors reach the entry's callback too; streamx throws those nobody listens for.
  sink.on("error", () => undefined);
  return { sink, finished };
}

function settle(resolve: () => void, reject: (error: Error) => void) {
  return (error?: Error | null) => {
    if (error) reject(error);
    else resolve();
  };
}

/** Packs `fill`'s entries into `target`, hashing exactly the bytes written. */
async function writeTar(target: string, fill: (tar: Pack) => Promise<void>): Promise<Blob> {
  const tar = pack();
  const hash = createHash("sha256");
  let size = 0;
  const written = pipeline(
    tar as AsyncIterable<Buffer>,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(target),
  );
  written.catch(() => undefined);
  try {
    await fill(tar);
    tar.finalize();
    await written;
  } catch (error) {
    tar.destroy(error as Error);
    await written.catch(() => undefined);
    throw error;
  }
  return { digest: `sha256:${hash.digest("hex")}`, size };
}

/** The manifest and config digests of an archive this module wrote, from its first entries. */
async function readDigests(
  archive: string,
): Promise<{ manifestDigest: string; configDigest: string }> {
  const input = createReadStream(archive);
  const entries = extract();
  input.on("error", (error) => {
    entries.destroy(error);
  });
  input.pipe(entries);
  let manifestDigest: string | undefined;
  try {
    for await (const entry of entries) {
      const { name } = entry.header;
      const wanted = name === "index.json" || (manifestDigest && name === blobPath(manifestDigest));
      const chunks: Buffer[] = [];
      for await (const chunk of entry) if (wanted) chunks.push(chunk as Buffer);
      const text = Buffer.concat(chunks).toString("utf8");
      if (name === "index.json") {
        const index = JSON.parse(text) as { manifests: { digest: string }[] };
        manifestDigest = index.manifests[0]?.digest;
      } else if (wanted && manifestDigest) {
        const manifest = JSON.parse(text) as { config: { digest: string } };
        return { manifestDigest, configDigest: manifest.config.digest };
      }
    }
  } finally {
    input.destroy();
    entries.destroy();
  }
  throw new Error(`${archive} has no index.json or manifest`);
}

// Every edit of an image's files makes a new archive (a Node.js image is over 100 MB).
const UNUSED_MS = 2 * 24 * 60 * 60 * 1000;

/**
 * Removes archives no run has used for two days, and temp files of processes that died
 * before their cleanup ran (SIGKILL, power loss).
 */
async function sweep(cacheDir: string): Promise<void> {
  for (const file of await readdir(cacheDir)) {
    const path = join(cacheDir, file);
    const owner = /\.(\d+)\.[0-9a-f]{8}\.(?:layer\.)?tmp$/.exec(file)?.[1];
    if (owner && Number(owner) !== process.pid && !existsSync(`/proc/${owner}`)) {
      await rm(path, { force: true });
    } else if (file.endsWith(".tar")) {
      const info = await stat(path).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > UNUSED_MS) await rm(path, { force: true });
    }
  }
}
