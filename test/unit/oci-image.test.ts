import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { extract, type Header } from "tar-stream";
import {
  DEFAULT_PATH,
  writeImageArchive,
  type ImageArchive,
  type ImageSpec,
} from "../../src/embedded/oci-image.ts";

interface TarEntry {
  header: Header;
  data: Buffer;
}

/** Entries in archive order (a Map keeps insertion order). */
async function untar(bytes: Buffer): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const reader = extract();
  reader.end(bytes);
  for await (const entry of reader) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.set(entry.header.name, { header: entry.header, data: Buffer.concat(chunks) });
  }
  return entries;
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string };
  annotations?: Record<string, string>;
}

interface Layout {
  outer: Map<string, TarEntry>;
  index: { schemaVersion: number; mediaType: string; manifests: Descriptor[] };
  manifest: { schemaVersion: number; mediaType: string; config: Descriptor; layers: Descriptor[] };
  config: {
    architecture: string;
    os: string;
    config: Record<string, unknown>;
    rootfs: { type: string; diff_ids: string[] };
  };
  layer: Map<string, TarEntry>;
}

function blob(outer: Map<string, TarEntry>, digest: string): Buffer {
  const entry = outer.get(`blobs/sha256/${digest.replace(/^sha256:/, "")}`);
  assert.ok(entry, `blob ${digest} is in the archive`);
  return entry.data;
}

async function readLayout(archive: string): Promise<Layout> {
  const outer = await untar(readFileSync(archive));
  const json = (bytes: Buffer): unknown => JSON.parse(bytes.toString("utf8"));
  const index = json(outer.get("index.json")?.data ?? Buffer.from("null")) as Layout["index"];
  const manifestDigest = index.manifests[0]?.digest ?? "";
  const manifest = json(blob(outer, manifestDigest)) as Layout["manifest"];
  const config = json(blob(outer, manifest.config.digest)) as Layout["config"];
  const layer = await untar(blob(outer, manifest.layers[0]?.digest ?? ""));
  return { outer, index, manifest, config, layer };
}

