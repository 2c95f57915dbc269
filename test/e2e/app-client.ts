/**
 * An app's side of the tests: connect the way an app does, with the values of its Secret (the
 * CA as a file, as NATS_CA_FILE gives it), and wait for an App's Secret or status.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { connect, credsAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import type { AppObject } from "../../src/contract/app-object.ts";
import { waitUntil } from "../../src/embedded/wait.ts";
import { appsApi, secretValues, type OperatorStack } from "./operator-harness.ts";

let scratch: string | undefined;
after(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Connects as an app with these Secret values; to one server only when `server` is given. */
export async function connectWith(
  values: Record<string, string>,
  name = "app",
  server?: string,
): Promise<NatsConnection> {
  scratch ??= mkdtempSync(join(tmpdir(), "nats-tenancy-app-client-"));
  const caFile = join(scratch, `ca-${String(Math.random()).slice(2)}.crt`);
  writeFileSync(caFile, values["ca.crt"] ?? "");
  return connect({
    servers: server ? [server] : (values.NATS_URL ?? "").split(","),
    authenticator: credsAuthenticator(new TextEncoder().encode(values.NATS_CREDENTIALS ?? "")),
    tls: { caFile },
    name,
    reconnect: false,
  });
}

/** True when the servers (or `server`) refuse these values. */
export async function refused(values: Record<string, string>, server?: string): Promise<boolean> {
  try {
    const nc = await connectWith(values, "should-fail", server);
    await nc.close();
    return false;
  } catch {
    return true;
  }
}

export async function waitSecret(
  s: OperatorStack,
  namespace: string,
  name: string,
  check: (values: Record<string, string>) => boolean = () => true,
): Promise<Record<string, string>> {
  let values: Record<string, string> | undefined;
  await waitUntil(
    `Secret ${namespace}/${name}`,
    async () => {
      values = await secretValues(s.core, namespace, name);
      return values !== undefined && check(values);
    },
    { timeoutMs: 30_000 },
  );
  return values ?? {};
}

export async function waitApp(
  s: OperatorStack,
  namespace: string,
  name: string,
  what: string,
  check: (app: AppObject) => boolean,
  timeoutMs = 30_000,
): Promise<AppObject> {
  const apps = appsApi(s.custom);
  let found: AppObject | undefined;
  await waitUntil(
    `App ${namespace}/${name}: ${what}`,
    async () => {
      found = await apps.get(namespace, name);
      return found !== undefined && check(found);
    },
    { timeoutMs },
  );
  if (!found) throw new Error(`App ${namespace}/${name} vanished`);
  return found;
}
