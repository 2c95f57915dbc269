import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { connect } from "@nats-io/transport-node";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { useNatsCluster } from "./harness.ts";

// Both binaries are known before any suite starts: node:test needs its suites declared
// synchronously, so the list comes from the toolchain (already built by test/run.ts).
const { natsServers } = await ensureToolchain();

for (const server of natsServers) {
  describe(`3-node nats-server cluster (${server.label})`, () => {
    const cluster = useNatsCluster({ binary: server.path, size: 3 });

    test("every node reports routes to both other nodes on its monitoring endpoint", async () => {
      const nodes = cluster().nodes;
      const ids = await Promise.all(
        nodes.map(async (n) => (await n.monitor<{ server_id: string }>("varz")).server_id),
      );
      for (const [i, node] of nodes.entries()) {
        const peers = await node.routedPeers();
        const expected = ids.filter((_, j) => j !== i).sort();
        assert.deepEqual(peers.sort(), expected, `routes of ${node.address.name}`);
      }
    });

    test("the server under test is the expected binary", async () => {
      const varz = await cluster().nodes[0]?.monitor<{ version: string }>("varz");
      assert.equal(`v${varz?.version ?? ""}`, server.label);
    });

    test("a message published on node 1 reaches a subscriber on node 3", async () => {
      const [first, , third] = cluster().urls;
      const subscriber = await connect({ servers: third, name: "subscriber" });
      const publisher = await connect({ servers: first, name: "publisher" });
      try {
        const subscription = subscriber.subscribe("harness.greeting", { max: 1 });
        await subscriber.flush();
        // Interest travels over the route asynchronously; publish until it has arrived.
        const received = (async () => {
          for await (const message of subscription) return message.string();
          return undefined;
        })();
        let answer: string | undefined;
        const deadline = Date.now() + 10_000;
        const timer = setInterval(() => {
          publisher.publish("harness.greeting", "hello from node 1");
        }, 50);
        try {
          answer = await Promise.race([
            received,
            new Promise<undefined>((resolve) => {
              setTimeout(() => {
                resolve(undefined);
              }, deadline - Date.now());
            }),
          ]);
        } finally {
          clearInterval(timer);
        }
        assert.equal(answer, "hello from node 1");
      } finally {
        await publisher.close();
        await subscriber.close();
      }
    });
  });
}
