import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import {
  KubeApiError,
  apiErrorSentence,
  statusOf,
  unlessNotFound,
} from "../../src/kube/api-errors.ts";
import {
  applySecret,
  createSecret,
  secretCreation,
  staleKeys,
} from "../../src/kube/apply-secret.ts";
import { boundedAccess } from "../../src/kube/cluster-access.ts";
import { JsonRequests, MERGE_PATCH_TYPE, corePath } from "../../src/kube/json-requests.ts";
import { useControlPlane } from "./harness.ts";

const NAMESPACE = "lean-requests";

describe("the lean JSON request path (real API server)", () => {
  const controlPlane = useControlPlane();

  const setup = async (): Promise<{ core: CoreV1Api; requests: JsonRequests }> => {
    const kc = controlPlane().kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } }).catch(() => undefined);
    return { core, requests: new JsonRequests(controlPlane().access()) };
  };

  const secret = (name: string, value: string): V1Secret => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, namespace: NAMESPACE, labels: { test: "lean" } },
    data: { value: Buffer.from(value).toString("base64") },
  });

  test("a key the Secret was created with is left by an apply without it, and removed when named stale", async () => {
    const { core, requests } = await setup();
    const keys = async (): Promise<string[]> =>
      Object.keys(
        (await core.readNamespacedSecret({ name: "shrinks", namespace: NAMESPACE })).data ?? {},
      ).sort();
    const full = secret("shrinks", "one");
    full.data = { ...full.data, extra: Buffer.from("x").toString("base64") };
    assert.equal(await createSecret(requests, full), true);
    const smaller = secret("shrinks", "two");
    await applySecret(requests, smaller);
    assert.deepEqual(await keys(), ["extra", "value"], "why stale keys are named");
    const existing = await core.readNamespacedSecret({ name: "shrinks", namespace: NAMESPACE });
    await applySecret(requests, smaller, staleKeys(existing, smaller));
    assert.deepEqual(await keys(), ["value"]);
  });

  test("creates, applies, replaces with a precondition and deletes as client-node reads them", async () => {
    const { core, requests } = await setup();
    const created = await requests.read<V1Secret>(secretCreation(secret("round-trip", "one")));
    assert.ok(created.metadata?.resourceVersion, "read returns the stored Secret");
    assert.equal(await createSecret(requests, secret("round-trip", "two")), false);

    await applySecret(requests, secret("round-trip", "three"));
    const applied = await core.readNamespacedSecret({ name: "round-trip", namespace: NAMESPACE });
    assert.equal(Buffer.from(applied.data?.value ?? "", "base64").toString(), "three");
    assert.ok(
      applied.metadata?.managedFields?.some((f) => f.manager === "nats-tenancy"),
      "applied under the operator's field manager",
    );

    const stale = secret("round-trip", "four");
    if (stale.metadata) stale.metadata.resourceVersion = created.metadata.resourceVersion;
    const conflict = await requests
      .send({ method: "PUT", path: corePath("secrets", NAMESPACE, "round-trip"), body: stale })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.equal(statusOf(conflict), 409, "a stale resourceVersion is refused");

    await requests.send({ method: "DELETE", path: corePath("secrets", NAMESPACE, "round-trip") });
    assert.equal(
      await unlessNotFound(
        requests.send({ method: "DELETE", path: corePath("secrets", NAMESPACE, "round-trip") }),
      ),
      undefined,
    );
  });

  test("a refused request throws a KubeApiError with a sentence for users", async () => {
    const { requests } = await setup();
    const refused = await requests
      .send({
        method: "PATCH",
        path: corePath("secrets", NAMESPACE, "missing"),
        body: { data: {} },
        contentType: MERGE_PATCH_TYPE,
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.ok(refused instanceof KubeApiError);
    assert.equal(refused.code, 404);
    assert.match(apiErrorSentence(refused), /answered 404 NotFound: secrets "missing" not found/);

    const invalid = await requests
      .send({
        method: "POST",
        path: corePath("secrets", NAMESPACE),
        body: secret("Not_Valid", "x"),
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    assert.equal(statusOf(invalid), 422);
  });

  test("a request after the term's signal fired is never sent", async () => {
    const { core } = await setup();
    const ended = new JsonRequests(
      boundedAccess(controlPlane().access(), { signal: AbortSignal.abort() }),
    );
    await assert.rejects(
      createSecret(ended, secret("after-the-term", "x")),
      (error: unknown) => (error as Error).name === "AbortError",
    );
    assert.equal(
      await unlessNotFound(
        core.readNamespacedSecret({ name: "after-the-term", namespace: NAMESPACE }),
      ),
      undefined,
    );
  });
});
