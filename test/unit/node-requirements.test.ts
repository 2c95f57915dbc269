import assert from "node:assert/strict";
import { test } from "node:test";
import { nodeUnavailableReason } from "../../src/embedded/node-cluster.ts";

test("the test node names what it lacks: root first, then the Debian packages to install", () => {
  assert.match(nodeUnavailableReason({ uid: 1000, exists: () => true }) ?? "", /needs root/);
  assert.equal(nodeUnavailableReason({ uid: 0, exists: () => true }), undefined);
  const reason = nodeUnavailableReason({
    uid: 0,
    exists: (path) =>
      !["/usr/sbin/runc", "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"].includes(String(path)),
  });
  assert.equal(
    reason,
    "the test node needs /usr/sbin/runc, /usr/lib/cni/bridge, /usr/lib/cni/host-local: " +
      "install them with 'apt-get install runc containernetworking-plugins'",
  );
});
