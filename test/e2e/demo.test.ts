/**
 * `npm start` with no cluster, as a newcomer runs it: the embedded stack comes up, the example
 * App gets credentials, and the printed command (and an app on the older `nats` v2 client)
 * publish and subscribe with them. Ctrl-C stops everything and removes its files.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, test } from "node:test";
import { connect as connectV2, credsAuthenticator as credsV2 } from "nats";
import { ManagedProcess } from "../../src/embedded/process.ts";
import { cacheRoot } from "../../src/embedded/toolchain.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { toolchain } from "./harness.ts";

const ROOT = join(import.meta.dirname, "../..");
const home = mkdtempSync(join(tmpdir(), "nats-tenancy-demo-home-"));
after(() => {
  rmSync(home, { recursive: true, force: true });
});

test("npm start without a cluster runs the operator on an embedded stack and prints working credentials", async () => {
  await toolchain();
  // No KUBECONFIG, no ~/.kube/config, not in a pod: the demo path. The toolchain cache stays.
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env))
    if (value !== undefined && key !== "KUBECONFIG" && !key.startsWith("KUBERNETES_"))
      env[key] = value;
  env.HOME = home;
  env.NATS_TENANCY_CACHE = cacheRoot();
  const logFile = join(home, "npm-start.log");
  const demo = ManagedProcess.start({
    name: "npm-start",
    command: process.execPath,
    args: [join(ROOT, "src/cli/main.ts")],
    env,
    cwd: ROOT,
    logFile,
  });
  try {
    await waitUntil(
      "the demo's instructions",
      () => Promise.resolve(readFileSync(logFile, "utf8").includes("Ctrl-C stops everything")),
      { timeoutMs: 120_000, processes: [demo] },
    );
    const output = readFileSync(logFile, "utf8");
    const command = output.split("\n").find((line) => line.includes("src/cli/try-nats.ts"));
    assert.ok(command, `no command to try in:\n${output}`);
    const vars = Object.fromEntries(
      [...command.matchAll(/(NATS_[A-Z_]+)=(\S+)/g)].map((m) => [m[1] ?? "", m[2] ?? ""]),
    );
    assert.deepEqual(Object.keys(vars).sort(), [
      "NATS_CA_FILE",
      "NATS_CREDENTIALS_FILE",
      "NATS_URL",
    ]);
    for (const name of ["NATS_URL", "NATS_CREDENTIALS", "NATS_CREDENTIALS_FILE", "NATS_CA_FILE"])
      assert.match(output, new RegExp(`^  ${name}=`, "m"), `${name} is not printed`);

    // The webhook's part of the contract: a labelled pod gets every variable, by reference.
    assert.match(output, /was given by the webhook:\n/);
    for (const name of ["NATS_URL", "NATS_CREDENTIALS"])
      assert.match(output, new RegExp(`^  ${name} from Secret hello-prod-nats, key ${name}$`, "m"));
    assert.match(output, /^ {2}NATS_CREDENTIALS_FILE=\/bindings\/nats\/nats\.creds$/m);
    assert.match(output, /^ {2}NATS_CA_FILE=\/bindings\/nats\/ca\.crt$/m);
    assert.match(
      output,
      /^ {2}volume \S+ \(Secret hello-prod-nats\) at \/bindings\/nats, read-only$/m,
    );
    assert.doesNotMatch(output, /BEGIN NATS USER JWT|NKEY SEED/, "the demo printed credentials");
    // The tool, as the demo suggests it.
    const kubeconfig = /export KUBECONFIG=(\S+)/.exec(output)?.[1];
    const infoLine = output.split("\n").find((line) => line.includes("bin/nats-tenancy info"));
    assert.ok(kubeconfig && infoLine, `no tool command in:\n${output}`);
    const info = await promisify(execFile)(
      process.execPath,
      infoLine
        .trim()
        .replace(/^npx node /, "")
        .split(/\s+/),
      {
        cwd: ROOT,
        env: { ...env, KUBECONFIG: kubeconfig },
        timeout: 30_000,
      },
    );
    assert.match(info.stdout, /^App demo\/hello: Ready True/);
    assert.match(info.stdout, /^prod:$/m);

    const run = await promisify(execFile)(process.execPath, ["src/cli/try-nats.ts"], {
      cwd: ROOT,
      env: { ...env, ...vars },
      timeout: 30_000,
    });
    assert.match(run.stdout, /^received on hello: hello from \d+$/m);

    // Apps on the `nats` v2 package connect with the same files.
    const nc = await connectV2({
      servers: (vars.NATS_URL ?? "").split(","),
      authenticator: credsV2(readFileSync(vars.NATS_CREDENTIALS_FILE ?? "")),
      tls: { caFile: vars.NATS_CA_FILE ?? "" },
    });
    try {
      const sub = nc.subscribe("v2.hello", { max: 1 });
      nc.publish("v2.hello", "from nats v2");
      for await (const msg of sub) assert.equal(msg.string(), "from nats v2");
    } finally {
      await nc.close();
    }

    demo.signal("SIGINT");
    const exit = await Promise.race([
      demo.exited,
      new Promise<undefined>((resolve) => {
        setTimeout(() => {
          resolve(undefined);
        }, 30_000);
      }),
    ]);
    // Either the demo's own handler finished first, or the embedded servers' cleanup hook did
    // and re-raised the signal, as a process ended by Ctrl-C conventionally reports.
    assert.ok(
      exit && (exit.code === 0 || exit.signal === "SIGINT"),
      `Ctrl-C did not end the demo: ${JSON.stringify(exit)}`,
    );
    assert.ok(!existsSync(vars.NATS_CREDENTIALS_FILE ?? ""), "the demo left its files behind");
  } finally {
    await demo.stop();
  }
});
