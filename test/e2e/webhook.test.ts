/**
 * The pod webhook on the real API server (registered by URL on 127.0.0.1 by the operator
 * itself), with credentials checked against the real NATS cluster.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  AdmissionregistrationV1Api,
  PatchStrategy,
  type CoreV1Api,
  setHeaderOptions,
  type V1OwnerReference,
  type V1Pod,
} from "@kubernetes/client-node";
import { connect, credsAuthenticator } from "@nats-io/transport-node";
import { parseJwt } from "../../src/accounts/jwt.ts";
import { APP_RESOURCE } from "../../src/crds/app.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { decodeSecretData } from "../../src/kube/read-secret.ts";
import { INJECTED_ANNOTATION, VOLUME_NAME } from "../../src/webhook/pod-injection.ts";
import { appManifest, appsApi, secretValues, useOperatorStack } from "./operator-harness.ts";
import type { RunningOperator } from "./operator-process.ts";

const scratch = mkdtempSync(join(tmpdir(), "nats-tenancy-webhook-test-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function podManifest(
  name: string,
  labels: Record<string, string>,
  spec: Partial<NonNullable<V1Pod["spec"]>> = {},
  ownerReferences?: V1OwnerReference[],
): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels, ...(ownerReferences ? { ownerReferences } : {}) },
    spec: {
      containers: [{ name: "app", image: "registry.invalid/app:1" }],
      ...spec,
    },
  };
}

const orders = (environment: string) => ({
  "nats-tenancy.io/app": "orders",
  "nats-tenancy.io/environment": environment,
});

/** A ConfigMap standing in for a pod's controller: where refusals are reported. */
async function ownerIn(core: CoreV1Api, namespace: string): Promise<V1OwnerReference[]> {
  const owner = await core.createNamespacedConfigMap({
    namespace,
    body: { metadata: { name: "owner" } },
  });
  return [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      name: "owner",
      uid: owner.metadata?.uid ?? "",
      controller: true,
    },
  ];
}

function errorText(error: unknown): string {
  const body = (error as { body?: unknown }).body;
  return typeof body === "string" ? body : JSON.stringify(body ?? String(error));
}

