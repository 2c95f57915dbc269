import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AdmissionregistrationV1Api,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { decodeJwt } from "../../src/accounts/jwt.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import { APP_RESOURCE } from "../../src/crds/app.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  appManifest,
  appsApi,
  readyAtGeneration,
  secretValues,
  useOperatorStack,
} from "./operator-harness.ts";

const CEILINGS = [
  "--max-connections=100",
  "--max-environments-per-app=2",
  "--max-apps-per-namespace=2",
];

function condition(app: AppObject | undefined, type: string) {
  return app?.status?.conditions?.find((c) => c.type === type);
}

/** The API server's answer to a refused request, as kubectl would print it. */
async function refusal(request: Promise<unknown>): Promise<string> {
  try {
    await request;
  } catch (error) {
    return String((error as { body?: unknown }).body ?? error);
  }
  assert.fail("the request was accepted");
}

describe("tenant ceilings", () => {
  const stack = useOperatorStack();

  /** The webhooks Apps are sent to for judgement, and which Apps. */
  async function appWebhooks(): Promise<string[]> {
    const admission = stack().kc.makeApiClient(AdmissionregistrationV1Api);
    const { items } = await admission.listValidatingWebhookConfiguration({
      labelSelector: "app.kubernetes.io/managed-by=nats-tenancy",
    });
    return items.flatMap((c) =>
      (c.webhooks ?? []).map((w) => `${w.name}${w.matchConditions ? " (sharing Apps)" : ""}`),
    );
  }

  async function waitFor(
    namespace: string,
    name: string,
    what: string,
    check: (app: AppObject | undefined) => boolean,
  ): Promise<AppObject | undefined> {
    const apps = appsApi(stack().custom);
    let found: AppObject | undefined;
    await waitUntil(
      `${namespace}/${name} ${what}`,
      async () => {
        found = await apps.get(namespace, name);
        return check(found);
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    return found;
  }

  test("an App over a ceiling is refused when applied, naming the ceiling; within them it works, and other changes pass", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "ceilings", args: CEILINGS });
    await operator.waitReady();
    const namespace = "ceilings";
    await s.core.createNamespace({ body: { metadata: { name: namespace } } });
    const apps = appsApi(s.custom);

    assert.match(
      await refusal(
        apps.create(
          namespace,
          appManifest(namespace, "big", { nats: { connections: 500 }, environments: ["prod"] }),
        ),
      ),
      /denied the request: nats-tenancy: App ceilings\/big is over the platform's ceilings: spec\.nats\.connections is 500, over the ceiling of 100 \(--max-connections, chart value ceilings\.connections\)/,
    );
    assert.match(
      await refusal(
        apps.create(
          namespace,
          appManifest(namespace, "wide", {
            nats: { connections: 10 },
            environments: ["a", "b", "c"],
          }),
        ),
      ),
      /spec\.environments has 3, over the ceiling of 2 \(--max-environments-per-app/,
    );
    // `nats: true` gives 1000 connections, over this ceiling: the message says it is the default.
    assert.match(
      await refusal(
        apps.create(
          namespace,
          appManifest(namespace, "plain", { nats: true, environments: ["prod"] }),
        ),
      ),
      /spec\.nats\.connections is 1000 \(the default\), over the ceiling of 100/,
    );
    assert.equal(await apps.get(namespace, "big"), undefined);

    for (const name of ["one", "two"])
      await apps.create(
        namespace,
        appManifest(namespace, name, { nats: { connections: 100 }, environments: ["prod"] }),
      );
    await waitFor(namespace, "one", "Ready", readyAtGeneration);
    await waitFor(namespace, "two", "Ready", readyAtGeneration);
    assert.match(
      await refusal(
        apps.create(
          namespace,
          appManifest(namespace, "three", { nats: { connections: 1 }, environments: ["prod"] }),
        ),
      ),
      /the namespace already has 2 Apps, the ceiling of 2 \(--max-apps-per-namespace, chart value ceilings\.appsPerNamespace\)/,
    );

    // Raising a limit over the ceiling is refused and the App keeps what it has.
    assert.match(
      await refusal(apps.patchSpec(namespace, "one", { nats: { connections: 101 } })),
      /spec\.nats\.connections is 101, over the ceiling of 100/,
    );
    const one = await apps.get(namespace, "one");
    assert.deepEqual(one?.spec, { nats: { connections: 100 }, environments: ["prod"] });
    // A change that leaves the spec alone is never judged (the controller's own finalizer too).
    await s.custom.patchNamespacedCustomObject(
      { ...APP_RESOURCE, namespace, name: "one", body: { metadata: { labels: { team: "a" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    // Deleting one makes room.
    await apps.delete(namespace, "two");
    await waitUntil("two gone", async () => (await apps.get(namespace, "two")) === undefined, {
      timeoutMs: 30_000,
    });
    await apps.create(
      namespace,
      appManifest(namespace, "three", { nats: { connections: 1 }, environments: ["prod"] }),
    );
    await waitFor(namespace, "three", "Ready", readyAtGeneration);
    await operator.stop();
  });

  test("an App stored before the ceiling keeps its account exactly as it was, reported OverCeiling; raising the ceiling applies it", async () => {
    const s = stack();
    const namespace = "legacy";
    await s.core.createNamespace({ body: { metadata: { name: namespace } } });
    const apps = appsApi(s.custom);
    const before = await s.startOperator({ identity: "no-ceilings" });
    await before.waitReady();
    // Without a ceiling only Apps that share can be refused: no other App write waits on it.
    assert.deepEqual(await appWebhooks(), ["apps.nats-tenancy.io (sharing Apps)"]);
    await apps.create(
      namespace,
      appManifest(namespace, "old", { nats: { connections: 500 }, environments: ["prod"] }),
    );
    const stored = await waitFor(namespace, "old", "Ready", readyAtGeneration);
    const account = stored?.status?.environments?.[0];
    assert.ok(account?.account);
    const secret = await s.core.readNamespacedSecret({ namespace, name: "old-prod-nats" });
    await before.stop();

    const after = await s.startOperator({ identity: "with-ceilings", args: CEILINGS });
    await after.waitReady();
    assert.deepEqual(await appWebhooks(), ["apps.nats-tenancy.io"]);
    const held = await waitFor(
      namespace,
      "old",
      "OverCeiling",
      (app) => condition(app, "Degraded")?.reason === "OverCeiling",
    );
    assert.match(
      condition(held, "Degraded")?.message ?? "",
      /spec\.nats\.connections is 500, over the ceiling of 100 \(--max-connections/,
    );
    assert.deepEqual(held?.status?.environments?.[0], account, "the environment's status changed");
    const kept = await s.core.readNamespacedSecret({ namespace, name: "old-prod-nats" });
    assert.equal(kept.metadata?.resourceVersion, secret.metadata?.resourceVersion);
    const resolver = await s.resolver();
    try {
      const jwts = await resolver.lookup(account.account);
      assert.equal(jwts.length, 3);
      for (const jwt of jwts)
        assert.equal(decodeJwt<{ limits?: { conn?: number } }>(jwt).nats.limits?.conn, 500);
    } finally {
      await resolver.close();
    }
    const values = await secretValues(s.core, namespace, "old-prod-nats");
    assert.ok(values?.NATS_CREDENTIALS);
    const nc = await connect({
      servers: s.stack.nats.tlsUrls,
      authenticator: credsAuthenticator(new TextEncoder().encode(values.NATS_CREDENTIALS)),
      tls: { caFile: s.stack.nats.caFile },
      reconnect: false,
    });
    await nc.close();
    await after.stop();

    const raised = await s.startOperator({
      identity: "raised",
      args: ["--max-connections=1000"],
    });
    await raised.waitReady();
    await waitFor(namespace, "old", "Ready again", readyAtGeneration);
    await raised.stop();
  });
});
