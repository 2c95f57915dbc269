/**
 * The product's front door, walked on the real node with helm 3 and helm 4: `helm install` of
 * deploy/helm/nats-tenancy with the operator image built from the Dockerfile, an App applied
 * with kubectl's API, an app Deployment whose pods run the `nats` v2 snippet over what the
 * webhook injected, `helm test`, and `helm uninstall`.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  AuthorizationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Pod,
} from "@kubernetes/client-node";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { mintAppAccount } from "../../src/accounts/app-account.ts";
import { loadOperatorIdentity, trustedSigningKeysOf } from "../../src/accounts/identities.ts";
import { storedAccountSignedBy } from "../../src/accounts/operator-key-rotation.ts";
import { runningOperatorJwts } from "../../src/nats/server-trust.ts";
import { ensureOperatorSeeds } from "../../src/accounts/key-store.ts";
import { KubernetesSecretStore } from "../../src/accounts/kubernetes-secret-store.ts";
import { FINALIZER, type AppObject } from "../../src/contract/app-object.ts";
import { APP_RESOURCE } from "../../src/crds/app.ts";
import { ROTATE_ANNOTATION } from "../../src/contract/credential-rotation.ts";
import { RESTARTED_FOR_ANNOTATION } from "../../src/kube/rollout-restart.ts";
import { buildOperatorImage, type BuiltImage } from "../../src/embedded/operator-image.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import { freePort } from "../../src/embedded/ports.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { kubeConfigAccess } from "../../src/kube/kube-config.ts";
import { secretValues } from "./operator-harness.ts";
import { presentedCertificate } from "../../src/nats/server-reload.ts";
import {
  NAMESPACE,
  NATS_VERSION,
  RELEASE,
  chartImageValues as imageValues,
  installArgs,
  upgradeArgs,
} from "./fixtures/chart.ts";
import { useHelm, type Helm } from "./fixtures/helm.ts";
import { TOOL, run } from "./fixtures/run-tool.ts";
import { systemUserCreds } from "./fixtures/system-user.ts";
import { natsAppContainer, natsAppImage } from "./fixtures/nats-app-image.ts";
import { ask, describeNamespace, isReady, podLog, podLogs, podsOf } from "./fixtures/pods.ts";
import { readyAtGeneration } from "./operator-process.ts";
import { chartSkipReason, useNodeCluster } from "./harness.ts";

const { helms } = await ensureToolchain();
interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
}

/**
 * A system-account connection to one NATS pod, with a user signed by the operator's own system
 * account key (the test has admin access to the key store).
 */
async function systemConnection(
  c: Clients,
  pod: V1Pod,
  publish = ["$SYS.REQ.SERVER.PING.*"],
): Promise<NatsConnection> {
  const seeds = await ensureOperatorSeeds(
    new KubernetesSecretStore(kubeConfigAccess(c.kc), NAMESPACE),
  );
  const identity = loadOperatorIdentity("nats-tenancy", seeds);
  const creds = systemUserCreds(identity.systemAccount, publish);
  return connectToPod(c, pod, creds);
}

/** Connects to one NATS pod by its IP, verified as the pod's name. */
async function connectToPod(c: Clients, pod: V1Pod, creds: string): Promise<NatsConnection> {
  const config = await secretValues(c.core, NAMESPACE, `${RELEASE}-nats-config`);
  return connect({
    servers: `tls://${pod.status?.podIP ?? ""}:4222`,
    authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
    // Connected by pod IP (the test is on the bridge), verified as the pod's name.
    tls: {
      ca: config?.["ca.crt"] ?? "",
      servername: `${pod.metadata?.name ?? ""}.nats-headless.${NAMESPACE}.svc`,
    } as { ca: string },
  });
}

/**
 * The NATS pods once the StatefulSet is settled: rolled out, three, all Ready, none going (a
 * roll the operator started may still be replacing one when its command returns).
 */
async function settledNatsPods(c: Clients): Promise<V1Pod[]> {
  let pods: V1Pod[] = [];
  await waitUntil(
    "the NATS StatefulSet rolled out: three pods Ready, none terminating",
    async () => {
      const { status } = await c.apps.readNamespacedStatefulSet({
        name: "nats",
        namespace: NAMESPACE,
      });
      if (status?.currentRevision !== status?.updateRevision || status?.updatedReplicas !== 3)
        return false;
      pods = await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats");
      return pods.length === 3 && pods.every((p) => isReady(p) && !p.metadata?.deletionTimestamp);
    },
    { timeoutMs: 120_000 },
  );
  return pods;
}

/** The certificate a NATS pod presents to clients, reached by its IP and verified as its name. */
function presentedByPod(pod: V1Pod, ca: string): ReturnType<typeof presentedCertificate> {
  return presentedCertificate(
    {
      host: pod.status?.podIP ?? "",
      port: 4222,
      servername: `${pod.metadata?.name ?? ""}.nats-headless.${NAMESPACE}.svc`,
    },
    ca,
  );
}

async function appReady(c: Clients, namespace: string, name: string): Promise<void> {
  await waitUntil(
    `App ${namespace}/${name} Ready`,
    async () => {
      const app = (await c.custom.getNamespacedCustomObject({
        ...APP_RESOURCE,
        namespace,
        name,
      })) as Parameters<typeof isReady>[0];
      return isReady(app);
    },
    { timeoutMs: 60_000 },
  );
}