describe("pod webhook on a real API server", () => {
  const stack = useOperatorStack();
  let operator: RunningOperator;

  test("a labelled Pod is stored with the variables and the volume, and they reach its account", async () => {
    const s = stack();
    operator = await s.startOperator();
    await operator.waitReady();
    const admission = s.kc.makeApiClient(AdmissionregistrationV1Api);
    const registered = await admission.readMutatingWebhookConfiguration({ name: "nats-tenancy" });
    assert.equal(registered.webhooks?.[0]?.failurePolicy, "Fail");
    assert.equal(registered.webhooks[0].timeoutSeconds, 5);
    // The bundle that verifies the webhook is the operator CA's current bundle.
    const tls = decodeSecretData(
      await s.core.readNamespacedSecret({
        namespace: s.stack.settings.namespace,
        name: "nats-tenancy-webhook-tls",
      }),
    );
    assert.equal(
      Buffer.from(registered.webhooks[0].clientConfig.caBundle ?? "", "base64").toString(),
      tls["ca.crt"],
    );

    await s.core.createNamespace({ body: { metadata: { name: "web" } } });
    const apps = appsApi(s.custom);
    await apps.create(
      "web",
      appManifest("web", "orders", { nats: true, environments: ["prod", "test"] }),
    );
    await waitUntil(
      "orders Secrets",
      async () =>
        (await secretValues(s.core, "web", "orders-prod-nats")) !== undefined &&
        (await secretValues(s.core, "web", "orders-test-nats")) !== undefined,
      { timeoutMs: 30_000 },
    );

    const stored = await s.core.createNamespacedPod({
      namespace: "web",
      body: podManifest("api", orders("prod"), {
        initContainers: [{ name: "migrate", image: "registry.invalid/migrate:1" }],
      }),
    });
    assert.equal(stored.metadata?.annotations?.[INJECTED_ANNOTATION], "orders-prod-nats");
    const volume = stored.spec?.volumes?.find((v) => v.name === VOLUME_NAME);
    assert.equal(volume?.secret?.secretName, "orders-prod-nats");
    const containers = [...(stored.spec?.containers ?? []), ...(stored.spec?.initContainers ?? [])];
    assert.equal(containers.length, 2);
    for (const container of containers) {
      const env = new Map((container.env ?? []).map((e) => [e.name, e]));
      assert.equal(env.get("NATS_URL")?.valueFrom?.secretKeyRef?.name, "orders-prod-nats");
      assert.equal(env.get("NATS_CREDENTIALS")?.valueFrom?.secretKeyRef?.name, "orders-prod-nats");
      assert.equal(env.get("NATS_URL")?.value, undefined, "a value was copied into the pod");
      assert.equal(env.get("NATS_CREDENTIALS_FILE")?.value, "/bindings/nats/nats.creds");
      assert.equal(env.get("NATS_CA_FILE")?.value, "/bindings/nats/ca.crt");
      assert.deepEqual(
        container.volumeMounts?.map((m) => [m.name, m.mountPath, m.readOnly]),
        [[VOLUME_NAME, "/bindings/nats", true]],
      );
    }

    // What the kubelet would resolve: the referenced keys and the volume's files.
    const secret = decodeSecretData(
      await s.core.readNamespacedSecret({ namespace: "web", name: "orders-prod-nats" }),
    );
    const env = new Map((stored.spec?.containers[0]?.env ?? []).map((e) => [e.name, e]));
    const url = secret[env.get("NATS_URL")?.valueFrom?.secretKeyRef?.key ?? ""] ?? "";
    const files = new Map(
      (volume.secret.items ?? []).map((item) => [`/bindings/nats/${item.path}`, secret[item.key]]),
    );
    const creds = files.get(env.get("NATS_CREDENTIALS_FILE")?.value ?? "") ?? "";
    const caFile = join(scratch, "ca.crt");
    writeFileSync(caFile, files.get(env.get("NATS_CA_FILE")?.value ?? "") ?? "");
    assert.equal(files.get("/bindings/nats/type"), "nats");
    assert.equal(creds, secret[env.get("NATS_CREDENTIALS")?.valueFrom?.secretKeyRef?.key ?? ""]);

    const nc = await connect({
      servers: url.split(","),
      authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
      tls: { caFile },
    });
    try {
      const sub = nc.subscribe("orders.hello", { max: 1 });
      nc.publish("orders.hello", "hi");
      for await (const msg of sub) assert.equal(msg.string(), "hi");
      const userJwt = /-----BEGIN NATS USER JWT-----\n(\S+)\n/.exec(creds)?.[1] ?? "";
      const issuerAccount = parseJwt<{ issuer_account?: string }>(userJwt).nats.issuer_account;
      const app = await apps.get("web", "orders");
      assert.equal(
        issuerAccount,
        app?.status?.environments?.find((e) => e.name === "prod")?.account,
        "the pod's credentials are not the prod account's",
      );
    } finally {
      await nc.close();
    }
  });

  test("an unlabelled Pod is untouched; variables the user set are kept", async () => {
    const s = stack();
    const plain = await s.core.createNamespacedPod({
      namespace: "web",
      body: podManifest("plain", { app: "something-else" }),
    });
    assert.equal(plain.metadata?.annotations?.[INJECTED_ANNOTATION], undefined);
    assert.equal(plain.spec?.containers[0]?.env, undefined);
    assert.equal(plain.spec?.volumes, undefined);
    // The operator's own namespace is never injected, labels or not.
    const system = await s.core.createNamespacedPod({
      namespace: s.stack.settings.namespace,
      body: podManifest("system", orders("prod")),
    });
    assert.equal(system.spec?.containers[0]?.env, undefined);

    const own = await s.core.createNamespacedPod({
      namespace: "web",
      body: podManifest("own-url", orders("test"), {
        containers: [
          {
            name: "app",
            image: "registry.invalid/app:1",
            env: [{ name: "NATS_URL", value: "nats://my-own-broker:4222" }],
          },
        ],
      }),
    });
    const urls = (own.spec?.containers[0]?.env ?? []).filter((e) => e.name === "NATS_URL");
    assert.deepEqual(
      urls.map((e) => e.value),
      ["nats://my-own-broker:4222"],
    );
    assert.ok(own.spec?.containers[0]?.env?.some((e) => e.name === "NATS_CREDENTIALS"));
  });

  test("a Pod cannot obtain another namespace's credentials, nor an environment the App lacks", async () => {
    const s = stack();
    await s.core.createNamespace({ body: { metadata: { name: "intruder" } } });
    // Pods come from controllers; the refusal is reported on the owner, where it is looked for.
    const stealing = podManifest("steal", orders("prod"), {}, await ownerIn(s.core, "intruder"));
    await assert.rejects(
      s.core.createNamespacedPod({ namespace: "intruder", body: stealing }),
      (error: unknown) => /no App orders in namespace intruder/.test(errorText(error)),
    );
    await waitUntil(
      "an AppNotFound Event on the owner",
      async () =>
        (await s.core.listNamespacedEvent({ namespace: "intruder" })).items.some(
          (e) =>
            e.reason === "AppNotFound" &&
            e.involvedObject.name === "owner" &&
            /no App orders in namespace intruder/.test(e.message ?? ""),
        ),
      { timeoutMs: 10_000 },
    );
    await assert.rejects(
      s.core.createNamespacedPod({
        namespace: "web",
        body: podManifest("staging", orders("staging")),
      }),
      (error: unknown) =>
        /App web\/orders has no NATS environment staging \(it has prod, test\)/.test(
          errorText(error),
        ),
    );
  });

  test("refusals repeated for one owner are one Event with a count, and counted by reason", async () => {
    const s = stack();
    await s.core.createNamespace({ body: { metadata: { name: "retrying" } } });
    const ownedBy = await ownerIn(s.core, "retrying");
    const refusedBefore = await operator.metric("nats_tenancy_webhook_reviews_total", {
      outcome: "reject",
      reason: "AppNotFound",
    });
    const attempts = 4;
    for (let attempt = 0; attempt < attempts; attempt++) {
      await assert.rejects(
        s.core.createNamespacedPod({
          namespace: "retrying",
          body: podManifest(`try-${attempt}`, orders("prod"), {}, ownedBy),
        }),
      );
    }
    await waitUntil(
      `one AppNotFound Event on the owner with count ${attempts}`,
      async () => {
        const events = (await s.core.listNamespacedEvent({ namespace: "retrying" })).items.filter(
          (e) => e.reason === "AppNotFound" && e.involvedObject.name === "owner",
        );
        return events.length === 1 && events[0]?.count === attempts;
      },
      { timeoutMs: 10_000 },
    );
    assert.equal(
      (await operator.metric("nats_tenancy_webhook_reviews_total", {
        outcome: "reject",
        reason: "AppNotFound",
      })) - refusedBefore,
      attempts,
    );
    assert.ok((await operator.metric("nats_tenancy_webhook_review_duration_seconds_count")) > 0);
  });

  test("a Secret name two Apps share is injected only into pods of the App that holds it", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "collide" } } });
    // App a-b environment c and App a environment b-c both name their Secret a-b-c-nats.
    await apps.create(
      "collide",
      appManifest("collide", "a-b", { nats: true, environments: ["c"] }),
    );
    await waitUntil(
      "App a-b holds a-b-c-nats",
      async () =>
        (await apps.get("collide", "a-b"))?.status?.environments?.some(
          (e) => e.name === "c" && e.ready,
        ) === true,
      { timeoutMs: 30_000 },
    );
    await apps.create(
      "collide",
      appManifest("collide", "a", { nats: true, environments: ["b-c"] }),
    );
    await assert.rejects(
      s.core.createNamespacedPod({
        namespace: "collide",
        body: podManifest("intruder", {
          "nats-tenancy.io/app": "a",
          "nats-tenancy.io/environment": "b-c",
        }),
      }),
      (error: unknown) =>
        /Secret collide\/a-b-c-nats is also the Secret of App collide\/a-b environment c/.test(
          errorText(error),
        ),
    );
    const holder = await s.core.createNamespacedPod({
      namespace: "collide",
      body: podManifest("holder", {
        "nats-tenancy.io/app": "a-b",
        "nats-tenancy.io/environment": "c",
      }),
    });
    assert.equal(holder.metadata?.annotations?.[INJECTED_ANNOTATION], "a-b-c-nats");
  });

  test("pods of an App being deleted are refused", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    await s.core.createNamespace({ body: { metadata: { name: "leaving" } } });
    // A finalizer of someone else's keeps the App terminating after the operator let go.
    await apps.create("leaving", {
      ...appManifest("leaving", "old", { nats: true, environments: ["prod"] }),
      metadata: { name: "old", namespace: "leaving", finalizers: ["test.example/hold"] },
    });
    await apps.delete("leaving", "old");
    const labels = { "nats-tenancy.io/app": "old", "nats-tenancy.io/environment": "prod" };
    try {
      await waitUntil(
        "a pod of the terminating App refused as such",
        async () => {
          try {
            await s.core.createNamespacedPod({
              namespace: "leaving",
              body: podManifest("late", labels),
            });
            await s.core.deleteNamespacedPod({ namespace: "leaving", name: "late" });
            return false;
          } catch (error) {
            return /App leaving\/old is being deleted/.test(errorText(error));
          }
        },
        { timeoutMs: 10_000 },
      );
    } finally {
      await s.custom.patchNamespacedCustomObject(
        {
          ...APP_RESOURCE,
          namespace: "leaving",
          name: "old",
          body: { metadata: { finalizers: null } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
    }
  });

  test("a dry run is refused like a real create but leaves no Event", async () => {
    const s = stack();
    const admission = s.kc.makeApiClient(AdmissionregistrationV1Api);
    const registered = await admission.readMutatingWebhookConfiguration({ name: "nats-tenancy" });
    assert.equal(registered.webhooks?.[0]?.sideEffects, "NoneOnDryRun");
    await s.core.createNamespace({ body: { metadata: { name: "dry" } } });
    const ownedBy = await ownerIn(s.core, "dry");
    await assert.rejects(
      s.core.createNamespacedPod({
        namespace: "dry",
        body: podManifest("dry-run", orders("prod"), {}, ownedBy),
        dryRun: "All",
      }),
      (error: unknown) => /no App orders in namespace dry/.test(errorText(error)),
    );
    // A real refusal afterwards: once its Event is there, a dry run's would have been too.
    await assert.rejects(
      s.core.createNamespacedPod({
        namespace: "dry",
        body: podManifest("real", orders("prod"), {}, ownedBy),
      }),
    );
    await waitUntil(
      "the real refusal's Event",
      async () =>
        (await s.core.listNamespacedEvent({ namespace: "dry" })).items.some(
          (e) => e.reason === "AppNotFound",
        ),
      { timeoutMs: 10_000 },
    );
    const events = (await s.core.listNamespacedEvent({ namespace: "dry" })).items.filter(
      (e) => e.reason === "AppNotFound",
    );
    assert.equal(events.length, 1);
    assert.equal(events[0]?.count, 1, "the dry run was counted");
  });

  test("a Pod that already carries the injection gets nothing twice", async () => {
    const s = stack();
    const first = await s.core.readNamespacedPod({ namespace: "web", name: "api" });
    const again = await s.core.createNamespacedPod({
      namespace: "web",
      body: {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: "api-again",
          labels: first.metadata?.labels ?? {},
          annotations: first.metadata?.annotations ?? {},
        },
        spec: {
          containers: first.spec?.containers ?? [],
          ...(first.spec?.initContainers ? { initContainers: first.spec.initContainers } : {}),
          ...(first.spec?.volumes ? { volumes: first.spec.volumes } : {}),
        },
      },
    });
    assert.deepEqual(
      again.spec?.volumes?.map((v) => v.name),
      first.spec?.volumes?.map((v) => v.name),
    );
    assert.deepEqual(
      again.spec?.containers.map((c) => c.env?.map((e) => e.name)),
      first.spec?.containers.map((c) => c.env?.map((e) => e.name)),
    );
  });

  test("with the webhook down, labelled Pods are refused and every other Pod is created", async () => {
    const s = stack();
    await operator.stop();
    await assert.rejects(
      s.core.createNamespacedPod({
        namespace: "web",
        body: podManifest("blocked", orders("prod")),
      }),
      (error: unknown) => /pods.nats-tenancy.io/.test(errorText(error)),
    );
    const other = await s.core.createNamespacedPod({
      namespace: "web",
      body: podManifest("unaffected", {}),
    });
    assert.equal(other.metadata?.name, "unaffected");
  });
});
