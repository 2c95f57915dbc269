import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Secret } from "@kubernetes/client-node";
import { APP_LABEL } from "../../src/contract/app-secret.ts";
import { MANAGED_BY } from "../../src/kube/apply-secret.ts";
import { boundedAccess } from "../../src/kube/cluster-access.ts";
import { endpointAccess, kubeconfigEndpoint } from "../../src/kube/kubeconfig-access.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { watchAppSecrets } from "../../src/runtime/informers.ts";
import { startProxy } from "./fixtures/tcp-proxy.ts";
import { useControlPlane } from "./harness.ts";

const NAMESPACES = ["cache-a", "cache-b"];

describe("the operator's caches: list and watch without client-node (real API server)", () => {
  const controlPlane = useControlPlane();

  test("a cache follows creates, edits and deletes, and after a cut watch lists again and hands on what went meanwhile", async () => {
    const core = controlPlane().kubeConfig().makeApiClient(CoreV1Api);
    for (const name of NAMESPACES) await core.createNamespace({ body: { metadata: { name } } });
    const secret = (namespace: string, name: string, app?: string): V1Secret => ({
      metadata: {
        name,
        namespace,
        labels: { ...MANAGED_BY, ...(app ? { [APP_LABEL]: app } : {}) },
      },
      stringData: { value: name },
    });
    const create = (body: V1Secret) =>
      core.createNamespacedSecret({ namespace: body.metadata?.namespace ?? "", body });
    await create(secret("cache-a", "one", "shop"));
    await create(secret("cache-b", "two", "ledger"));
    // Not an app Secret: never cached.
    await create(secret("cache-a", "unlabelled"));

    const proxy = await startProxy(new URL(controlPlane().server));
    const endpoint = kubeconfigEndpoint([controlPlane().kubeconfigPath]);
    assert.ok(endpoint);
    const viaProxy = endpointAccess({ ...endpoint, server: proxy.server });
    const changes: string[] = [];
    let restarts = 0;
    const secrets = watchAppSecrets({
      // As the leader's are: a list through a black hole gives up instead of hanging.
      cluster: boundedAccess(viaProxy, { timeoutMs: 2000 }),
      label: "app secrets",
      onChange: (s) => changes.push(`${s.metadata?.namespace ?? ""}/${s.metadata?.name ?? ""}`),
      onRestart: () => (restarts += 1),
      logger: createLogger({ level: "silent" }),
    });
    const names = (namespace?: string) =>
      secrets
        .list(namespace)
        .map((s) => s.metadata?.name)
        .sort();
    const settled = (what: string, check: () => boolean) =>
      waitUntil(what, () => Promise.resolve(check()), { timeoutMs: 20_000, intervalMs: 20 });
    try {
      await secrets.start();
      await secrets.waitSynced();
      assert.deepEqual(names(), ["one", "two"]);
      assert.deepEqual(names("cache-a"), ["one"]);
      assert.equal(secrets.get("cache-b", "two")?.metadata?.managedFields, undefined);

      await create(secret("cache-b", "three", "ledger"));
      await settled("the create seen", () => secrets.get("cache-b", "three") !== undefined);
      await core.patchNamespacedSecret(
        { namespace: "cache-a", name: "one", body: { stringData: { value: "edited" } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      );
      await settled(
        "the edit seen",
        () =>
          secrets.get("cache-a", "one")?.data?.value === Buffer.from("edited").toString("base64"),
      );
      await core.deleteNamespacedSecret({ namespace: "cache-b", name: "three" });
      await settled("the delete seen", () => secrets.get("cache-b", "three") === undefined);
      assert.ok(changes.includes("cache-b/three"));

      // The watch is cut; while it is down one Secret goes and another comes.
      changes.length = 0;
      proxy.blackHole();
      await core.deleteNamespacedSecret({ namespace: "cache-b", name: "two" });
      await create(secret("cache-a", "four", "shop"));
      proxy.resume();
      await settled("the cache listed again", () => names().join() === "four,one");
      assert.ok(restarts >= 1, "the cut watch was not restarted");
      assert.ok(
        changes.includes("cache-b/two"),
        `the Secret gone meanwhile not handed on: ${changes.join()}`,
      );
      assert.ok(changes.includes("cache-a/four"));
      assert.ok(!changes.includes("cache-a/one"), "an unchanged Secret was handed on again");
      assert.equal(secrets.synced(), true);
    } finally {
      await secrets.stop();
      await viaProxy.close();
      await proxy.close();
    }
  });
});
