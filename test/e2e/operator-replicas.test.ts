import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoordinationV1Api } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { parseAccountEntryName } from "../../src/accounts/key-store.ts";
import { freePort } from "../../src/embedded/ports.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { appManifest, appsApi, secretValues, useOperatorStack } from "./operator-harness.ts";
import type { RunningOperator } from "./operator-process.ts";

const LEASE_SECONDS = 15;

async function leading(operator: RunningOperator): Promise<boolean> {
  return (await operator.metric("nats_tenancy_leader")) === 1;
}

describe("two operator replicas", () => {
  const stack = useOperatorStack();

  test("one leads and reconciles, the standby writes nothing; SIGTERM hands over at once", async () => {
    const s = stack();
    const a = await s.startOperator({ identity: "replica-a", leaseSeconds: LEASE_SECONDS });
    await a.waitReady();
    const b = await s.startOperator({
      identity: "replica-b",
      leaseSeconds: LEASE_SECONDS,
      webhook: { port: await freePort(), registeredPort: s.webhookPort },
    });
    await waitUntil(
      "standby serves /readyz",
      async () => (await fetch(`${b.healthUrl}/readyz`)).status === 200,
      { timeoutMs: 30_000 },
    );
    assert.equal(await leading(b), false, "two replicas lead at once");

    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "pair" } } });
    await apps.create("pair", appManifest("pair", "one", { nats: true, environments: ["prod"] }));
    await waitUntil(
      "Secret of one",
      async () => (await secretValues(s.core, "pair", "one-prod-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );
    assert.ok((await a.metric("nats_tenancy_api_writes_total")) > 0);
    assert.equal(await b.metric("nats_tenancy_reconcile_total"), 0, "the standby reconciled");
    assert.equal(await b.metric("nats_tenancy_api_writes_total"), 0, "the standby wrote");

    const stopped = Date.now();
    const exit = await a.process.stop(20_000);
    assert.deepEqual(exit, { code: 0, signal: null }, "SIGTERM did not end the leader cleanly");
    await waitUntil("replica-b leads", () => leading(b), { timeoutMs: 30_000, intervalMs: 100 });
    const handover = Date.now() - stopped;
    // Without the release the standby would wait out the Lease.
    assert.ok(
      handover < (LEASE_SECONDS * 1000) / 2,
      `handover took ${String(handover)} ms of a ${String(LEASE_SECONDS)} s Lease`,
    );
    const lease = await s.kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: "nats-tenancy-leader", namespace: s.stack.settings.namespace });
    assert.equal(lease.spec?.holderIdentity, "replica-b");

    await apps.create("pair", appManifest("pair", "two", { nats: true, environments: ["prod"] }));
    await waitUntil(
      "Secret of two, made by the new leader",
      async () => (await secretValues(s.core, "pair", "two-prod-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );
    await b.stop();
  });

  test("a leader paused past its Lease writes nothing when it resumes; the new leader keeps the Lease", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    // Resyncs every second: on resume the paused leader's overdue resync would reconcile at
    // once, from a cache that still holds an App deleted meanwhile, and mint it new keys.
    const a = await s.startOperator({ identity: "paused-a", resyncSeconds: 1 });
    await a.waitReady();
    const b = await s.startOperator({ identity: "paused-b" });
    await s.core.createNamespace({ body: { metadata: { name: "paused" } } });
    await apps.create(
      "paused",
      appManifest("paused", "gone", { nats: true, environments: ["prod"] }),
    );
    await waitUntil(
      "Secret of gone",
      async () => (await secretValues(s.core, "paused", "gone-prod-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );
    let writesBefore: number;
    a.process.signal("SIGSTOP");
    try {
      await waitUntil("paused-b leads", () => leading(b), { timeoutMs: 30_000, intervalMs: 100 });
      await apps.delete("paused", "gone");
      await waitUntil(
        "App gone deleted by the new leader",
        async () => (await apps.get("paused", "gone")) === undefined,
        { timeoutMs: 30_000 },
      );
      await b.waitSettled(1500);
      writesBefore = s.operatorWrites().length;
    } finally {
      a.process.signal("SIGCONT");
    }
    await waitUntil("paused-a stands down", async () => !(await leading(a)), {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    // Long enough for several of its overdue resyncs.
    await sleep(3000);
    assert.deepEqual(s.operatorWrites().slice(writesBefore), [], "a write after the pause");
    const keys = await s.core.listNamespacedSecret({
      namespace: s.stack.settings.namespace,
      labelSelector: "nats-tenancy.io/keys",
    });
    assert.ok(
      !keys.items.some((k) => {
        const entry = parseAccountEntryName(k.metadata?.name ?? "");
        return entry?.namespace === "paused" && entry.app === "gone";
      }),
      "the deleted App's keys were minted again",
    );
    const lease = await s.kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: "nats-tenancy-leader", namespace: s.stack.settings.namespace });
    assert.equal(lease.spec?.holderIdentity, "paused-b");
    await a.stop();
    await b.stop();
  });
});
