/**
 * Free loopback ports for servers we start. Ports are drawn at random below the kernel's
 * ephemeral range (32768+), so they do not collide with the source ports of outgoing
 * connections, and never handed out twice by one process.
 */
import { createServer } from "node:net";
import { randomInt } from "node:crypto";

const LOW = 20000;
const HIGH = 32000;
const handedOut = new Set<number>();

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

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(LOW, HIGH);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free loopback port found in ${LOW}-${HIGH}`);
}

/** True when nothing listens on 127.0.0.1:port. */
export { canBind as isPortFree };