/**
 * Waits until the app's request-reply works (again, after its connection was disturbed). A
 * failure ends with what tells why: `context` (say, the operator's logs), the NATS pods, the
 * app pod's log and, last, its client's state (CI shows the end of a long message).
 */
async function answersWithin(
  c: Clients,
  pod: V1Pod,
  subject: string,
  timeoutMs: number,
  context: () => Promise<string> = () => Promise.resolve(""),
): Promise<void> {
  const name = pod.metadata?.name ?? "app";
  await waitUntil(
    `${name}'s request-reply on echo.${subject} works`,
    async () =>
      (await ask(pod, `/request?subject=echo.${subject}&data=x`).catch(() => "")).endsWith(": x"),
    { timeoutMs, intervalMs: 500 },
  ).catch(async (error: unknown) => {
    const nats = (await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats")).map(
      (p) =>
        `${p.metadata?.name ?? "?"} ${p.status?.podIP ?? "-"} ready ${String(isReady(p))} started ${String(p.status?.startTime?.toISOString())}${p.metadata?.deletionTimestamp ? " terminating" : ""}`,
    );
    const log = await podLog(c.core, pod.metadata?.namespace ?? "", name, 40);
    const status = await ask(pod, "/status").catch((e: unknown) => String(e));
    throw new Error(
      `${String(error)}\n${await context()}\nNATS pods:\n${nats.join("\n")}\n${log}\n${name} /status (${new Date().toISOString()}): ${status}`,
      { cause: error },
    );
  });
}

/**
 * Prints the app's longest time without a NATS server so far (a roll replaces each server).
 * Not asserted yet: through the Service a reconnect still met a gone pod in about one roll in
 * ten and waited out nats.js's 20 s connect timeout once or twice (21-41 s); the servers' lame
 * duck mode is to end that.
 */
async function printLongestOutage(pod: V1Pod, label: string): Promise<void> {
  const { longestOutageMs } = JSON.parse(await ask(pod, "/status")) as { longestOutageMs: number };
  process.stderr.write(
    `${label}: the app's longest time without a NATS server ${String(longestOutageMs)} ms\n`,
  );
}

async function createApp(
  c: Clients,
  namespace: string,
  name: string,
  envs: string[],
  more: Record<string, unknown> = {},
) {
  await c.custom.createNamespacedCustomObject({
    ...APP_RESOURCE,
    namespace,
    body: {
      apiVersion: `${APP_RESOURCE.group}/${APP_RESOURCE.version}`,
      kind: "App",
      metadata: { name, namespace },
      spec: { nats: true, environments: envs, ...more },
    },
  });
}

/** A Deployment of the nats v2 app, labelled for an App's environment; its Ready pod. */
async function deployApp(
  c: Clients,
  namespace: string,
  app: string,
  environment: string,
  suffix = "",
): Promise<V1Pod> {
  const name = `${app}-${environment}${suffix}`;
  const labels = { "nats-tenancy.io/app": app, "nats-tenancy.io/environment": environment };
  await c.apps.createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name, namespace },
      spec: {
        replicas: 1,
        selector: { matchLabels: { deployment: name } },
        template: {
          metadata: { labels: { ...labels, deployment: name } },
          spec: { containers: [natsAppContainer()] },
        },
      },
    },
  });
  let pod: V1Pod | undefined;
  await waitUntil(
    `${name} pod Ready`,
    async () => {
      pod = (await podsOf(c.core, namespace, `deployment=${name}`)).find(isReady);
      return pod !== undefined;
    },
    { timeoutMs: 90_000 },
  ).catch(async (error: unknown) => {
    throw new Error(`${String(error)}\n${await describeNamespace(c.core, namespace)}`, {
      cause: error,
    });
  });
  if (!pod) throw new Error("unreachable");
  return pod;
}

