/**
 * The images the test node runs, built here (no registry is reachable) and imported into its
 * containerd. Names live only here: a pod, the containerd sandbox setting and a chart's values
 * must all say exactly the name an imported archive carries, or containerd tries to pull it.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { runCommand } from "./process.ts";
import { writeImageArchive, type ImageArchive, type ImageSpec } from "./oci-image.ts";
import { cacheRoot, type Toolchain } from "./toolchain.ts";

const REGISTRY = "localhost/nats-tenancy";

/** The names of the images every node has, by role. */
export interface BaseImageNames {
  pause: string;
  coredns: string;
  /** By nats-server label, e.g. "v2.15.3". */
  natsServers: Record<string, string>;
}

export function baseImageNames(tools: Toolchain): BaseImageNames {
  return {
    pause: `${REGISTRY}/pause:1`,
    coredns: `${REGISTRY}/coredns:${tools.versions.coredns}`,
    natsServers: Object.fromEntries(
      tools.natsServers.map((s) => [
        s.label,
        `${REGISTRY}/nats-server:${s.label.replace(/^v/, "")}`,
      ]),
    ),
  };
}

/** The Node.js binary of the `node` package this project pins (npm scripts run on it too). */
export function nodeBinary(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("node/package.json")), "bin", "node");
}

/** An image with the pinned Node.js and the given files: a TypeScript entry runs by type stripping. */
export function nodeImage(
  name: string,
  files: ImageSpec["files"],
  entrypoint: string[],
): ImageSpec {
  return {
    name,
    files: [{ source: nodeBinary(), path: "/usr/local/bin/node" }, ...files],
    entrypoint: ["/usr/local/bin/node", ...entrypoint],
  };
}

/** The images every node has: the sandbox, cluster DNS and every tested nats-server. */
export function baseImages(tools: Toolchain, names: BaseImageNames): ImageSpec[] {
  return [
    { name: names.pause, files: [{ source: tools.pause, path: "/pause" }], entrypoint: ["/pause"] },
    {
      name: names.coredns,
      files: [{ source: tools.coredns, path: "/coredns" }],
      entrypoint: ["/coredns"],
    },
    ...tools.natsServers.map((server) => ({
      name: names.natsServers[server.label] ?? "",
      files: [{ source: server.path, path: "/nats-server" }],
      entrypoint: ["/nats-server"],
    })),
  ];
}

export function buildImages(specs: ImageSpec[]): Promise<ImageArchive[]> {
  return Promise.all(specs.map((spec) => writeImageArchive(spec, join(cacheRoot(), "images"))));
}

/** Imports archives into containerd's `k8s.io` namespace (the one its CRI plugin uses). */
export async function importImages(
  ctr: string,
  socket: string,
  archives: Pick<ImageArchive, "name" | "archive">[],
): Promise<void> {
  for (const image of archives) {
    await runCommand(ctr, ["-a", socket, "-n", "k8s.io", "images", "import", image.archive]);
  }
}
