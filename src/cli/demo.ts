/**
 * `npm start` without a cluster: the local stack, the operator running on it with its pod
 * webhook (registered by URL on loopback), an example App, a labelled Pod and what the webhook
 * gave it, and commands to use those credentials and to look at the App with the tool.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, type V1Pod } from "@kubernetes/client-node";
import { APP_LABEL, ENVIRONMENT_LABEL, appSecretName } from "../contract/app-secret.ts";
import { MUTATE_PODS_PATH, type WebhookSettings } from "../contract/webhook-registration.ts";
import { APP_API_VERSION, APP_KIND, APP_RESOURCE } from "../crds/app.ts";
import { startLocalStack } from "../embedded/local-stack.ts";
import { freePort } from "../embedded/ports.ts";
import { ensureToolchain } from "../embedded/toolchain.ts";
import { waitUntil } from "../embedded/wait.ts";
import { decodeSecretData } from "../kube/read-secret.ts";
import { createLogger } from "../observability/logger.ts";
import { createMetrics } from "../observability/metrics.ts";
import { parseOptions } from "./options.ts";
import { startOperatorProcess } from "./run-operator.ts";

const say = (line = ""): void => {
  process.stdout.write(`${line}\n`);
};

const DEMO_NAMESPACE = "demo";
const DEMO_APP = "hello";

export async function runDemo(): Promise<void> {
  say("nats-tenancy: no cluster given (KUBECONFIG unset); starting an embedded one.");
  const tools = await ensureToolchain((line) => {
    say(line);
  });
  const natsBinary = tools.natsServers[tools.natsServers.length - 1];
  if (!natsBinary) throw new Error("no nats-server in the toolchain");
  const started = Date.now();
  const stack = await startLocalStack({ toolchain: tools, natsBinary: natsBinary.path });
  say(
    `control plane and 3-node NATS cluster (${natsBinary.label}, TLS, operator mode) up in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  const kc = stack.controlPlane.kubeConfig();
  const logFile = join(stack.controlPlane.dir, "operator.log");
  const { default: pino } = await import("pino");
  const webhookPort = await freePort();
  const operator = await startOperatorProcess({
    cluster: stack.controlPlane.access(),
    settings: {
      ...stack.settings,
      // The operator's own defaults (names, registration by the operator), registered by URL.
      webhook: webhookSettings(`https://127.0.0.1:${String(webhookPort)}${MUTATE_PODS_PATH}`),
    },
    webhook: { host: "127.0.0.1", port: webhookPort },
    logger: createLogger({
      level: "info",
      destination: pino.destination({ dest: logFile, sync: false }),
    }),
    metrics: createMetrics(),
    healthHost: "127.0.0.1",
    healthPort: await freePort(),
    leaseName: "nats-tenancy-leader",
    leaseDurationMs: 15_000,
    identity: "demo",
  });
  const stop = async (): Promise<void> => {
    await operator.stop();
    await stack.stop();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void stop().then(() => process.exit(0));
    });
  }

  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: DEMO_NAMESPACE } } });
  const app = {
    apiVersion: APP_API_VERSION,
    kind: APP_KIND,
    metadata: { name: DEMO_APP, namespace: DEMO_NAMESPACE },
    spec: { nats: true, environments: ["prod", "test"] },
  };
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    ...APP_RESOURCE,
    namespace: DEMO_NAMESPACE,
    body: app,
  });
  const secretName = appSecretName(DEMO_APP, "prod");
  let values: Record<string, string> = {};
  await waitUntil(
    `Secret ${DEMO_NAMESPACE}/${secretName}`,
    async () => {
      values = decodeSecretData(
        await core.readNamespacedSecret({ name: secretName, namespace: DEMO_NAMESPACE }),
      );
      return true;
    },
    { timeoutMs: 60_000 },
  );
  const pod = await admitLabelledPod(core);
  const dir = join(stack.controlPlane.dir, "demo");
  mkdirSync(dir, { recursive: true });
  const credsFile = join(dir, "nats.creds");
  const caFile = join(dir, "ca.crt");
  writeFileSync(credsFile, values["nats.creds"] ?? "", { mode: 0o600 });
  writeFileSync(caFile, values["ca.crt"] ?? "");

  say();
  say(`Applied App ${DEMO_NAMESPACE}/${DEMO_APP} (nats: true, environments prod and test).`);
  say(`A pod of its prod environment gets, from Secret ${DEMO_NAMESPACE}/${secretName}:`);
  say(`  NATS_URL=${values.NATS_URL ?? ""}`);
  say(
    `  NATS_CREDENTIALS=<the .creds text, ${String(values.NATS_CREDENTIALS?.length ?? 0)} bytes>`,
  );
  say(`  NATS_CREDENTIALS_FILE=${credsFile}`);
  say(`  NATS_CA_FILE=${caFile}`);
  say();
  say(
    `Pod ${DEMO_NAMESPACE}/${pod.metadata?.name ?? ""}, labelled ${APP_LABEL}=${DEMO_APP} and ${ENVIRONMENT_LABEL}=prod, was given by the webhook:`,
  );
  for (const line of injected(pod)) say(`  ${line}`);
  say("(it does not run: the embedded cluster has no node)");
  say();
  say("Publish and subscribe with them, from another shell in this directory:");
  say(
    `  NATS_URL=${values.NATS_URL ?? ""} NATS_CREDENTIALS_FILE=${credsFile} NATS_CA_FILE=${caFile} npx node src/cli/try-nats.ts`,
  );
  say();
  say("Look around:");
  say(`  export KUBECONFIG=${stack.controlPlane.kubeconfigPath}`);
  say(`  ${tools.kubectl} get natsapp -A`);
  say(`  ${tools.kubectl} get secrets -n ${DEMO_NAMESPACE}`);
  say(`  npx node bin/nats-tenancy info ${DEMO_APP} -n ${DEMO_NAMESPACE}`);
  say(`  operator log: ${logFile}; health and metrics: ${operator.healthUrl}/metrics`);
  say();
  say("Ctrl-C stops everything and removes its files.");
  await new Promise(() => undefined);
}

function webhookSettings(url: string): WebhookSettings {
  const { webhook } = parseOptions([`--webhook-url=${url}`], {}).settings;
  if (!webhook) throw new Error("the operator's options gave no webhook settings");
  return webhook;
}

/**
 * A Pod of the demo App's prod environment, created once the webhook answers from a cache that
 * knows the App (until then it is refused, and asked again).
 */
