import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { RbacAuthorizationV1Api } from "@kubernetes/client-node";
// As apps connect: the `nats` v2 package.
import { connect, credsAuthenticator, type NatsConnection } from "nats";
import type { AppObject } from "../../src/contract/app-object.ts";
import { APP_GROUP } from "../../src/crds/app.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { toolchain } from "./harness.ts";
import { ROOT, TOOL, run } from "./fixtures/run-tool.ts";
import { appsApi, readyAtGeneration, useOperatorStack } from "./operator-harness.ts";

/** The variables `nats-tenancy env` printed, as a shell's eval would set them. */
function exported(stdout: string): Record<string, string> {
  return Object.fromEntries(
    [...stdout.matchAll(/^export (\w+)='([^']*)'$/gm)].map((m) => [m[1] ?? "", m[2] ?? ""]),
  );
}

describe("the nats-tenancy tool", () => {
  const stack = useOperatorStack();

  test("iterapp.toml applied, updated and turned off; info, list and env answer; the kubectl plugin is the same tool", async () => {
    const s = stack();
    const operator = await s.startOperator({ identity: "cli" });
    await operator.waitReady();
    const namespace = "iterapp";
    await s.core.createNamespace({ body: { metadata: { name: namespace } } });
    const kubeconfig = s.stack.controlPlane.kubeconfigPath;
    const dir = mkdtempSync(join(tmpdir(), "nats-tenancy-cli-"));
    const open: NatsConnection[] = [];
    try {
      const file = join(dir, "iterapp.toml");
      const tool = (...args: string[]) =>
        run(TOOL, [...args, "--kubeconfig", kubeconfig, "-n", namespace]);
      const apps = appsApi(s.custom);
      const waitReady = async (check: (app: AppObject) => boolean = () => true) => {
        await waitUntil(
          "lolipop Ready",
          async () => {
            const app = await apps.get(namespace, "lolipop");
            return app !== undefined && readyAtGeneration(app) && check(app);
          },
          { timeoutMs: 30_000, intervalMs: 250 },
        );
      };

      // Bad input: the file, line, column and key; exit 1; nothing applied.
      writeFileSync(file, "port = 3000\n\n[nats]\nconections = 2\n");
      const bad = await tool("iterapp", file, "--app", "lolipop", "--apply");
      assert.equal(bad.code, 1, bad.stderr);
      assert.match(bad.stderr, /iterapp\.toml:4:1: nats\.conections: is not a known field/);
      assert.equal(await apps.get(namespace, "lolipop"), undefined);
      const usage = await tool("iterapp", file);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--app NAME is required/);

      writeFileSync(file, "port = 3000\nnats = true\n");
      const applied = await tool("iterapp", file, "--app", "lolipop", "--apply");
      assert.equal(applied.code, 0, applied.stderr);
      assert.match(
        applied.stdout,
        /App iterapp\/lolipop applied: NATS on, environments prod, test/,
      );
      await waitReady();

      // env: files for local development, and the variables; try-nats connects with them.
      const envDir = join(dir, "prod");
      const env = await tool("env", "lolipop", "--env", "prod", "--dir", envDir);
      assert.equal(env.code, 0, env.stderr);
      const variables = exported(env.stdout);
      assert.deepEqual(Object.keys(variables).sort(), [
        "NATS_CA_FILE",
        "NATS_CREDENTIALS_FILE",
        "NATS_URL",
      ]);
      assert.equal(statSync(variables.NATS_CREDENTIALS_FILE ?? "").mode & 0o777, 0o600);
      const roundTrip = await run(
        process.execPath,
        [join(ROOT, "src/cli/try-nats.ts"), "--request-reply"],
        variables,
      );
      assert.equal(roundTrip.code, 0, roundTrip.stderr);
      assert.match(roundTrip.stdout, /request-reply on hello: reply to request/);

      // info: one field alone, like dokku nats:info --dsn; all of it otherwise.
      const dsn = await tool("info", "lolipop", "--env", "prod", "--dsn");
      assert.equal(dsn.code, 0, dsn.stderr);
      assert.equal(dsn.stdout.trim(), variables.NATS_URL);
      const which = await tool("info", "lolipop", "--url");
      assert.equal(which.code, 2);
      assert.match(which.stderr, /which environment\? add --env \(prod, test\)/);
      const all = await tool("info", "lolipop");
      assert.equal(all.code, 0, all.stderr);
      assert.match(all.stdout, /^App iterapp\/lolipop: Ready True \(AccountsReady/);
      assert.match(
        all.stdout,
        /prod:\n {2}url: {9}tls:\/\/.*\n {2}secret: {6}lolipop-prod-nats\n {2}status: {6}ready\n {2}account: {5}A[A-Z0-9]{55}\n {2}servers: {5}3 acknowledged/,
      );
      assert.match(all.stdout, /ca expires: {2}\d{4}-\d\d-\d\dT/);
      // Not exposed (the chart's nats.expose): no URL outside, and the CLI says where to turn it on.
      assert.doesNotMatch(all.stdout, /outside:/);
      const outside = await tool("info", "lolipop", "--env", "prod", "--url", "--external");
      assert.equal(outside.code, 1);
      assert.match(
        outside.stderr,
        /NATS is not exposed outside the cluster \(Secret lolipop-prod-nats has no NATS_EXTERNAL_URL\); the platform team turns it on with the chart's nats.expose values/,
      );
      const misplaced = await tool("info", "lolipop", "--external");
      assert.equal(misplaced.code, 2);
      assert.match(misplaced.stderr, /--external goes with --url or --dsn/);
      assert.doesNotMatch(all.stdout, /NKEY|BEGIN NATS/, "info printed credentials unasked");
      const creds = await tool("info", "lolipop", "--env", "prod", "--creds");
      assert.equal(
        creds.stdout,
        `${readFileSync(variables.NATS_CREDENTIALS_FILE ?? "", "utf8").trimEnd()}\n`,
      );

      // Someone allowed to read Apps but not Secrets: the info, never the credentials.
      const rbac = s.kc.makeApiClient(RbacAuthorizationV1Api);
      await rbac.createNamespacedRole({
        namespace,
        body: {
          metadata: { name: "app-viewer" },
          rules: [{ apiGroups: [APP_GROUP], resources: ["apps"], verbs: ["get", "list"] }],
        },
      });
      await rbac.createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name: "app-viewer" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "app-viewer" },
          subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "viewer" }],
        },
      });
      const viewer = await s.stack.controlPlane.kubeconfigFor("viewer");
      const asViewer = (...args: string[]) =>
        run(TOOL, [...args, "--kubeconfig", viewer, "-n", namespace]);
      const denied = await asViewer("info", "lolipop", "--env", "prod", "--creds");
      assert.equal(denied.code, 1);
      assert.match(
        denied.stderr,
        /you may not read Secret iterapp\/lolipop-prod-nats \(forbidden\)/,
      );
      assert.equal(denied.stdout, "");
      const seen = await asViewer("info", "lolipop", "--env", "prod");
      assert.equal(seen.code, 0, seen.stderr);
      assert.match(seen.stdout, /url: {9}tls:\/\//);
      assert.match(seen.stdout, /ca expires: {2}unknown: you may not read Secret/);

      // kubectl's wide view gives the URL.
      const { kubectl } = await toolchain();
      const wide = await run(kubectl, [
        "get",
        "natsapp",
        "-o",
        "wide",
        "-n",
        namespace,
        "--kubeconfig",
        kubeconfig,
      ]);
      assert.equal(wide.code, 0, wide.stderr);
      assert.match(wide.stdout, /ENVIRONMENTS\s+URL\s+AGE/);
      assert.match(wide.stdout, /\["prod","test"\]\s+tls:\/\/localhost:\d+\s/);

      // A [nats] table with a limit: the account is re-issued and the limit holds.
      writeFileSync(file, "[nats]\nconnections = 2\n");
      const limited = await tool("iterapp", file, "--app", "lolipop", "--apply");
      assert.equal(limited.code, 0, limited.stderr);
      await waitReady((app) => app.metadata.generation === 2);
      const credsText = readFileSync(variables.NATS_CREDENTIALS_FILE ?? "", "utf8");
      const connectAsApp = () =>
        connect({
          servers: variables.NATS_URL ?? "",
          authenticator: credsAuthenticator(new TextEncoder().encode(credsText)),
          tls: { caFile: variables.NATS_CA_FILE ?? "" },
          reconnect: false,
        });
      for (let i = 0; i < 2; i++) open.push(await connectAsApp());
      await assert.rejects(connectAsApp(), /maximum (account )?connections|exceeded/i);

      // list -A: every App; the kubectl plugin answers the same.
      const listed = await tool("list", "-A");
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /^NAMESPACE\s+APP\s+READY\s+ENVIRONMENTS$/m);
      assert.match(listed.stdout, /^iterapp\s+lolipop\s+True AccountsReady\s+prod, test$/m);
      const plugin = await run(kubectl, ["nats-tenancy", "list", "-A", "--kubeconfig", kubeconfig]);
      assert.equal(plugin.code, 0, plugin.stderr);
      assert.equal(plugin.stdout, listed.stdout);

      // rotate: new prod credentials; the old ones work on while the connections above use them.
      const unknown = await tool("rotate", "lolipop", "--env", "staging");
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /has no environment staging \(it has prod, test\)/);
      const rotated = await tool("rotate", "lolipop", "--env", "prod");
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(
        rotated.stdout,
        /^App iterapp\/lolipop: asked for new credentials for prod\nprod: overlapping \(prod=\d{4}-[^)]+\): new credentials in Secret lolipop-prod-nats; the replaced ones work until no connection uses them, at the latest \d{4}-/,
      );
      const newCreds = await tool("info", "lolipop", "--env", "prod", "--creds");
      assert.notEqual(newCreds.stdout, creds.stdout, "the Secret still holds the old credentials");
      const afterRotation = await tool("info", "lolipop");
      assert.match(
        afterRotation.stdout,
        /prod:[^]*rotation: {4}overlapping[^]*test:[^]*rotation: {4}never rotated/,
      );
      // rotate --signing-key: a new key signs test's new credentials. Nothing holds test's old
      // ones, so their overlap may already be over when the answer is read.
      const signed = await tool("rotate", "lolipop", "--env", "test", "--signing-key");
      assert.equal(signed.code, 0, signed.stderr);
      assert.match(
        signed.stdout,
        /^App iterapp\/lolipop: asked for a new signing key and new credentials for test\ntest: (overlapping|done) \(new signing key\)[^\n]*\n {2}signing key: A[A-Z0-9]{55}(, new; the replaced A[A-Z0-9]{55} leaves| since \d{4}-)/,
      );
      assert.match((await tool("info", "lolipop")).stdout, /test:[^]*signing key: A[A-Z0-9]{55}/);

      // nats = false deletes accounts: said first, done only with --yes.
      writeFileSync(file, "nats = false\n");
      const refused = await tool("iterapp", file, "--app", "lolipop", "--apply");
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        /deletes the NATS accounts of prod, test \(their credentials stop working\); run again with --yes/,
      );
      assert.deepEqual((await apps.get(namespace, "lolipop"))?.spec, {
        nats: { connections: 2 },
        environments: ["prod", "test"],
      });
      const off = await tool("iterapp", file, "--app", "lolipop", "--apply", "--yes");
      assert.equal(off.code, 0, off.stderr);
      assert.match(off.stdout, /NATS off/);
      await waitReady((app) => (app.status?.environments ?? []).length === 0);
      await assert.rejects(connectAsApp(), /authorization|expired|violation/i);
      const gone = await run(process.execPath, [join(ROOT, "src/cli/try-nats.ts")], variables);
      assert.notEqual(gone.code, 0, "the deleted account's credentials still work");
    } finally {
      await Promise.allSettled(open.map((c) => c.close()));
      rmSync(dir, { recursive: true, force: true });
      await operator.stop();
    }
  });
});
