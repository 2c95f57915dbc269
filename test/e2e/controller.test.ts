import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { AdmissionregistrationV1Api } from "@kubernetes/client-node";
import { loadAccount } from "../../src/accounts/key-store.ts";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import { parseJwt } from "../../src/accounts/jwt.ts";
import { FINALIZER, holdsFinalizer, type AppObject } from "../../src/contract/app-object.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import {
  appManifest,
  appsApi,
  readyAtGeneration,
  secretValues,
  useOperatorStack,
  type OperatorStack,
  type RunningOperator,
} from "./operator-harness.ts";
import { kubeConfigAccess } from "../../src/kube/kube-config.ts";
import { connectWith, refused, waitApp, waitSecret } from "./app-client.ts";

async function createNamespace(s: OperatorStack, name: string): Promise<void> {
  await s.core.createNamespace({ body: { metadata: { name } } });
}

async function accountsOnServers(s: OperatorStack): Promise<Map<string, string[]>> {
  const resolver = await s.resolver();
  try {
    return await resolver.list();
  } finally {
    await resolver.close();
  }
}

const SECRET_NO_SEEDS = /\bS[OA][A-Z2-7]{56}\b/;

describe("App controller on a real API server and NATS cluster", () => {
  const stack = useOperatorStack();
  let operator: RunningOperator;

  test("an App with prod and test gets one Secret per environment with working, isolated credentials", async () => {
    const s = stack();
    operator = await s.startOperator();
    await operator.waitReady();
    const apps = appsApi(s.custom);
    await createNamespace(s, "shop");
    await apps.create(
      "shop",
      appManifest("shop", "orders", { nats: true, environments: ["prod", "test"] }),
    );
    const prod = await waitSecret(s, "shop", "orders-prod-nats");
    const test_ = await waitSecret(s, "shop", "orders-test-nats");
    await waitApp(s, "shop", "orders", "Ready at its generation", readyAtGeneration);

    assert.equal(prod.NATS_URL, s.stack.settings.appUrls.url);
    assert.equal(prod.NATS_CREDENTIALS, prod["nats.creds"]);
    assert.match(prod["ca.crt"] ?? "", /BEGIN CERTIFICATE/);
    assert.equal(prod.type, "nats");
    // The pods user's seed (SU...) only: no account or operator seed leaves the operator's namespace.
    assert.doesNotMatch(JSON.stringify(prod), SECRET_NO_SEEDS);

    const prodA = await connectWith(prod, "prod-a");
    const prodB = await connectWith(prod, "prod-b");
    const testC = await connectWith(test_, "test-c");
    try {
      const got = prodB.subscribe("orders.created", { max: 1 });
      const spy = testC.subscribe(">");
      await prodB.flush();
      await testC.flush();
      prodA.publish("orders.created", "42");
      for await (const msg of got) assert.equal(msg.string(), "42");
      await testC.flush();
      assert.equal(spy.getProcessed(), 0, "test saw a message published in prod");
    } finally {
      await Promise.all([prodA.close(), prodB.close(), testC.close()]);
    }

    const app = await apps.get("shop", "orders");
    assert.ok(app?.metadata.finalizers?.includes(FINALIZER));
    const envs = app?.status?.environments ?? [];
    assert.deepEqual(
      envs.map((e) => [e.name, e.secret, e.ready]),
      [
        ["prod", "orders-prod-nats", true],
        ["test", "orders-test-nats", true],
      ],
    );
    assert.notEqual(envs[0]?.account, envs[1]?.account);
    const status = JSON.stringify(app?.status);
    assert.doesNotMatch(status, /eyJ|BEGIN NATS|SU[A-Z2-7]{50}/, "status holds a JWT or a seed");
    const held = await accountsOnServers(s);
    assert.equal(held.size, 3);
    for (const accounts of held.values())
      for (const env of envs)
        assert.ok(accounts.includes(env.account ?? ""), `${env.name} missing`);

    const secret = await s.core.readNamespacedSecret({
      name: "orders-prod-nats",
      namespace: "shop",
    });
    assert.equal(secret.metadata?.ownerReferences?.[0]?.uid, app?.metadata.uid);
    const events = await s.core.listNamespacedEvent({ namespace: "shop" });
    assert.ok(
      events.items.some(
        (e) =>
          e.reason === "AccountCreated" &&
          e.involvedObject.name === "orders" &&
          e.message === "NATS accounts of prod, test created on the NATS servers",
      ),
      "no AccountCreated event naming both environments",
    );
  });

  test("changing a limit re-issues the account on every server and the new limit holds", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    const prod = await waitSecret(s, "shop", "orders-prod-nats");
    const before = (await apps.get("shop", "orders"))?.status?.environments?.[0]?.revision ?? 0;
    await apps.patchSpec("shop", "orders", { nats: { connections: 2 } });
    await waitApp(
      s,
      "shop",
      "orders",
      "re-issued with connections 2",
      (app) => readyAtGeneration(app) && (app.status?.environments?.[0]?.revision ?? 0) > before,
    );
    const resolver = await s.resolver();
    try {
      const account = (await apps.get("shop", "orders"))?.status?.environments?.[0]?.account ?? "";
      const held = await resolver.lookup(account);
      assert.equal(held.length, 3);
      for (const jwt of held)
        assert.equal(parseJwt<{ limits?: { conn?: number } }>(jwt).nats.limits?.conn, 2);
    } finally {
      await resolver.close();
    }
    // Every client on one server: the limit is enforced per server at once.
    const one = { ...prod, NATS_URL: s.stack.nats.tlsUrls[0] ?? "" };
    const a = await connectWith(one);
    const b = await connectWith(one);
    try {
      assert.ok(await refused(one), "a third connection was allowed with connections: 2");
      await apps.patchSpec("shop", "orders", { nats: { connections: 5 } });
      await waitApp(s, "shop", "orders", "connections 5", (app) => readyAtGeneration(app));
      await waitUntil("a third connection", async () => !(await refused(one)), {
        timeoutMs: 10_000,
      });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  test("removing an environment removes its account from every server and its Secret; prod keeps working", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    const test_ = await waitSecret(s, "shop", "orders-test-nats");
    const prod = await waitSecret(s, "shop", "orders-prod-nats");
    const account =
      (await apps.get("shop", "orders"))?.status?.environments?.find((e) => e.name === "test")
        ?.account ?? "";
    await apps.patchSpec("shop", "orders", { environments: ["prod"] });
    await waitUntil(
      "test Secret gone",
      async () => (await secretValues(s.core, "shop", "orders-test-nats")) === undefined,
      { timeoutMs: 30_000 },
    );
    await waitApp(
      s,
      "shop",
      "orders",
      "only prod",
      (app) => readyAtGeneration(app) && app.status?.environments?.length === 1,
    );
    for (const accounts of (await accountsOnServers(s)).values())
      assert.ok(!accounts.includes(account));
    assert.ok(await refused(test_), "the removed environment's credentials still connect");
    assert.ok(!(await refused(prod)), "prod stopped working");
    const keys = new KubernetesSecretStore(kubeConfigAccess(s.kc), s.stack.settings.namespace);
    const where = { namespace: "shop", app: "orders" };
    assert.equal(await loadAccount(keys, { ...where, environment: "test" }), undefined);
    assert.ok(await loadAccount(keys, { ...where, environment: "prod" }), "prod's keys went too");
  });

  test("a deleted Secret comes back with the same credentials", async () => {
    const s = stack();
    const prod = await waitSecret(s, "shop", "orders-prod-nats");
    await s.core.deleteNamespacedSecret({ name: "orders-prod-nats", namespace: "shop" });
    const again = await waitSecret(s, "shop", "orders-prod-nats");
    assert.equal(again.NATS_CREDENTIALS, prod.NATS_CREDENTIALS);
  });

  test("a Secret of the same name that is not the App's is left alone and reported", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    await createNamespace(s, "clash");
    await s.core.createNamespacedSecret({
      namespace: "clash",
      body: { metadata: { name: "web-prod-nats" }, stringData: { mine: "yes" } },
    });
    await apps.create(
      "clash",
      appManifest("clash", "web", { nats: true, environments: ["prod", "test"] }),
    );
    await waitApp(
      s,
      "clash",
      "web",
      "Degraded SecretConflict",
      (app) =>
        app.status?.conditions?.some(
          (c) => c.type === "Degraded" && c.status === "True" && c.reason === "SecretConflict",
        ) === true,
    );
    const theirs = await secretValues(s.core, "clash", "web-prod-nats");
    assert.deepEqual(theirs, { mine: "yes" });
    // The other environment is not held hostage.
    await waitSecret(s, "clash", "web-test-nats");
    const events = await s.core.listNamespacedEvent({ namespace: "clash" });
    assert.ok(
      events.items.some((e) => e.reason === "SecretConflict" && e.involvedObject.name === "web"),
    );
  });

  test("an API refusal reaches the status as a sentence, not a response body", async () => {
    const s = stack();
    const admission = s.kc.makeApiClient(AdmissionregistrationV1Api);
    const name = "no-secrets-in-sealed";
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name },
        spec: {
          failurePolicy: "Fail",
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: [""],
                apiVersions: ["v1"],
                operations: ["CREATE", "UPDATE"],
                resources: ["secrets"],
              },
            ],
          },
          validations: [{ expression: "false", message: "sealed namespaces take no Secrets" }],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: {
        metadata: { name },
        spec: {
          policyName: name,
          validationActions: ["Deny"],
          matchResources: {
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "sealed" } },
          },
        },
      },
    });
    try {
      await createNamespace(s, "sealed");
      // Policies take effect a moment after they are written.
      await waitUntil(
        "the policy refuses Secrets in sealed",
        async () => {
          try {
            await s.core.createNamespacedSecret({
              namespace: "sealed",
              body: { metadata: { generateName: "probe-" } },
              dryRun: "All",
            });
            return false;
          } catch {
            return true;
          }
        },
        { timeoutMs: 10_000 },
      );
      await appsApi(s.custom).create(
        "sealed",
        appManifest("sealed", "web", { nats: true, environments: ["prod"] }),
      );
      let message = "";
      await waitApp(s, "sealed", "web", "Degraded by the refused Secret", (app) => {
        const degraded = app.status?.conditions?.find((c) => c.type === "Degraded");
        message = degraded?.message ?? "";
        return degraded?.status === "True" && /sealed namespaces take no Secrets/.test(message);
      });
      assert.match(message, /^the Kubernetes API answered 4\d\d \w+: /);
      assert.doesNotMatch(message, /HTTP-Code|Body:|Headers:|\{/);
    } finally {
      await appsApi(s.custom).delete("sealed", "web");
      await admission.deleteValidatingAdmissionPolicyBinding({ name });
      await admission.deleteValidatingAdmissionPolicy({ name });
    }
  });

  test("nats: false deletes the App's accounts and Secrets and drops the finalizer; true brings new ones", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    await createNamespace(s, "toggle");
    await apps.create(
      "toggle",
      appManifest("toggle", "api", { nats: true, environments: ["prod"] }),
    );
    const before = await waitSecret(s, "toggle", "api-prod-nats");
    await waitApp(s, "toggle", "api", "Ready", readyAtGeneration);
    const account = (await apps.get("toggle", "api"))?.status?.environments?.[0]?.account ?? "";

    await apps.patchSpec("toggle", "api", { nats: false });
    await waitApp(
      s,
      "toggle",
      "api",
      "NATS off",
      (app) =>
        readyAtGeneration(app) &&
        app.status?.conditions?.find((c) => c.type === "Ready")?.reason === "NatsDisabled" &&
        (app.metadata.finalizers ?? []).length === 0,
    );
    assert.equal(await secretValues(s.core, "toggle", "api-prod-nats"), undefined);
    for (const accounts of (await accountsOnServers(s)).values())
      assert.ok(!accounts.includes(account));
    assert.ok(await refused(before), "credentials of a NATS-off App still connect");

    await apps.patchSpec("toggle", "api", { nats: true });
    const after = await waitSecret(s, "toggle", "api-prod-nats");
    assert.notEqual(after.NATS_CREDENTIALS, before.NATS_CREDENTIALS);
    assert.ok(!(await refused(after)));
  });

  test("a new App gets the finalizer at admission, one turned on later from the controller; delete removes either", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    await createNamespace(s, "admit");
    const writesBefore = s.operatorWrites().length;
    const finalizerPatches = (name: string) =>
      s
        .operatorWrites()
        .slice(writesBefore)
        .filter((w) => w.resource === "apps" && w.subresource === "" && w.name === name).length;
    const early = (await apps.create(
      "admit",
      appManifest("admit", "early", { nats: true, environments: ["prod"] }),
    )) as AppObject;
    assert.deepEqual(early.metadata.finalizers, [FINALIZER], "the webhook did not add it");
    const late = (await apps.create(
      "admit",
      appManifest("admit", "late", { nats: false, environments: ["prod"] }),
    )) as AppObject;
    assert.equal(late.metadata.finalizers, undefined, "an App without accounts got it");
    await waitApp(s, "admit", "early", "Ready", readyAtGeneration);
    assert.equal(finalizerPatches("early"), 0, "the controller wrote the finalizer too");

    await apps.patchSpec("admit", "late", { nats: true });
    await waitApp(
      s,
      "admit",
      "late",
      "Ready and held",
      (app) => readyAtGeneration(app) && holdsFinalizer(app),
    );
    assert.equal(finalizerPatches("late"), 1);

    // The admission's entry belongs to the creator's field manager, not the operator's: an
    // apply without it would leave it there, and the App would never go.
    for (const name of ["early", "late"]) {
      await apps.delete("admit", name);
      await waitUntil(`${name} gone`, async () => (await apps.get("admit", name)) === undefined, {
        timeoutMs: 30_000,
      });
    }
    assert.equal(await secretValues(s.core, "admit", "early-prod-nats"), undefined);
  });

  test("deleting the App deletes its accounts on every server, refuses its credentials, removes the finalizer", async () => {
    const s = stack();
    const apps = appsApi(s.custom);
    const prod = await waitSecret(s, "shop", "orders-prod-nats");
    const account = (await apps.get("shop", "orders"))?.status?.environments?.[0]?.account ?? "";
    const live = await connectWith(prod, "live");
    const closed = live.closed();
    await apps.delete("shop", "orders");
    await waitUntil("App gone", async () => (await apps.get("shop", "orders")) === undefined, {
      timeoutMs: 30_000,
    });
    for (const accounts of (await accountsOnServers(s)).values())
      assert.ok(!accounts.includes(account));
    assert.ok(await refused(prod));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 10_000))]);
    assert.ok(live.isClosed(), "a connected client of the deleted account stayed connected");
    assert.equal(await secretValues(s.core, "shop", "orders-prod-nats"), undefined);
  });

  test("the operator's debug log and every Event hold no seed, JWT or creds text", async () => {
    const s = stack();
    const log = readFileSync(operator.process.logFile, "utf8");
    // The SecretConflict test made reconciles wait: why, with the problem's message, the
    // likeliest carrier of a quoted secret, is in this log.
    assert.ok(
      log
        .split("\n")
        .some(
          (line) =>
            line.includes("reconcile waits") &&
            line.includes("SecretConflict: Secret clash/web-prod-nats"),
        ),
      "no line says why the conflicting App waits",
    );
    const leaks = /\bS[OAU][A-Z2-7]{56}\b|eyJ[\w-]{20,}\.|BEGIN NATS|PRIVATE KEY/;
    assert.doesNotMatch(log, leaks, "the operator's log holds a secret");
    let events = 0;
    for (const namespace of ["shop", "clash", "toggle"]) {
      for (const event of (await s.core.listNamespacedEvent({ namespace })).items) {
        events++;
        assert.doesNotMatch(event.message ?? "", leaks);
      }
    }
    assert.ok(events > 0, "no Events: nothing checked");
  });
});