async function admitLabelledPod(core: CoreV1Api): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await waitUntil(
    "the webhook admits a labelled pod",
    async () => {
      try {
        pod = await core.createNamespacedPod({
          namespace: DEMO_NAMESPACE,
          body: {
            metadata: {
              name: `${DEMO_APP}-prod`,
              labels: { [APP_LABEL]: DEMO_APP, [ENVIRONMENT_LABEL]: "prod" },
            },
            spec: { containers: [{ name: "app", image: `${DEMO_APP}:demo` }] },
          },
        });
        return true;
      } catch {
        return false;
      }
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  if (!pod) throw new Error("the demo pod was not created");
  return pod;
}

/** What the webhook put in the pod: names and where values come from, never a secret value. */
function injected(pod: V1Pod): string[] {
  const container = pod.spec?.containers[0];
  const lines = (container?.env ?? [])
    .filter((e) => e.name.startsWith("NATS_") || e.name === "SERVICE_BINDING_ROOT")
    .map((e) => {
      const ref = e.valueFrom?.secretKeyRef;
      return ref
        ? `${e.name} from Secret ${ref.name ?? ""}, key ${ref.key}`
        : `${e.name}=${e.value ?? ""}`;
    });
  for (const mount of container?.volumeMounts ?? []) {
    const volume = pod.spec?.volumes?.find((v) => v.name === mount.name);
    if (volume?.secret)
      lines.push(
        `volume ${mount.name} (Secret ${volume.secret.secretName ?? ""}) at ${mount.mountPath}${mount.readOnly ? ", read-only" : ""}`,
      );
  }
  return lines;
}
