import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import {
  ApiException,
  ApiextensionsV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  loadAllYaml,
  setHeaderOptions,
  type KubernetesObject,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import {
  APP_API_VERSION,
  APP_KIND,
  appSpecIssues,
  type App,
  type AppStatus,
  APP_RESOURCE,
} from "../../src/crds/app.ts";
import { APP_CRD_NAME, appManifestsYaml } from "../../src/crds/crd.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { toolchain, useControlPlane } from "./harness.ts";

const run = promisify(execFile);
const namespace = "default";
const resource = { ...APP_RESOURCE, namespace };

function manifest(name: string, spec: unknown): object {
  return { apiVersion: APP_API_VERSION, kind: APP_KIND, metadata: { name }, spec };
}

/** The API server's message for a refused request; fails the test when it was accepted. */
async function refusal(request: Promise<unknown>): Promise<string> {
  try {
    await request;
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    assert.equal(error.code, 422, `expected 422 Unprocessable Entity, got ${error.code}`);
    const body = (typeof error.body === "string" ? JSON.parse(error.body) : error.body) as {
      message?: string;
    };
    return body.message ?? "";
  }
  assert.fail("the API server accepted an invalid App");
}

describe("App CRD on a real API server", () => {
  const controlPlane = useControlPlane();
  const objects = () => controlPlane().kubeConfig().makeApiClient(CustomObjectsApi);
  const create = (name: string, spec: unknown) =>
    objects().createNamespacedCustomObject({ ...resource, body: manifest(name, spec) });

  const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

  test("the CRD is accepted and served; alone it keeps any nats", async () => {
    // The typed clients serialize their own models, dropping a plain object's x-kubernetes-*
    // keys: the YAML goes through the client's deserializer first.
    const [crd, ...policy] = loadAllYaml(appManifestsYaml()) as KubernetesObject[];
    assert.equal(crd?.kind, "CustomResourceDefinition");
    assert.deepEqual(
      policy.map((o) => o.kind),
      ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"],
    );
    const extensions = controlPlane().kubeConfig().makeApiClient(ApiextensionsV1Api);
    await extensions.createCustomResourceDefinition({ body: crd as V1CustomResourceDefinition });
    await waitUntil(
      "App CRD established",
      async () => {
        const read = await extensions.readCustomResourceDefinition({ name: APP_CRD_NAME });
        return (
          read.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ??
          false
        );
      },
      { timeoutMs: 20_000 },
    );
    // Established can precede the moment the new group is routable; a list proves it is.
    await waitUntil(
      "apps served",
      async () => {
        await objects().listNamespacedCustomObject(resource);
        return true;
      },
      { timeoutMs: 20_000 },
    );

    // What the CRD cannot check; such an object is what the controller must refuse itself.
    await create("legacy", { nats: "yes", environments: ["prod"] });

    const generic = KubernetesObjectApi.makeApiClient(controlPlane().kubeConfig());
    for (const object of policy) await generic.create(object);
    // A policy applies once the API server's informers have it.
    await waitUntil(
      "admission policy enforced",
      async () => {
        const dryRun = objects().createNamespacedCustomObject({
          ...resource,
          body: manifest("probe", { nats: "yes", environments: ["prod"] }),
          dryRun: "All",
        });
        return dryRun.then(
          () => false,
          (error: unknown) =>
            error instanceof ApiException &&
            String(error.body).includes("ValidatingAdmissionPolicy"),
        );
      },
      { timeoutMs: 20_000 },
    );
  });

  test("accepts nats: true and an object of limits, keeping the limits as sent", async () => {
    await create("simple", { nats: true, environments: ["prod", "test"] });
    const limits = {
      connections: -1,
      payload: 8 * 1024 * 1024,
      subscriptions: 1000,
      jetstream: { memory: 0, storage: 1024 ** 3, streams: 10, consumers: -1 },
    };
    await create("limited", { nats: limits, environments: ["prod"] });
    await create("off", { nats: false, environments: ["dev"] });
    const read = (await objects().getNamespacedCustomObject({
      ...resource,
      name: "limited",
    })) as App;
    assert.deepEqual(read.spec, { nats: limits, environments: ["prod"] });
  });

  test("accepts exports and imports, as sent", async () => {
    const nats = {
      exports: [
        { subject: "orders.>", type: "stream", to: [{ app: "billing" }] },
        {
          subject: "quote",
          type: "service",
          to: [{ app: "shop", namespace: "other", environment: "test" }],
        },
      ],
      imports: [
        { from: { app: "billing" }, subject: "invoices.*", type: "stream", localSubject: "in.*" },
      ],
    };
    await create("sharing", { nats, environments: ["prod"] });
    const read = (await objects().getNamespacedCustomObject({
      ...resource,
      name: "sharing",
    })) as App;
    assert.deepEqual(read.spec, { nats, environments: ["prod"] });
  });

  test("status is a subresource: written through /status only, without a new generation", async () => {
    const status: AppStatus = {
      observedGeneration: 1,
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "AccountsReady",
          message: "2 of 2 environments ready",
          lastTransitionTime: "2026-01-02T03:04:05Z",
          observedGeneration: 1,
        },
      ],
      environments: [
        { name: "prod", secret: "simple-prod-nats", ready: true, revision: 1700000000 },
        { name: "test", secret: "simple-test-nats", ready: false },
      ],
    };
    // The main resource ignores status...
    await objects().patchNamespacedCustomObject(
      { ...resource, name: "simple", body: { status } },
      mergePatch,
    );
    let read = (await objects().getNamespacedCustomObject({ ...resource, name: "simple" })) as App;
    assert.equal(read.status, undefined);
    // ...which /status takes, leaving the generation alone.
    await objects().patchNamespacedCustomObjectStatus(
      { ...resource, name: "simple", body: { status } },
      mergePatch,
    );
    read = (await objects().getNamespacedCustomObject({ ...resource, name: "simple" })) as App;
    assert.deepEqual(read.status, status);
    assert.equal(read.metadata.generation, 1);

    const message = await refusal(
      objects().patchNamespacedCustomObjectStatus(
        {
          ...resource,
          name: "simple",
          body: { status: { conditions: [{ ...status.conditions?.[0], status: "Maybe" }] } },
        },
        mergePatch,
      ),
    );
    assert.match(message, /status\.conditions\[0\]\.status: Unsupported value: "Maybe"/);
  });

  const invalid: [string, unknown, RegExp][] = [
    [
      "an environment that is not a DNS label",
      { nats: true, environments: ["Prod"] },
      /spec\.environments\[0\]: Invalid value: "Prod": spec\.environments\[0\] in body should match '\^\[a-z0-9\]\(\[-a-z0-9\]\*\[a-z0-9\]\)\?\$'/,
    ],
    [
      "a duplicate environment",
      { nats: true, environments: ["prod", "prod"] },
      /spec\.environments\[1\]: Duplicate value: "prod"/,
    ],
    ["missing environments", { nats: true }, /spec\.environments: Required value/],
    [
      "no environments",
      { nats: true, environments: [] },
      /spec\.environments: Invalid value: 0: spec\.environments in body should have at least 1 items/,
    ],
    [
      "connections out of range",
      { nats: { connections: 0 }, environments: ["prod"] },
      /denied request: spec\.nats\.connections must be an integer from 1 to 1000000, or -1 for unlimited$/,
    ],
    [
      "a limit that is no integer",
      { nats: { payload: "1MB" }, environments: ["prod"] },
      /spec\.nats\.payload must be an integer from 1 to 8388608/,
    ],
    [
      "an unknown key in nats",
      { nats: { conections: 10 }, environments: ["prod"] },
      /ValidatingAdmissionPolicy 'apps\.nats-tenancy\.io' with binding 'apps\.nats-tenancy\.io' denied request: spec\.nats may only have the fields connections, payload, subscriptions, jetstream, exports, imports, not conections$/,
    ],
    [
      "an unknown key in nats.jetstream",
      { nats: { jetstream: { streams: 1, memroy: 10 } }, environments: ["prod"] },
      /spec\.nats\.jetstream may only have the fields memory, storage, streams, consumers, not memroy$/,
    ],
    [
      "a jetstream limit out of range",
      { nats: { jetstream: { streams: -2 } }, environments: ["prod"] },
      /spec\.nats\.jetstream\.streams must be an integer from 0 to 100000, or -1 for unlimited/,
    ],
    [
      "an export of the servers' own subjects",
      {
        nats: { exports: [{ subject: "$SYS.>", type: "stream", to: [{ app: "a" }] }] },
        environments: ["prod"],
      },
      /spec\.nats\.exports\[\]\.subject must start with a literal token outside \$SYS, \$JS, _INBOX$/,
    ],
    [
      "an export of every subject",
      {
        nats: { exports: [{ subject: "*.orders", type: "stream", to: [{ app: "a" }] }] },
        environments: ["prod"],
      },
      /spec\.nats\.exports\[\]\.subject must start with a literal token/,
    ],
    [
      "an export subject that is no subject",
      {
        nats: { exports: [{ subject: "orders..eu", type: "stream", to: [{ app: "a" }] }] },
        environments: ["prod"],
      },
      /spec\.nats\.exports\[\]\.subject must be a NATS subject/,
    ],
    [
      "a subject exported twice",
      {
        nats: {
          exports: [
            { subject: "orders", type: "stream", to: [{ app: "a" }] },
            { subject: "orders", type: "service", to: [{ app: "b" }] },
          ],
        },
        environments: ["prod"],
      },
      /spec\.nats\.exports must not repeat a subject$/,
    ],
    [
      "an export of an unknown type",
      {
        nats: { exports: [{ subject: "orders", type: "queue", to: [{ app: "a" }] }] },
        environments: ["prod"],
      },
      /spec\.nats\.exports\[\]\.type must be "stream" or "service"$/,
    ],
    [
      "an export to no one",
      {
        nats: { exports: [{ subject: "orders", type: "stream", to: [] }] },
        environments: ["prod"],
      },
      /spec\.nats\.exports\[\]\.to must have at least 1 item/,
    ],
    [
      "an import from an app that is no DNS label",
      {
        nats: { imports: [{ from: { app: "Shop" }, subject: "orders", type: "stream" }] },
        environments: ["prod"],
      },
      /spec\.nats\.imports\[\]\.from\.app must be a DNS label$/,
    ],
    [
      "an import whose local subject drops a wildcard",
      {
        nats: {
          imports: [
            {
              from: { app: "shop" },
              subject: "orders.*",
              type: "stream",
              localSubject: "shop.orders",
            },
          ],
        },
        environments: ["prod"],
      },
      /spec\.nats\.imports\[\] localSubject must have the same wildcards as subject$/,
    ],
    [
      "too many exports",
      {
        nats: {
          exports: Array.from({ length: 33 }, (_, i) => ({
            subject: `s${String(i)}`,
            type: "stream",
            to: [{ app: "a" }],
          })),
        },
        environments: ["prod"],
      },
      /spec\.nats\.exports must have at most 32 items/,
    ],
    [
      "nats a string",
      { nats: "yes", environments: ["prod"] },
      /denied request: spec\.nats must be true, false, or an object of limits$/,
    ],
  ];
  for (const [what, spec, expected] of invalid) {
    test(`refuses ${what} with a readable message`, async () => {
      const message = await refusal(create("invalid", spec));
      assert.match(message, expected);
    });
  }

  test("an App stored before the policy takes metadata and status writes, not spec writes", async () => {
    const ref = { ...resource, name: "legacy" };
    const read = async () => (await objects().getNamespacedCustomObject(ref)) as App;
    // The controller's own check finds what the API server let through.
    assert.deepEqual(appSpecIssues((await read()).spec), [
      { path: "nats", message: 'must be true, false, or an object of limits; got "yes"' },
    ]);
    await objects().patchNamespacedCustomObject(
      { ...ref, body: { metadata: { finalizers: ["nats-tenancy.io/accounts"] } } },
      mergePatch,
    );
    await objects().patchNamespacedCustomObjectStatus(
      { ...ref, body: { status: { observedGeneration: 1 } } },
      mergePatch,
    );
    let app = await read();
    assert.deepEqual(app.metadata.finalizers, ["nats-tenancy.io/accounts"]);
    assert.equal(app.status?.observedGeneration, 1);

    const message = await refusal(
      objects().patchNamespacedCustomObject(
        { ...ref, body: { spec: { environments: ["prod", "test"] } } },
        mergePatch,
      ),
    );
    assert.match(
      message,
      /denied request: spec\.nats must be true, false, or an object of limits$/,
    );
    await objects().patchNamespacedCustomObject(
      { ...ref, body: { metadata: { finalizers: null }, spec: { nats: true } } },
      mergePatch,
    );
    app = await read();
    assert.deepEqual(app.spec, { nats: true, environments: ["prod"] });
  });

  test("kubectl get natsapp shows the printer columns", async () => {
    const read = await controlPlane()
      .kubeConfig()
      .makeApiClient(ApiextensionsV1Api)
      .readCustomResourceDefinition({ name: APP_CRD_NAME });
    const columns = read.spec.versions[0]?.additionalPrinterColumns ?? [];
    assert.deepEqual(
      columns.map((c) => [c.name, c.jsonPath]),
      [
        ["Ready", '.status.conditions[?(@.type=="Ready")].status'],
        ["Reason", '.status.conditions[?(@.type=="Ready")].reason'],
        ["Environments", ".spec.environments"],
        ["URL", ".status.environments[0].url"],
        ["Age", ".metadata.creationTimestamp"],
      ],
    );

    const { kubectl } = await toolchain();
    const cp = controlPlane();
    const { stdout } = await run(kubectl, [
      "--kubeconfig",
      cp.kubeconfigPath,
      "--cache-dir",
      join(cp.dir, "kubectl-cache"),
      "get",
      "natsapp",
      "--namespace",
      namespace,
    ]);
    const rows = stdout
      .trim()
      .split("\n")
      .map((line) => line.trim().split(/\s{2,}/));
    assert.deepEqual(rows[0], ["NAME", "READY", "ENVIRONMENTS", "AGE"]);
    const simple = rows.find((row) => row[0] === "simple");
    assert.deepEqual(simple?.slice(0, 3), ["simple", "True", '["prod","test"]']);
  });
});
