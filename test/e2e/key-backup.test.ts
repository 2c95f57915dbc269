/**
 * The disaster: a whole cluster (control plane, keys, NATS state) is lost. A new one gets the
 * backup restored before its operator starts and the same App applied again; the app's old
 * credentials and CA file connect to the new NATS cluster without anyone getting new ones.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { KEYS_LABEL } from "../../src/accounts/kubernetes-secret-store.ts";
import { main } from "../../src/cli/nats-tenancy.ts";
import { startLocalStack, type LocalStack } from "../../src/embedded/local-stack.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { connectWith } from "./app-client.ts";
import { toolchain } from "./harness.ts";
import { appManifest, appsApi, secretValues } from "./operator-harness.ts";
import {
  launchOperator,
  operatorAccess,
  readyAtGeneration,
  type RunningOperator,
} from "./operator-process.ts";

/** A cluster's API server as its admin sees it, and the operator's namespace there. */
interface Target {
  kubeconfig: string;
  namespace: string;
}

function targetOf(stack: LocalStack): Target {
  return { kubeconfig: stack.controlPlane.kubeconfigPath, namespace: stack.settings.namespace };
}

/** The tool, in this process, against `target`. */
async function tool(target: Target, ...args: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await main(
    [...args, "--kubeconfig", target.kubeconfig, "--operator-namespace", target.namespace],
    { out: (t) => (stdout += t), err: (t) => (stderr += t) },
  );
  return { code, stdout, stderr };
}

/** An App with prod, Ready on `stack` under a running operator; the prod Secret's values. */
async function readyOrders(stack: LocalStack, operators: RunningOperator[]) {
  const { kubeconfig } = await operatorAccess(stack);
  const operator = await launchOperator(stack, kubeconfig, {});
  operators.push(operator);
  await operator.waitReady();
  const kc = stack.controlPlane.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const apps = appsApi(kc.makeApiClient(CustomObjectsApi));
  await core.createNamespace({ body: { metadata: { name: "shop" } } });
  await apps.create("shop", appManifest("shop", "orders", { nats: true, environments: ["prod"] }));
  let values: Record<string, string> | undefined;
  await waitUntil(
    "orders Ready with its Secret",
    async () =>
      readyAtGeneration(await apps.get("shop", "orders")) &&
      (values = await secretValues(core, "shop", "orders-prod-nats")) !== undefined,
    { timeoutMs: 30_000 },
  );
  return values ?? {};
}

async function keyEntries(core: CoreV1Api, namespace: string): Promise<string[]> {
  const list = await core.listNamespacedSecret({ namespace, labelSelector: `${KEYS_LABEL}=true` });
  return list.items.map((s) => s.metadata?.name ?? "").sort();
}

describe("key backup and restore", () => {
  test("a lost cluster comes back from its backup: the app's old credentials and CA work on the new NATS cluster", async () => {
    const tools = await toolchain();
    const natsBinary = tools.natsServers.at(-1)?.path ?? "";
    const dir = mkdtempSync(join(tmpdir(), "nats-tenancy-backup-test-"));
    const operators: RunningOperator[] = [];
    let lost: LocalStack | undefined;
    let rebuilt: LocalStack | undefined;
    try {
      const file = join(dir, "keys.backup");
      const passphrase = join(dir, "passphrase");
      writeFileSync(passphrase, "a long enough passphrase\n");
      const wrong = join(dir, "wrong");
      writeFileSync(wrong, "not the passphrase at all\n");

      lost = await startLocalStack({ toolchain: tools, natsBinary });
      const old = await readyOrders(lost, operators);
      const backedUp = await tool(
        targetOf(lost),
        "backup",
        "--out",
        file,
        "--passphrase-file",
        passphrase,
      );
      assert.equal(backedUp.code, 0, backedUp.stderr);
      assert.match(
        backedUp.stdout,
        /^wrote .*keys\.backup: created .*; operator O[A-Z2-7]{55}, system account A[A-Z2-7]{55}; CA included; 1 account\n$/,
      );
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const original = await keyEntries(
        lost.controlPlane.kubeConfig().makeApiClient(CoreV1Api),
        lost.settings.namespace,
      );

      for (const operator of operators.splice(0)) await operator.stop();
      await lost.stop();
      lost = undefined;

      const tampered = join(dir, "tampered.backup");
      const parsed = JSON.parse(readFileSync(file, "utf8")) as { manifest: { created: string } };
      parsed.manifest.created = "2000-01-01T00:00:00.000Z";
      writeFileSync(tampered, JSON.stringify(parsed));
      rebuilt = await startLocalStack({
        toolchain: tools,
        natsBinary,
        // Before the new operator (or its bootstrap) makes keys of its own.
        beforeBootstrap: async (controlPlane, namespace) => {
          const target = { kubeconfig: controlPlane.kubeconfigPath, namespace };
          const core = controlPlane.kubeConfig().makeApiClient(CoreV1Api);
          const badKey = await tool(target, "restore", file, "--passphrase-file", wrong);
          assert.equal(badKey.code, 1);
          assert.match(badKey.stderr, /cannot open the backup: wrong passphrase/);
          const changed = await tool(target, "restore", tampered, "--passphrase-file", passphrase);
          assert.equal(changed.code, 1);
          assert.match(changed.stderr, /manifest was changed/);
          assert.deepEqual(await keyEntries(core, namespace), [], "a refused restore wrote keys");
          const restored = await tool(target, "restore", file, "--passphrase-file", passphrase);
          assert.equal(restored.code, 0, restored.stderr);
          assert.match(restored.stdout, /^restored 3 entries into /);
          assert.deepEqual(await keyEntries(core, namespace), original);
          const again = await tool(target, "restore", file, "--passphrase-file", passphrase);
          assert.equal(again.code, 1);
          assert.match(again.stderr, /already holds keys .* --force/);
        },
      });
      const restoredValues = await readyOrders(rebuilt, operators);
      assert.equal(
        restoredValues.NATS_CREDENTIALS,
        old.NATS_CREDENTIALS,
        "the restored account issued other credentials",
      );
      // The app's old files, on the new cluster's servers.
      const nc = await connectWith(old, "survivor", rebuilt.nats.tlsUrls[1]);
      await nc.flush();
      await nc.close();
    } finally {
      for (const operator of operators) await operator.stop();
      await lost?.stop();
      await rebuilt?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
