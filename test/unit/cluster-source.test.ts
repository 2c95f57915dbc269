import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  InClusterConfigError,
  clusterSource,
  type Environment,
} from "../../src/cli/cluster-source.ts";
import { SERVICE_ACCOUNT_DIR } from "../../src/kube/kubeconfig-access.ts";

const account = (...files: string[]): string[] => files.map((f) => join(SERVICE_ACCOUNT_DIR, f));
const POD_ENV = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };

function host(env: Record<string, string>, files: string[]): Environment {
  return { env, exists: (path) => files.includes(path), home: "/home/dev" };
}

describe("which cluster the process runs against", () => {
  test("a kubeconfig given wins everywhere", () => {
    assert.deepEqual(clusterSource("/k", host(POD_ENV, [])), { kind: "kubeconfig", path: "/k" });
  });

  test("in a pod with its service account: in-cluster, even with a ~/.kube/config", () => {
    const files = [...account("namespace", "token", "ca.crt"), "/home/dev/.kube/config"];
    assert.deepEqual(clusterSource(undefined, host(POD_ENV, files)), { kind: "in-cluster" });
  });

  test("in a pod without a token: an error naming what is missing, never the demo", () => {
    assert.throws(
      () => clusterSource(undefined, host(POD_ENV, [])),
      (error: unknown) =>
        error instanceof InClusterConfigError &&
        error.message.includes(join(SERVICE_ACCOUNT_DIR, "token")) &&
        error.message.includes("automountServiceAccountToken"),
    );
    // The account is mounted but the API server's address is not in the environment.
    assert.throws(
      () => clusterSource(undefined, host({}, account("namespace", "token", "ca.crt"))),
      /KUBERNETES_SERVICE_HOST/,
    );
  });

  test("outside a pod: ~/.kube/config, else the demo", () => {
    assert.deepEqual(clusterSource(undefined, host({}, ["/home/dev/.kube/config"])), {
      kind: "default-kubeconfig",
    });
    assert.deepEqual(clusterSource(undefined, host({}, [])), { kind: "demo" });
  });
});