describe("the Helm chart on the test node", { skip: chartSkipReason() }, () => {
  let operatorImage: BuiltImage;
  const cluster = useNodeCluster(async () => {
    operatorImage = await buildOperatorImage({
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stderr.write(`operator image archive: ${operatorImage.bytes} bytes\n`);
    return { images: [natsAppImage()], archives: [operatorImage] };
  });
  const clients = (): Clients => {
    const kc = cluster().kubeConfig();
    return {
      kc,
      core: kc.makeApiClient(CoreV1Api),
      apps: kc.makeApiClient(AppsV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
    };
  };

  test("the operator image in a pod without its service account token exits with an error naming it, never the demo", async () => {
    const c = clients();
    const namespace = "no-token";
    await c.core.createNamespace({ body: { metadata: { name: namespace } } });
    await c.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name: "operator" },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          containers: [{ name: "operator", image: operatorImage.name, imagePullPolicy: "Never" }],
        },
      },
    });
    let exitCode: number | undefined;
    await waitUntil(
      "the operator pod terminated",
      async () => {
        const pod = await c.core.readNamespacedPod({ name: "operator", namespace });
        exitCode = pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode;
        return exitCode !== undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.equal(exitCode, 1);
    const log = await c.core.readNamespacedPodLog({ name: "operator", namespace });
    assert.match(log, /running in a pod without its in-cluster configuration \(missing .*token/);
    await c.core.deleteNamespace({ name: namespace });
  });

  for (const helm of helms) {
    describe(`with ${helm.label}`, () => {
      let h: Helm;
      // The first helm line installs NATS exposed on node ports (the exposure test changes it).
      const outside = { nodePort: 0, websocketPort: 0 };
      const exposeAs = (names: string[]): string[] => [
        "nats.expose.enabled=true",
        `nats.expose.names={${names.join(",")}}`,
        `nats.expose.nodePort=${String(outside.nodePort)}`,
        "nats.expose.websocket.enabled=true",
        `nats.expose.websocket.nodePort=${String(outside.websocketPort)}`,
      ];
      const INSTALLED_NAMES = ["nats.tenancy.test", "old.tenancy.test"];
      const values = (): string[] => [
        ...imageValues(operatorImage, cluster().images.natsServers[NATS_VERSION] ?? ""),
        // Renewals happen during the suite: 120 s certificates, renewed at 80 s, looked at
        // every 10 s.
        ...[
          "operator.certificateLifetimeSeconds=120",
          "operator.resyncSeconds=10",
          ...(helm === helms[0] ? exposeAs([cluster().network.address, ...INSTALLED_NAMES]) : []),
        ].flatMap((value) => ["--set", value]),
      ];
      const shop = `shop-${helm.label.replaceAll(".", "-")}`;
      let prod: V1Pod;

      test("helm install into an empty cluster: operator and NATS pods Ready, a leader elected, the route mesh full, helm test passes", async () => {
        h = useHelm(helm.path, cluster().kubeconfigPath);
        const c = clients();
        outside.nodePort = await freePort({ low: 30000, high: 32000 });
        outside.websocketPort = await freePort({ low: 30000, high: 32000 });
        const started = Date.now();
        await h.run(installArgs(values()));
        const installMs = Date.now() - started;
        process.stderr.write(`${helm.label}: install to Ready ${installMs} ms\n`);

        for (const [name, replicas] of [
          [`${RELEASE}-controller`, 2],
          [`${RELEASE}-webhook`, 2],
        ] as const) {
          const deployment = await c.apps.readNamespacedDeployment({ name, namespace: NAMESPACE });
          assert.equal(deployment.status?.readyReplicas, replicas, `${name} pods Ready`);
        }
        const nats = await c.apps.readNamespacedStatefulSet({ name: "nats", namespace: NAMESPACE });
        assert.equal(nats.status?.readyReplicas, 3);

        const lease = await c.kc
          .makeApiClient(CoordinationV1Api)
          .readNamespacedLease({ name: `${RELEASE}-leader`, namespace: NAMESPACE });
        const controllers = await podsOf(
          c.core,
          NAMESPACE,
          "app.kubernetes.io/component=controller",
        );
        assert.ok(
          controllers.some((p) => p.metadata?.name === lease.spec?.holderIdentity),
          `the Lease is held by a controller pod (${lease.spec?.holderIdentity ?? "none"})`,
        );

        // Each server reports a route to each other server.
        const natsPods = await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats");
        const [first] = natsPods;
        assert.ok(first);
        const system = await systemConnection(c, first);
        try {
          await waitUntil(
            "full route mesh",
            async () => {
              const replies = await system.requestMany("$SYS.REQ.SERVER.PING.ROUTEZ", "", {
                maxWait: 2000,
                maxMessages: 3,
              });
              const routes: number[] = [];
              for await (const reply of replies) {
                routes.push(reply.json<{ data: { num_routes: number } }>().data.num_routes);
              }
              return routes.length === 3 && routes.every((n) => n >= 2);
            },
            { timeoutMs: 30_000 },
          );
        } finally {
          await system.close();
        }

        const tested = await h.run(["test", RELEASE, "-n", NAMESPACE, "--timeout", "3m"]);
        assert.match(tested.stdout, /Phase:\s+Succeeded/);

        // Least privilege: a webhook replica cannot read the keys or the CA; the controller can.
        const authorization = c.kc.makeApiClient(AuthorizationV1Api);
        const may = async (
          account: string,
          resourceAttributes: { namespace: string; verb: string; resource: string; name?: string },
        ): Promise<boolean> =>
          (
            await authorization.createSubjectAccessReview({
              body: {
                spec: {
                  user: `system:serviceaccount:${NAMESPACE}:${RELEASE}-${account}`,
                  resourceAttributes,
                },
              },
            })
          ).status?.allowed ?? false;
        const mayGet = (account: string, secret: string): Promise<boolean> =>
          may(account, { namespace: NAMESPACE, verb: "get", resource: "secrets", name: secret });
        const keys = await c.core.listNamespacedSecret({
          namespace: NAMESPACE,
          labelSelector: "nats-tenancy.io/keys",
        });
        const guarded = [...keys.items.map((x) => x.metadata?.name ?? ""), "nats-tenancy-ca"];
        for (const secret of guarded) {
          assert.equal(
            await mayGet("webhook", secret),
            false,
            `the webhook may not read ${secret}`,
          );
          assert.equal(await mayGet("controller", secret), true, `the controller reads ${secret}`);
        }
        assert.equal(await mayGet("webhook", `${RELEASE}-webhook-tls`), true);
        // Repeated refusals raise the count of one Event on the pod's owner, in any namespace.
        assert.equal(
          await may("webhook", { namespace: "default", verb: "patch", resource: "events" }),
          true,
        );
      });

      test("an App with prod and test: the prod pod does request-reply over its injected credentials; the test pod and another App's pod see nothing of prod", async () => {
        const c = clients();
        const namespace = shop;
        await c.core.createNamespace({ body: { metadata: { name: namespace } } });
        await createApp(c, namespace, "orders", ["prod", "test"]);
        await createApp(c, namespace, "billing", ["prod"]);
        await appReady(c, namespace, "orders");
        await appReady(c, namespace, "billing");
        prod = await deployApp(c, namespace, "orders", "prod");
        const testPod = await deployApp(c, namespace, "orders", "test");
        const other = await deployApp(c, namespace, "billing", "prod");
        assert.equal(
          await ask(prod, "/request?subject=echo.hello&data=ping"),
          `${prod.metadata?.name ?? ""}: ping`,
          "request-reply within prod",
        );
        const env = prod.spec?.containers[0]?.env?.map((e) => e.name) ?? [];
        for (const name of [
          "NATS_URL",
          "NATS_CREDENTIALS",
          "NATS_CREDENTIALS_FILE",
          "NATS_CA_FILE",
        ])
          assert.ok(env.includes(name), `${name} injected`);

        for (const outsider of [testPod, other]) {
          await ask(outsider, "/subscribe?subject=orders.>");
          await ask(outsider, "/subscribe?subject=echo.>");
        }
        await ask(prod, "/publish?subject=orders.created&data=secret");
        // Nor can an outsider answer or see prod's requests: its own echo is in its own account.
        assert.equal(
          await ask(testPod, "/request?subject=echo.hello&data=ping"),
          `${testPod.metadata?.name ?? ""}: ping`,
        );
        await new Promise((resolve) => setTimeout(resolve, 500));
        for (const outsider of [testPod, other]) {
          assert.equal(await ask(outsider, "/received?subject=orders.>"), "[]");
        }
        // The servers' monitoring port listens on loopback only: no tenant reaches it.
        const [server] = await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats");
        const monitor = await fetch(
          `http://${prod.status?.podIP ?? ""}:8080/fetch?url=${encodeURIComponent(`http://${server?.status?.podIP ?? ""}:8222/varz`)}`,
        );
        assert.match(
          await monitor.text(),
          /ECONNREFUSED/,
          "the monitoring port refuses a tenant's pod",
        );
      });

      test(
        "a rotation restarts, once, the Deployment of an App that asks for it; its new pod works with the new credentials and the old ones are revoked",
        { skip: helm !== helms[0] && "once is enough" },
        async () => {
          const c = clients();
          const namespace = `${shop}-rollout`;
          await c.core.createNamespace({ body: { metadata: { name: namespace } } });
          await createApp(c, namespace, "ledger", ["prod"], {
            credentials: { restartWorkloads: true },
          });
          await appReady(c, namespace, "ledger");
          const before = await deployApp(c, namespace, "ledger", "prod");
          const secretBefore = await secretValues(c.core, namespace, "ledger-prod-nats");
          await c.custom.patchNamespacedCustomObject(
            {
              ...APP_RESOURCE,
              namespace,
              name: "ledger",
              body: { metadata: { annotations: { [ROTATE_ANNOTATION]: "1" } } },
            },
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
          );
          // The old pod goes with the rollout, so nothing uses the old credentials: revoked.
          let after: V1Pod | undefined;
          await waitUntil(
            "ledger's new pod Ready, the old one gone, the old credentials revoked",
            async () => {
              const pods = await podsOf(c.core, namespace, "deployment=ledger-prod");
              after = pods.find(isReady);
              const app = (await c.custom.getNamespacedCustomObject({
                ...APP_RESOURCE,
                namespace,
                name: "ledger",
              })) as AppObject;
              const rotation = app.status?.environments?.[0]?.rotation;
              return (
                pods.length === 1 &&
                after !== undefined &&
                after.metadata?.name !== before.metadata?.name &&
                rotation?.state === "Done"
              );
            },
            { timeoutMs: 120_000, intervalMs: 1000 },
          );
          const pod = after ?? assert.fail("no new pod");
          const secretAfter = await secretValues(c.core, namespace, "ledger-prod-nats");
          assert.notEqual(secretAfter?.NATS_CREDENTIALS, secretBefore?.NATS_CREDENTIALS);
          assert.equal(
            await ask(pod, "/request?subject=echo.hello&data=ping"),
            `${pod.metadata?.name ?? ""}: ping`,
            "the restarted pod works with the new credentials",
          );
          const deployment = await c.apps.readNamespacedDeployment({
            name: "ledger-prod",
            namespace,
          });
          assert.equal(deployment.metadata?.generation, 2, "restarted more than once");
          assert.equal(
            deployment.spec?.template.metadata?.annotations?.[RESTARTED_FOR_ANNOTATION] !==
              undefined,
            true,
          );
          const events = await c.core.listNamespacedEvent({ namespace });
          assert.ok(events.items.some((e) => e.reason === "WorkloadsRestarted"));
        },
      );

      test("certificate renewal reaches every NATS server without a restart; the app keeps working and new pods connect", async () => {
        const c = clients();
        const nats = await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats");
        const configSecret = async (): Promise<Record<string, string>> =>
          (await secretValues(c.core, NAMESPACE, `${RELEASE}-nats-config`)) ?? {};
        const fingerprint = (pem: string | undefined): string =>
          new X509Certificate(pem ?? "").fingerprint256;
        const before = fingerprint((await configSecret())["tls.crt"]);
        let renewed = before;
        // The install's lifetime is 120 s: the leader renews at 80 s.
        await waitUntil(
          "a renewed server certificate in the NATS config Secret",
          async () => {
            renewed = fingerprint((await configSecret())["tls.crt"]);
            return renewed !== before;
          },
          { timeoutMs: 150_000, intervalMs: 1000 },
        );
        const renewedAt = Date.now();
        const ca = (await configSecret())["ca.crt"] ?? "";
        await waitUntil(
          "every NATS server presents the renewed certificate",
          async () => {
            for (const pod of nats) {
              const presented = await presentedByPod(pod, ca);
              if (presented.fingerprint256 !== renewed) return false;
            }
            return true;
          },
          { timeoutMs: 120_000, intervalMs: 1000 },
        ).catch(async (error: unknown) => {
          throw new Error(
            `${String(error)}\n${await podLogs(c.core, NAMESPACE, "app.kubernetes.io/component=controller")}`,
            { cause: error },
          );
        });
        process.stderr.write(
          `${helm.label}: renewal served by all servers ${Date.now() - renewedAt} ms after the Secret changed\n`,
        );
        const after = await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats");
        assert.deepEqual(
          after.map((p) => [p.metadata?.uid, p.status?.containerStatuses?.[0]?.restartCount]),
          nats.map((p) => [p.metadata?.uid, p.status?.containerStatuses?.[0]?.restartCount]),
          "no NATS pod was restarted or replaced",
        );
        await answersWithin(c, prod, "renewed", 15_000);
        // Both prod pods answer echo requests; either answer proves the new pod connected.
        const fresh = await deployApp(c, shop, "orders", "prod", "-after-renewal");
        assert.match(await ask(fresh, "/request?subject=echo.fresh&data=y"), /^orders-prod-.*: y$/);
      });

      test("killing the leader pod: the other controller takes the Lease and an App created meanwhile becomes Ready", async () => {
        const c = clients();
        const leases = c.kc.makeApiClient(CoordinationV1Api);
        const holder = async (): Promise<string | undefined> =>
          (await leases.readNamespacedLease({ name: `${RELEASE}-leader`, namespace: NAMESPACE }))
            .spec?.holderIdentity ?? undefined;
        const leader = await holder();
        assert.ok(leader);
        await c.core.deleteNamespacedPod({
          name: leader,
          namespace: NAMESPACE,
          gracePeriodSeconds: 0,
        });
        await createApp(c, shop, "late", ["prod"]);
        // The dying leader releases the Lease on SIGTERM; the other replica takes it next.
        let next: string | undefined;
        await waitUntil(
          `the Lease held by another controller than ${leader}`,
          async () => {
            next = await holder();
            return next !== undefined && next !== "" && next !== leader;
          },
          { timeoutMs: 60_000 },
        );
        assert.ok(
          (await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=controller")).some(
            (pod) => pod.metadata?.name === next,
          ),
          `the new holder ${String(next)} is a controller pod`,
        );
        await appReady(c, shop, "late");
        const late = await deployApp(c, shop, "late", "prod");
        assert.equal(
          await ask(late, "/request?subject=echo.late&data=z"),
          `${late.metadata?.name ?? ""}: z`,
        );
        // A second environment replaces the App's key Secret, as of the version read: the
        // chart's RBAC lets the controller do that in its own namespace.
        await c.custom.patchNamespacedCustomObject(
          {
            ...APP_RESOURCE,
            namespace: shop,
            name: "late",
            body: { spec: { environments: ["prod", "test"] } },
          },
          setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
        );
        await waitUntil(
          "late Ready with test",
          async () => {
            const app = (await c.custom.getNamespacedCustomObject({
              ...APP_RESOURCE,
              namespace: shop,
              name: "late",
            })) as AppObject;
            return readyAtGeneration(app) && app.status?.environments?.length === 2;
          },
          { timeoutMs: 60_000 },
        );
      });

      test("rolling the NATS StatefulSet with helm upgrade: accounts survive, no App loses its credentials, nothing is re-minted", async () => {
        const c = clients();
        const environments = async (): Promise<string> => {
          const apps = (await c.custom.listNamespacedCustomObject({
            ...APP_RESOURCE,
            namespace: shop,
          })) as { items: { metadata: { name: string }; status?: { environments?: unknown } }[] };
          return JSON.stringify(apps.items.map((a) => [a.metadata.name, a.status?.environments]));
        };
        const secrets = async (): Promise<string> =>
          JSON.stringify(
            (
              await c.core.listNamespacedSecret({
                namespace: shop,
                labelSelector: "nats-tenancy.io/app",
              })
            ).items.map((x) => [x.metadata?.name, x.metadata?.resourceVersion]),
          );
        const natsUids = async (): Promise<string[]> =>
          (await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats")).map(
            (p) => p.metadata?.uid ?? "",
          );
        const [statusBefore, secretsBefore, uidsBefore] = [
          await environments(),
          await secrets(),
          await natsUids(),
        ];
        await h.run(upgradeArgs([...values(), "--set", "nats.podAnnotations.rolled=yes"]));
        const uidsAfter = await natsUids();
        assert.equal(
          uidsAfter.filter((uid) => uidsBefore.includes(uid)).length,
          0,
          "every server replaced",
        );
        await answersWithin(c, prod, "rolled", 30_000);
        await printLongestOutage(prod, helm.label);
        assert.equal(await environments(), statusBefore, "every App's accounts as they were");
        assert.equal(await secrets(), secretsBefore, "no app Secret rewritten");
      });

      test(
        "a new operator signing key: the NATS servers restart into it one at a time, every account is signed anew, the app keeps its credentials and keeps working; the old key is trusted no more",
        { skip: helm !== helms[0] && "once is enough" },
        async () => {
          const c = clients();
          const store = new KubernetesSecretStore(kubeConfigAccess(c.kc), NAMESPACE);
          const old = loadOperatorIdentity("nats-tenancy", await ensureOperatorSeeds(store));
          const credsOf = async () =>
            (await secretValues(c.core, shop, "orders-prod-nats"))?.["nats.creds"];
          const credsBefore = await credsOf();
          const natsUids = async (): Promise<string[]> =>
            (await podsOf(c.core, NAMESPACE, "app.kubernetes.io/component=nats")).map(
              (p) => p.metadata?.uid ?? "",
            );
          const uidsBefore = await natsUids();
          // Before: the old key's accounts are served, as the probe below shows after.
          const probe = mintAppAccount(
            { namespace: "probe", app: "probe", environment: "old-key", limits: {} },
            old,
          );

          const asked = Date.now();
          const rotated = await run(
            TOOL,
            [
              "rotate-operator-key",
              "--operator-namespace",
              NAMESPACE,
              "--timeout-seconds",
              "300",
              "--kubeconfig",
              cluster().kubeconfigPath,
            ],
            {},
            330_000,
          );
          assert.equal(
            rotated.code,
            0,
            `${rotated.stderr}
${rotated.stdout}`,
          );
          assert.match(
            rotated.stdout,
            /the NATS servers restart to load it\n[^]*every account is being signed anew[^]*\ndone: the old key is trusted no more\n$/,
          );
          process.stderr.write(
            `${helm.label}: operator signing key rotated in ${Date.now() - asked} ms
`,
          );

          const now = loadOperatorIdentity("nats-tenancy", await ensureOperatorSeeds(store));
          assert.notEqual(now.signing.publicKey, old.signing.publicKey);
          assert.equal(await storedAccountSignedBy(store, old.signing.publicKey), false);
          const uidsAfter = await natsUids();
          assert.equal(
            uidsAfter.filter((uid) => uidsBefore.includes(uid)).length,
            0,
            "every server restarted",
          );
          const nats = await settledNatsPods(c);
          const system = await systemConnection(c, nats[0] ?? assert.fail(), [
            "$SYS.REQ.SERVER.PING.*",
            "$SYS.REQ.CLAIMS.UPDATE",
          ]);
          try {
            let running: Map<string, string> | undefined;
            // The last server to restart may still be joining the route mesh.
            await waitUntil(
              "every server answers VARZ",
              async () => {
                running = await runningOperatorJwts(system, 3, 2000);
                return running !== undefined;
              },
              { timeoutMs: 30_000 },
            );
            for (const [server, jwt] of running ?? [])
              assert.deepEqual(trustedSigningKeysOf(jwt), [now.signing.publicKey], server);
            // A server stores an account of an untrusted key, and refuses its users.
            await system.request("$SYS.REQ.CLAIMS.UPDATE", probe.stored.accountJwt, {
              timeout: 5000,
            });
          } finally {
            await system.close();
          }
          await assert.rejects(
            connectToPod(c, nats[0] ?? assert.fail(), probe.creds),
            /authorization|violation/i,
          );

          assert.equal(await credsOf(), credsBefore, "the app's credentials changed");
          await answersWithin(c, prod, "operator-key", 30_000, () =>
            podLogs(c.core, NAMESPACE, "app.kubernetes.io/component=controller"),
          );
          await printLongestOutage(prod, helm.label);
        },
      );

      test(
        "exposed on a node port: a client on the host connects with the app's creds by the external name over TLS and talks with its pod; another App's creds see nothing of it; renaming reissues the certificates; unexposing closes the port and removes the key",
        { skip: helm !== helms[0] && "once is enough" },
        async () => {
          const c = clients();
          const address = cluster().network.address;
          const { nodePort, websocketPort } = outside;
          const upgrade = async (expose: string[]): Promise<void> => {
            const began = Date.now();
            await h.run(
              upgradeArgs([
                ...values(),
                // As the rolling test left it: the servers are not rolled again.
                ...["nats.podAnnotations.rolled=yes", ...expose].flatMap((v) => ["--set", v]),
              ]),
            );
            process.stderr.write(`${helm.label}: helm upgrade --wait ${Date.now() - began} ms\n`);
          };
          const ca = async (): Promise<string> =>
            (await secretValues(c.core, NAMESPACE, `${RELEASE}-nats-config`))?.["ca.crt"] ?? "";
          /** Waits until every server presents a certificate naming all of `external`, none of `gone`. */
          const serversName = async (external: string[], gone: string[]): Promise<void> => {
            await waitUntil(
              `every NATS server's certificate names ${external.join(", ")}${gone.length > 0 ? ` and not ${gone.join(", ")}` : ""}`,
              async () => {
                for (const pod of await settledNatsPods(c)) {
                  const cert = await presentedByPod(pod, await ca());
                  const names = cert.subjectAltName ?? "";
                  if (!external.every((n) => names.includes(n))) return false;
                  if (gone.some((n) => names.includes(n))) return false;
                }
                return true;
              },
              { timeoutMs: 180_000, intervalMs: 1000 },
            );
          };
          const externalUrls = async (app: string): Promise<(string | undefined)[]> => {
            const data = await secretValues(c.core, shop, `${app}-prod-nats`);
            return [data?.NATS_EXTERNAL_URL, data?.NATS_EXTERNAL_WEBSOCKET_URL];
          };
          const url = `tls://${address}:${nodePort}`;
          const websocketUrl = `wss://${address}:${websocketPort}`;

          // Exposed since the install, through the upgrades and restarts of the tests before.
          await serversName([address, ...INSTALLED_NAMES], []);
          assert.deepEqual(
            [...(await externalUrls("orders")), ...(await externalUrls("billing"))],
            [url, websocketUrl, url, websocketUrl],
          );
          const service = await c.core.readNamespacedService({
            name: "nats-external",
            namespace: NAMESPACE,
          });
          assert.deepEqual(
            service.spec?.ports?.map((p) => [p.port, p.nodePort]),
            [
              [4222, nodePort],
              [443, websocketPort],
            ],
            "the client port and the WebSocket listener only",
          );

          // What a developer does on their own machine: the CLI's files and URL, as apps use them.
          const dir = mkdtempSync(join(tmpdir(), "nats-tenancy-outside-"));
          const cli = async (args: string[]) => {
            const result = await run(TOOL, [
              ...args,
              "-n",
              shop,
              "--kubeconfig",
              cluster().kubeconfigPath,
            ]);
            assert.equal(result.code, 0, result.stderr);
            return result.stdout;
          };
          // By the node's address, verified by the external name: the nats.js transport verifies
          // an address URL as "localhost" (it sends no server name for an IP), so it is told one.
          const connectOutside = async (app: string, servername: string) => {
            const exported = await cli([
              "env",
              app,
              "--env",
              "prod",
              "--external",
              "--dir",
              join(dir, app),
            ]);
            const variables: Record<string, string | undefined> = Object.fromEntries(
              [...exported.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1] ?? "", m[2]]),
            );
            assert.equal(variables.NATS_URL, url);
            return connect({
              servers: variables.NATS_URL,
              authenticator: credsAuthenticator(
                readFileSync(variables.NATS_CREDENTIALS_FILE ?? ""),
              ),
              tls: { caFile: variables.NATS_CA_FILE ?? "", servername } as { caFile: string },
            });
          };
          try {
            assert.equal(
              (await cli(["info", "orders", "--env", "prod", "--url", "--external"])).trim(),
              url,
            );
            assert.match(
              await cli(["info", "orders", "--env", "prod"]),
              new RegExp(`\n {2}outside: {5}${url}\n {2}outside: {5}${websocketUrl}\n`),
            );
            const orders = await connectOutside("orders", "nats.tenancy.test");
            const billing = await connectOutside("billing", "nats.tenancy.test");
            const ordersStatus: string[] = [];
            void (async () => {
              for await (const status of orders.status()) ordersStatus.push(status.type);
            })();
            try {
              // Without client options: the servers tell no pod address a client outside could
              // try instead of the exposed one.
              assert.deepEqual(orders.info?.connect_urls ?? [], [], "no server address learned");
              const seen: string[] = [];
              const everything = billing.subscribe(">");
              void (async () => {
                for await (const m of everything) seen.push(`${m.subject} ${m.string()}`);
              })();
              await billing.flush();
              const reply = await orders.request("echo.outside", "from-outside", { timeout: 5000 });
              assert.match(
                reply.string(),
                /^orders-prod-.*: from-outside$/,
                "the pod answers the host",
              );
              const inbox = orders.subscribe("orders.outside", { max: 1 });
              await orders.flush();
              await ask(prod, "/publish?subject=orders.outside&data=from-pod");
              for await (const m of inbox)
                assert.equal(m.string(), "from-pod", "the host hears the pod");
              // The same over WebSocket, verified by the runtime's trust store as a browser would.
              const overWebsocket = await run(
                process.execPath,
                [
                  join(import.meta.dirname, "fixtures/websocket-request.ts"),
                  websocketUrl,
                  join(dir, "orders", "nats.creds"),
                  "echo.websocket",
                  "ws",
                ],
                { NODE_EXTRA_CA_CERTS: join(dir, "orders", "ca.crt") },
              );
              assert.match(overWebsocket.stdout, /^orders-prod-.*: ws\n$/, overWebsocket.stderr);
              orders.publish("orders.created", "from-outside");
              await orders.flush();
              await new Promise((resolve) => setTimeout(resolve, 500));
              assert.deepEqual(seen, [], "billing's creds see nothing of orders");

              // Renamed (one name dropped, one added): the certificates are reissued; a client
              // that reconnects verifies them by a name kept, a new one by the name added.
              const renamed = Date.now();
              await upgrade(exposeAs([address, "nats.tenancy.test", "nats2.tenancy.test"]));
              await serversName(
                [address, "nats.tenancy.test", "nats2.tenancy.test"],
                ["old.tenancy.test"],
              );
              process.stderr.write(
                `${helm.label}: renamed, every server presents the new names ${Date.now() - renamed} ms after helm upgrade began\n`,
              );
              await orders.reconnect();
              await waitUntil(
                "the host client reconnected",
                () => Promise.resolve(ordersStatus.includes("reconnect")),
                { timeoutMs: 30_000 },
              );
              assert.match(
                (await orders.request("echo.renamed", "x", { timeout: 5000 })).string(),
                /^orders-prod-.*: x$/,
                "the reconnected client works",
              );
              const again = await connectOutside("orders", "nats2.tenancy.test");
              await again.close();
              await assert.rejects(
                connectOutside("billing", "old.tenancy.test"),
                /altnames|certificate/i,
                "a dropped name no longer verifies",
              );

              const unexposed = Date.now();
              await upgrade(["nats.expose.enabled=false"]);
              await serversName([], [address, "nats.tenancy.test", "nats2.tenancy.test"]);
              await waitUntil(
                "NATS_EXTERNAL_URL and NATS_EXTERNAL_WEBSOCKET_URL gone from the app Secrets",
                async () =>
                  [...(await externalUrls("orders")), ...(await externalUrls("billing"))].every(
                    (u) => u === undefined,
                  ),
                { timeoutMs: 60_000 },
              );
              process.stderr.write(
                `${helm.label}: unexposed, names and keys gone ${Date.now() - unexposed} ms after helm upgrade began\n`,
              );
              await assert.rejects(
                c.core.readNamespacedService({ name: "nats-external", namespace: NAMESPACE }),
                /404|not found/i,
              );
              for (const port of [nodePort, websocketPort])
                await assert.rejects(
                  new Promise<void>((resolve, reject) => {
                    const socket = netConnect({ host: address, port, timeout: 3000 });
                    socket.once("connect", () => {
                      socket.destroy();
                      resolve();
                    });
                    socket.once("timeout", () => {
                      socket.destroy();
                      reject(new Error("timeout"));
                    });
                    socket.once("error", reject);
                  }),
                  `node port ${String(port)} is closed`,
                );
              const refused = await run(TOOL, [
                "env",
                "orders",
                "--env",
                "prod",
                "--external",
                "--dir",
                join(dir, "after"),
                "-n",
                shop,
                "--kubeconfig",
                cluster().kubeconfigPath,
              ]);
              assert.equal(refused.code, 1);
              assert.match(refused.stderr, /NATS is not exposed outside the cluster/);
            } finally {
              await orders.close();
              await billing.close();
            }
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        },
      );

      test("helm uninstall: the webhook registration is gone, labelled pods are created again (with nothing), the operator's keys are kept", async () => {
        const c = clients();
        await h.run(["uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m"]);
        h.release();
        const admission = await c.kc
          .makeApiClient(AdmissionregistrationV1Api)
          .listMutatingWebhookConfiguration();
        assert.deepEqual(
          admission.items.map((w) => w.metadata?.name),
          [],
          "no webhook configuration left",
        );
        const namespace = shop;
        const pod = await c.core.createNamespacedPod({
          namespace,
          body: {
            metadata: {
              name: "after-uninstall",
              labels: { "nats-tenancy.io/app": "orders", "nats-tenancy.io/environment": "prod" },
            },
            spec: { containers: [natsAppContainer()] },
          },
        });
        assert.equal(
          pod.spec?.containers[0]?.env?.some((e) => e.name === "NATS_URL") ?? false,
          false,
          "a labelled pod is admitted, and gets nothing",
        );
        const secrets = await c.core.listNamespacedSecret({
          namespace: NAMESPACE,
          labelSelector: "nats-tenancy.io/keys",
        });
        assert.ok(secrets.items.length > 0, "the key store is kept");
        // With no operator left, an App's finalizer holds its deletion until someone removes
        // it, as the README's uninstall section says.
        const listed = (await c.custom.listNamespacedCustomObject({
          ...APP_RESOURCE,
          namespace,
        })) as {
          items: { metadata: { name: string } }[];
        };
        const names = listed.items.map((app) => app.metadata.name);
        for (const name of names)
          await c.custom.deleteNamespacedCustomObject({ ...APP_RESOURCE, namespace, name });
        await new Promise((resolve) => setTimeout(resolve, 2000));
        for (const name of names) {
          const held = (await c.custom.getNamespacedCustomObject({
            ...APP_RESOURCE,
            namespace,
            name,
          })) as { metadata: { deletionTimestamp?: string; finalizers?: string[] } };
          assert.ok(held.metadata.deletionTimestamp, `${name} is being deleted`);
          assert.deepEqual(
            held.metadata.finalizers,
            [FINALIZER],
            `${name} waits for its finalizer`,
          );
          await c.custom.patchNamespacedCustomObject(
            { ...APP_RESOURCE, namespace, name, body: { metadata: { finalizers: null } } },
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
          );
        }
        await waitUntil(
          "the Apps gone once their finalizer is removed",
          async () =>
            (
              (await c.custom.listNamespacedCustomObject({ ...APP_RESOURCE, namespace })) as {
                items: unknown[];
              }
            ).items.length === 0,
          { timeoutMs: 10_000 },
        );
        await c.core.deleteNamespace({ name: namespace });
        // The next install starts from an empty namespace again.
        await c.core.deleteNamespace({ name: NAMESPACE });
        await waitUntil(
          "namespaces deleted",
          async () => {
            const names = (await c.core.listNamespace()).items.map((n) => n.metadata?.name);
            return !names.includes(NAMESPACE) && !names.includes(namespace);
          },
          { timeoutMs: 120_000 },
        );
      });
    });
  }
});