/** ldd's view of /bin/true: libc's path and the loader's. */
function trueLibraries(): { libc: string; loader: string } {
  const output = execFileSync("ldd", ["/bin/true"], { encoding: "utf8" });
  const libc = /libc\.so\.6 => (\/\S+)/.exec(output)?.[1];
  const loader = /^\s*(\/\S+) \(0x/m.exec(output)?.[1];
  assert.ok(libc && loader, `ldd /bin/true lists libc and the loader:\n${output}`);
  return { libc, loader };
}

describe("OCI image archives", () => {
  const root = mkdtempSync(join(tmpdir(), "nats-tenancy-oci-image-test-"));
  const src = join(root, "src");
  const hello = join(src, "hello.txt");
  const confDir = join(src, "conf");
  // Stands in for a CGO_ENABLED=0 Go binary: executable, but not a dynamic ELF file.
  const staticBinary = join(src, "static-server");
  let spec: ImageSpec;
  let image: ImageArchive;
  let layout: Layout;

  before(async () => {
    mkdirSync(confDir, { recursive: true });
    writeFileSync(hello, "hello\n");
    chmodSync(hello, 0o640);
    writeFileSync(join(confDir, "a.conf"), "a = 1\n");
    chmodSync(join(confDir, "a.conf"), 0o600);
    writeFileSync(join(confDir, "b.conf"), "b = 2\n");
    chmodSync(join(confDir, "b.conf"), 0o644);
    chmodSync(confDir, 0o750);
    writeFileSync(staticBinary, "#!/not/really\n");
    chmodSync(staticBinary, 0o755);
    spec = {
      name: "localhost/nats-tenancy/test:v1",
      files: [
        { source: hello, path: "/srv/hello.txt" },
        { source: confDir, path: "/etc/app" },
        { source: staticBinary, path: "/usr/local/bin/static-server" },
        { source: "/bin/true", path: "/usr/bin/true", mode: 0o555 },
      ],
      entrypoint: ["/usr/bin/true"],
      cmd: ["--version"],
      env: { GREETING: "hi" },
      workingDir: "/srv",
      user: "65534:65534",
      labels: { "org.example.purpose": "test" },
    };
    image = await writeImageArchive(spec, join(root, "cache-a"));
    layout = await readLayout(image.archive);
  });

  after(() => {
    rmSync(root, { recursive: true, force: true });
  });

  test("it is an OCI image layout whose blobs match their digests and sizes", () => {
    const { outer, index, manifest, config } = layout;
    assert.equal(image.name, "localhost/nats-tenancy/test:v1");
    assert.equal(image.bytes, statSync(image.archive).size);
    assert.match(image.archive, /\/localhost_nats-tenancy_test_v1-[0-9a-f]{16}\.tar$/);
    assert.deepEqual(JSON.parse(outer.get("oci-layout")?.data.toString() ?? ""), {
      imageLayoutVersion: "1.0.0",
    });

    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.equal(index.manifests.length, 1);
    const [descriptor] = index.manifests;
    assert.deepEqual(descriptor?.platform, { architecture: "amd64", os: "linux" });
    assert.deepEqual(descriptor.annotations, {
      "io.containerd.image.name": "localhost/nats-tenancy/test:v1",
      "org.opencontainers.image.ref.name": "v1",
    });
    assert.equal(descriptor.digest, image.manifestDigest);

    for (const [name, entry] of outer) {
      if (!name.startsWith("blobs/sha256/") || entry.header.type !== "file") continue;
      assert.equal(sha256(entry.data), `sha256:${name.slice("blobs/sha256/".length)}`, name);
    }
    const descriptors = [descriptor, manifest.config, ...manifest.layers];
    for (const { digest, size } of descriptors) assert.equal(blob(outer, digest).length, size);
    assert.equal(outer.size, 4 + descriptors.length, "oci-layout, index.json, 2 dirs, blobs");

    assert.equal(manifest.schemaVersion, 2);
    assert.equal(manifest.mediaType, "application/vnd.oci.image.manifest.v1+json");
    assert.equal(manifest.config.mediaType, "application/vnd.oci.image.config.v1+json");
    assert.equal(manifest.config.digest, image.configDigest);
    assert.equal(manifest.layers.length, 1);
    assert.equal(manifest.layers[0]?.mediaType, "application/vnd.oci.image.layer.v1.tar");
    assert.deepEqual(config.rootfs, { type: "layers", diff_ids: [manifest.layers[0].digest] });
    assert.equal(config.architecture, "amd64");
    assert.equal(config.os, "linux");
    assert.deepEqual(config.config, {
      User: "65534:65534",
      Env: ["GREETING=hi", `PATH=${DEFAULT_PATH}`],
      Entrypoint: ["/usr/bin/true"],
      Cmd: ["--version"],
      WorkingDir: "/srv",
      Labels: { "org.example.purpose": "test" },
    });
  });

  test("the layer holds the files with their modes, sorted, parents first", () => {
    const { layer } = layout;
    const file = (name: string) => {
      const entry = layer.get(name);
      assert.ok(entry, `${name} is in the layer`);
      return entry;
    };
    assert.equal(file("srv/hello.txt").data.toString(), "hello\n");
    assert.equal(file("srv/hello.txt").header.mode, 0o640);
    assert.equal(file("etc/app/").header.type, "directory");
    assert.equal(file("etc/app/").header.mode, 0o750);
    assert.equal(file("etc/app/a.conf").data.toString(), "a = 1\n");
    assert.equal(file("etc/app/a.conf").header.mode, 0o600);
    assert.equal(file("etc/app/b.conf").header.mode, 0o644);
    assert.equal(file("usr/local/bin/static-server").header.mode, 0o755);
    assert.deepEqual(file("usr/bin/true").data, readFileSync("/bin/true"));
    assert.equal(file("usr/bin/true").header.mode, 0o555);
    for (const dir of ["srv/", "usr/", "usr/local/", "usr/local/bin/", "etc/"]) {
      assert.equal(file(dir).header.mode, 0o755, dir);
    }

    const names = [...layer.keys()];
    assert.deepEqual(names, [...names].sort());
    for (const [name, { header }] of layer) {
      assert.equal(header.mtime.getTime(), 0, name);
      assert.equal(header.uid, 0, name);
      assert.equal(header.gid, 0, name);
      const parent = name.replace(/[^/]+\/?$/, "");
      if (parent)
        assert.ok(names.indexOf(parent) < names.indexOf(name), `${parent} before ${name}`);
    }
  });

  test("every image gets users, groups, /tmp and mount points", () => {
    const { layer } = layout;
    assert.match(layer.get("etc/passwd")?.data.toString() ?? "", /^nobody:x:65534:65534:/m);
    assert.match(layer.get("etc/passwd")?.data.toString() ?? "", /^root:x:0:0:/m);
    assert.match(layer.get("etc/group")?.data.toString() ?? "", /^nogroup:x:65534:/m);
    assert.equal(layer.get("tmp/")?.header.mode, 0o1777);
    for (const dir of ["proc/", "sys/", "dev/"])
      assert.equal(layer.get(dir)?.header.type, "directory");
  });

  test("a dynamically linked executable brings its loader and libraries", () => {
    const { libc, loader } = trueLibraries();
    for (const path of [libc, loader]) {
      const entry = layout.layer.get(path.slice(1));
      assert.ok(entry, `${path} is in the layer`);
      // Symlinks (the loader usually is one) are stored as the file they point to.
      assert.equal(entry.header.type, "file");
      assert.deepEqual(entry.data, readFileSync(path));
    }
  });

  test("a static executable gets no libraries", async () => {
    const only = await writeImageArchive(
      {
        name: "localhost/nats-tenancy/static:v1",
        files: [{ source: staticBinary, path: "/static-server" }],
        entrypoint: ["/static-server"],
      },
      join(root, "cache-static"),
    );
    const { layer } = await readLayout(only.archive);
    assert.deepEqual(
      [...layer.keys()],
      ["dev/", "etc/", "etc/group", "etc/passwd", "proc/", "static-server", "sys/", "tmp/"],
    );
  });

  test("a caller's file replaces a default one", async () => {
    const passwd = join(root, "passwd");
    writeFileSync(passwd, "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n");
    const custom = await writeImageArchive(
      { ...spec, files: [...spec.files, { source: passwd, path: "/etc/passwd", mode: 0o644 }] },
      join(root, "cache-custom"),
    );
    const { layer } = await readLayout(custom.archive);
    assert.deepEqual(layer.get("etc/passwd")?.data, readFileSync(passwd));
  });

  test("the same spec gives the same bytes in another cache directory", async () => {
    const again = await writeImageArchive(spec, join(root, "cache-b"));
    assert.equal(again.manifestDigest, image.manifestDigest);
    assert.equal(again.configDigest, image.configDigest);
    assert.deepEqual(readFileSync(again.archive), readFileSync(image.archive));
  });

  test("an unchanged image is reused as is; changed content makes a new one; unused ones go", async () => {
    const cache = join(root, "cache-a");
    const past = new Date("2001-02-03T04:05:06Z");
    utimesSync(image.archive, past, past);
    const inode = statSync(image.archive).ino;
    const reused = await writeImageArchive(spec, cache);
    assert.deepEqual(reused, image);
    assert.equal(statSync(image.archive).ino, inode, "not rewritten");
    assert.ok(statSync(image.archive).mtimeMs > past.getTime(), "marked as used");

    const unused = join(cache, "localhost_old_image-0000000000000000.tar");
    writeFileSync(unused, "an archive no run used for days");
    utimesSync(unused, past, past);
    writeFileSync(hello, "hello again\n");
    const changed = await writeImageArchive(spec, cache);
    assert.ok(!existsSync(unused), "an archive unused for two days is removed");
    assert.ok(existsSync(image.archive), "one used just now is kept");
    assert.notEqual(changed.manifestDigest, image.manifestDigest);
    assert.notEqual(changed.archive, image.archive);
    const { layer } = await readLayout(changed.archive);
    assert.equal(layer.get("srv/hello.txt")?.data.toString(), "hello again\n");
  });

  test("specs that cannot make a sound image are refused", async () => {
    const cache = join(root, "cache-refused");
    await assert.rejects(
      writeImageArchive({ ...spec, entrypoint: ["/usr/bin/missing"] }, cache),
      /entrypoint \/usr\/bin\/missing is not among its files/,
    );
    await assert.rejects(
      writeImageArchive(
        { ...spec, files: [...spec.files, { source: hello, path: "/srv/hello.txt" }] },
        cache,
      ),
      /image path \/srv\/hello.txt is given twice/,
    );
    await assert.rejects(
      writeImageArchive({ ...spec, files: [{ source: hello, path: "relative" }] }, cache),
      /not absolute/,
    );
  });
});
