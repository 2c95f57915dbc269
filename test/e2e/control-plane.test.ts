import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  PatchStrategy,
  Watch,
  setHeaderOptions,
  type V1CustomResourceDefinition,
} from "@kubernetes/client-node";
import { waitUntil } from "../../src/embedded/wait.ts";
import { toolchain, useControlPlane } from "./harness.ts";

const run = promisify(execFile);

const group = "harness.nats-tenancy.io";
const crd: V1CustomResourceDefinition = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: "Namespaced",
    names: { plural: "widgets", singular: "widget", kind: "Widget", listKind: "WidgetList" },
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: {
                type: "object",
                properties: { size: { type: "integer", minimum: 1 } },
                required: ["size"],
              },
            },
          },
        },
      },
    ],
  },
};

describe("embedded control plane (etcd + kube-apiserver)", () => {
  const controlPlane = useControlPlane();

  test("a CRD and its custom resources are served, and a watch sees ADDED, MODIFIED, DELETED", async () => {
    const kc = controlPlane().kubeConfig();
    const extensions = kc.makeApiClient(ApiextensionsV1Api);
    const objects = kc.makeApiClient(CustomObjectsApi);
    await extensions.createCustomResourceDefinition({ body: crd });
    await waitUntil(
      "CRD established",
      async () => {
        const read = await extensions.readCustomResourceDefinition({ name: `widgets.${group}` });
        return (
          read.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ??
          false
        );
      },
      { timeoutMs: 20_000 },
    );

    // Established can precede the moment the new group is routable; a list proves it is.
    const ref = { group, version: "v1", namespace: "default", plural: "widgets", name: "w1" };
    await waitUntil(
      "widgets served",
      async () => {
        await objects.listNamespacedCustomObject(ref);
        return true;
      },
      { timeoutMs: 20_000 },
    );

    const events: { type: string; size: unknown }[] = [];
    let watchError: unknown;
    let abort: AbortController | undefined;
    const deleted = new Promise<void>((resolve) => {
      void new Watch(kc)
        .watch(
          `/apis/${group}/v1/namespaces/default/widgets`,
          {},
          (type, obj: { spec?: { size?: unknown } }) => {
            events.push({ type, size: obj.spec?.size });
            if (type === "DELETED") resolve();
          },
          (error: unknown) => {
            watchError ??= error ?? new Error("watch ended");
            resolve();
          },
        )
        .then((controller) => (abort = controller));
    });
    const seen = (count: number) => () => {
      if (watchError) throw new Error("watch failed", { cause: watchError });
      return Promise.resolve(events.length >= count);
    };
    // The watch is registered asynchronously; an object created before it would arrive as a
    // synthetic ADDED anyway, since the watch starts without a resourceVersion.
    await objects.createNamespacedCustomObject({
      ...ref,
      body: {
        apiVersion: `${group}/v1`,
        kind: "Widget",
        metadata: { name: "w1" },
        spec: { size: 1 },
      },
    });
    await waitUntil("ADDED", seen(1), { timeoutMs: 10_000 });
    await objects.patchNamespacedCustomObject(
      { ...ref, body: { spec: { size: 2 } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await waitUntil("MODIFIED", seen(2), { timeoutMs: 10_000 });
    await objects.deleteNamespacedCustomObject(ref);
    await Promise.race([
      deleted,
      new Promise((_, reject) =>
        setTimeout(() => {
          reject(new Error("no DELETED event in 10 s"));
        }, 10_000),
      ),
    ]);
    abort?.abort();
    assert.equal(watchError, undefined);
    assert.deepEqual(events, [
      { type: "ADDED", size: 1 },
      { type: "MODIFIED", size: 2 },
      { type: "DELETED", size: 2 },
    ]);
  });

  test("kubectl uses the same kubeconfig and reports the pinned server version", async () => {
    const { kubectl, versions } = await toolchain();
    const { stdout } = await run(kubectl, [
      "--kubeconfig",
      controlPlane().kubeconfigPath,
      "version",
      "-o",
      "json",
    ]);
    const version = JSON.parse(stdout) as { serverVersion: { gitVersion: string; minor: string } };
    assert.equal(version.serverVersion.gitVersion, versions.kubernetes);
    assert.equal(version.serverVersion.minor, versions.kubernetes.split(".")[1]);
  });

  test("a server-side dry run of an invalid object is rejected with the API server's schema error", async () => {
    const { kubectl } = await toolchain();
    const cp = controlPlane();
    const manifest = join(cp.dir, "invalid-widget.yaml");
    const dryRun = (name: string, size: number) => {
      writeFileSync(
        manifest,
        `apiVersion: ${group}/v1\nkind: Widget\nmetadata:\n  name: ${name}\nspec:\n  size: ${size}\n`,
      );
      return run(kubectl, [
        "--kubeconfig",
        cp.kubeconfigPath,
        "apply",
        "--dry-run=server",
        "-f",
        manifest,
      ]);
    };
    const result = await dryRun("bad", 0).then(
      () => undefined,
      (error: unknown) => error as { code: number; stderr: string },
    );
    assert.ok(result, "kubectl accepted an invalid object");
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /spec\.size: Invalid value: 0: spec\.size in body should be greater than or equal to 1/,
    );

    // And a valid one passes the same dry run without being stored.
    const ok = await dryRun("good", 3);
    assert.match(ok.stdout, /widget\.harness\.nats-tenancy\.io\/good created \(server dry run\)/);
    const objects = cp.kubeConfig().makeApiClient(CustomObjectsApi);
    await assert.rejects(
      objects.getNamespacedCustomObject({
        group,
        version: "v1",
        namespace: "default",
        plural: "widgets",
        name: "good",
      }),
      (error: { code?: number }) => error.code === 404,
    );
  });
});
