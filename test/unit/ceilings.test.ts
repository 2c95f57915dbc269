import assert from "node:assert/strict";
import { test } from "node:test";
import {
  namespaceOverCeiling,
  specOverCeilings,
  type Ceilings,
} from "../../src/accounts/ceilings.ts";

const ceilings: Ceilings = {
  environmentsPerApp: 2,
  appsPerNamespace: 2,
  limits: { connections: 100, "jetstream.storage": 1024, "jetstream.streams": 5 },
};

test("a spec within every ceiling has no issue; NATS off is never over", () => {
  assert.deepEqual(specOverCeilings(ceilings, ["prod"], { connections: 100 }), []);
  assert.deepEqual(specOverCeilings(ceilings, ["a", "b", "c"], undefined), []);
  // JetStream off: its stream ceiling does not apply to the default (unlimited) streams.
  assert.deepEqual(specOverCeilings(ceilings, ["prod"], { connections: 1 }), []);
});

test("each issue names the field, the value, the ceiling, its flag and its chart value", () => {
  const issues = specOverCeilings(ceilings, ["a", "b", "c"], {
    jetstream: { storage: 2048 },
  });
  assert.deepEqual(issues, [
    "spec.environments has 3, over the ceiling of 2 (--max-environments-per-app, chart value ceilings.environmentsPerApp)",
    "spec.nats.connections is 1000 (the default), over the ceiling of 100 (--max-connections, chart value ceilings.connections)",
    "spec.nats.jetstream.storage is 2048, over the ceiling of 1024 (--max-jetstream-storage, chart value ceilings.jetstream.storage)",
    "spec.nats.jetstream.streams is unlimited (the default), over the ceiling of 5 (--max-jetstream-streams, chart value ceilings.jetstream.streams)",
  ]);
  assert.match(
    specOverCeilings(ceilings, ["prod"], { connections: -1 }).join(),
    /connections is unlimited, over the ceiling of 100/,
  );
});

test("Apps per namespace: those with accounts keep their place, then the oldest; newcomers beyond are over", () => {
  const member = (uid: string, created: string, hasAccounts = false) => ({
    uid,
    name: uid,
    creationTimestamp: created,
    hasAccounts,
  });
  const members = [
    member("new", "2026-01-03T00:00:00Z"),
    member("old", "2026-01-01T00:00:00Z"),
    member("working", "2026-01-05T00:00:00Z", true),
  ];
  assert.equal(namespaceOverCeiling(ceilings, members, "working"), undefined);
  assert.equal(namespaceOverCeiling(ceilings, members, "old"), undefined);
  assert.match(
    namespaceOverCeiling(ceilings, members, "new") ?? "",
    /^the namespace has 3 Apps, over the ceiling of 2 \(--max-apps-per-namespace/,
  );
  // Lowered below the Apps already working: none of them is over.
  const lowered = { ...ceilings, appsPerNamespace: 1 };
  const working = [
    member("a", "2026-01-01T00:00:00Z", true),
    member("b", "2026-01-02T00:00:00Z", true),
  ];
  assert.equal(namespaceOverCeiling(lowered, working, "b"), undefined);
  assert.equal(namespaceOverCeiling({ limits: {} }, members, "new"), undefined);
});
