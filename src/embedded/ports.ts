/**
 * Free loopback ports for servers we start. Ports are drawn at random below the kernel's
 * ephemeral range (32768+), so they do not collide with the source ports of outgoing
 * connections, and never handed out twice: not by one process, and not by two of ours at once
 * (tests run two files in parallel, each starting servers). A port handed out is reserved by a
 * file in this process's own directory, which goes with it; between a port's bind check and its
 * server's start, another of our processes sees the reservation and draws again.
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { randomInt } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ownedTempDir } from "./tempdir.ts";

const LOW = 20000;
const HIGH = 32000;
const handedOut = new Set<number>();
const PURPOSE = "ports";
let reservations: string | undefined;

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => {
      resolve(false);
    });
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/** Another of our processes handed this port out (their directories outlive no process). */
function reservedElsewhere(port: number): boolean {
  const root = tmpdir();
  return readdirSync(root).some(
    (name) =>
      name.startsWith(`nats-tenancy-${PURPOSE}-`) &&
      join(root, name) !== reservations &&
      existsSync(join(root, name, String(port))),
  );
}

function reserve(port: number): void {
  reservations ??= ownedTempDir(PURPOSE).dir;
  writeFileSync(join(reservations, String(port)), "");
}

/** A free port, by default below the ephemeral range; `range` for a node port, say. */
export async function freePort(range = { low: LOW, high: HIGH }): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(range.low, range.high);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (reservedElsewhere(port)) continue;
    reserve(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free loopback port found in ${range.low}-${range.high}`);
}

/** True when nothing listens on 127.0.0.1:port. */
export { canBind as isPortFree };
