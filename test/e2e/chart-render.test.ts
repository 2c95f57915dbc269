/**
 * The chart as helm 3 and helm 4 read it, without a cluster: lint with the defaults and with
 * every optional value on, the schema refusing a wrong type, and the parts the chart renders in
 * Go templates held equal to the product's own renderers (the NATS server configuration, the
 * webhook registration), so the two cannot drift apart.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { DEFAULT_CREDENTIAL_POLICY } from "../../src/accounts/credential-policy.ts";
import { parseOptions } from "../../src/cli/options.ts";
import { renderServerConfig } from "../../src/nats/server-config.ts";
import { ensureToolchain } from "../../src/embedded/toolchain.ts";
import {
  DEFAULT_EXCLUDED_NAMESPACES,
  appValidationConfiguration,
  webhookConfiguration,
} from "../../src/contract/webhook-registration.ts";
import { useHelm } from "./fixtures/helm.ts";

const { helms } = await ensureToolchain();
const CHART = join(import.meta.dirname, "../../deploy/helm/nats-tenancy");
const NAMESPACE = "platform";

/** Every optional value turned on (or set), for lint and render. */
const EVERYTHING = {
  fullnameOverride: "tenancy",
  global: {
    priorityClassName: "system-cluster-critical",
    commonLabels: { team: "platform" },
    commonAnnotations: { owner: "platform@example.com" },
    imagePullSecrets: [{ name: "regcred" }],
  },
  crds: { install: true, keep: false },
  image: {
    repository: "registry.example.com/nats-tenancy",
    digest: `sha256:${"a".repeat(64)}`,
    pullPolicy: "Always",
  },
  operator: { appNatsUrl: "tls://nats.example.com:4222", logLevel: "debug" },
  controller: {
    replicas: 3,
    nodeSelector: { "kubernetes.io/os": "linux" },
    tolerations: [{ key: "dedicated", operator: "Exists" }],
    affinity: { nodeAffinity: {} },
    topologySpreadConstraints: [
      {
        maxSkew: 1,
        topologyKey: "topology.kubernetes.io/zone",
        whenUnsatisfiable: "DoNotSchedule",
      },
    ],
    podLabels: { extra: "yes" },
    podAnnotations: { extra: "yes" },
    serviceAccount: { annotations: { "iam.example.com/role": "operator" } },
  },
  webhook: { replicas: 3, excludedNamespaces: ["kube-system", "monitoring"], timeoutSeconds: 10 },
  ceilings: {
    environmentsPerApp: 4,
    appsPerNamespace: 50,
    connections: 500,
    payload: 1048576,
    subscriptions: 10000,
    jetstream: { memory: 1048576, storage: 1073741824, streams: 10, consumers: 100 },
  },
  nats: {
    name: "messaging",
    replicas: 5,
    image: { repository: "registry.example.com/nats", digest: `sha256:${"b".repeat(64)}` },
    resolver: { storageClassName: "fast" },
    jetstream: {
      enabled: true,
      fileStore: { storageClassName: "fast", size: "20Gi", maxSize: "18GB" },
    },
    podLabels: { extra: "yes" },
    expose: {
      enabled: true,
      type: "LoadBalancer",
      names: ["nats.example.com", "203.0.113.10"],
      port: 4443,
      externalTrafficPolicy: "Local",
      loadBalancerSourceRanges: ["203.0.113.0/24"],
      annotations: { "lb.example.com/internal": "false" },
      websocket: { enabled: true },
    },
  },
  tests: { enabled: true, namespace: "tenancy-check" },
};

interface Rendered {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
  webhooks?: unknown[];
  spec?: unknown;
}

/** The environment of a rendered Deployment's container. */
function containerEnv(deployment: Rendered): { name: string; value?: string }[] {
  const spec = deployment.spec as {
    template: { spec: { containers: { env?: { name: string; value?: string }[] }[] } };
  };
  return spec.template.spec.containers[0]?.env ?? [];
}

for (const helm of helms) {
  describe(`the chart with ${helm.label}`, () => {
    const h = useHelm(helm.path);
    after(() => {
      h.release();
    });
    const everything = join(h.dir, "everything.json");
    writeFileSync(everything, JSON.stringify(EVERYTHING));
    const render = async (args: string[]): Promise<Rendered[]> => {
      const { stdout } = await h.run(["template", "nats-tenancy", CHART, "-n", NAMESPACE, ...args]);
      return parseAllDocuments(stdout)
        .map((doc) => doc.toJS() as Rendered | null)
        .filter((doc): doc is Rendered => doc !== null);
    };

    test("helm lint passes with the defaults and with every optional value on", async () => {
      await h.run(["lint", "--strict", CHART]);
      await h.run(["lint", "--strict", CHART, "-f", everything]);
    });

    test("a wrong type or an unknown key is refused with the path of the bad value", async () => {
      await assert.rejects(
        render(["--set", "nats.replicas=three"]),
        /at '\/nats\/replicas': got string, want integer/,
      );
      await assert.rejects(
        render(["--set", "controller.replica=2"]),
        /at '\/controller': additional properties 'replica' not allowed/,
      );
      await assert.rejects(
        render(["--set", "nats.jetstream.memoryStore=lots"]),
        /at '\/nats\/jetstream\/memoryStore': 'lots' does not match/,
      );
    });

    test("the NATS server configuration is what the product's renderer writes for the same settings", async () => {
      for (const [args, name, replicas, jetstream] of [
        [[], "nats", 3, undefined],
        [["-f", everything], "messaging", 5, { maxMemory: "256MB", maxFile: "18GB" }],
      ] as const) {
        const config = (await render([...args])).find(
          (o) => o.kind === "ConfigMap" && o.metadata.name === `${name}-config`,
        );
        const secretDir = "/etc/nats/secret";
        const tls = (cert: string, key: string) => ({
          certFile: `${secretDir}/${cert}`,
          keyFile: `${secretDir}/${key}`,
          caFile: `${secretDir}/ca.crt`,
        });
        const expected = renderServerConfig({
          serverName: "$POD_NAME",
          listen: "0.0.0.0:4222",
          monitor: "127.0.0.1:8222",
          cluster: {
            name,
            listen: "0.0.0.0:6222",
            routes: Array.from(
              { length: replicas },
              (_, i) =>
                `nats-route://${name}-${String(i)}.${name}-headless.${NAMESPACE}.svc.cluster.local:6222`,
            ),
            tls: tls("route.crt", "route.key"),
          },
          trustInclude: "../secret/trust.conf",
          dataDir: "/data",
          clientTls: tls("tls.crt", "tls.key"),
          ...(jetstream ? { jetstream } : {}),
          // Everything exposes NATS with a WebSocket listener.
          ...(jetstream
            ? { websocket: { listen: "0.0.0.0:8443", tls: tls("tls.crt", "tls.key") } }
            : {}),
        });
        assert.equal(config?.data?.["nats.conf"], expected);
      }
    });

    test("the webhook registrations are what the operator would write, without the caBundle it injects; every App is judged only under a ceiling, else only Apps that share", async () => {
      for (const [values, judgesApps] of [
        [[], false],
        [["--set", "ceilings.payload=4096"], true],
      ] as const) {
        const settings = {
          configName: "nats-tenancy",
          tlsSecret: "nats-tenancy-webhook-tls",
          service: "nats-tenancy-webhook",
          servicePort: 443,
          registration: "ca-bundle" as const,
          excludedNamespaces: DEFAULT_EXCLUDED_NAMESPACES,
          judgesApps,
        };
        const objects = await render([...values]);
        for (const desired of [
          webhookConfiguration(settings, NAMESPACE, ""),
          appValidationConfiguration(settings, NAMESPACE, ""),
        ]) {
          const rendered = objects.find((o) => o.kind === desired.kind);
          // Compared as JSON: the rendered side is plain data, the desired one client-node models.
          const expected = JSON.parse(JSON.stringify(desired.webhooks)) as {
            clientConfig: { caBundle?: string };
          }[];
          for (const webhook of expected) delete webhook.clientConfig.caBundle;
          assert.deepEqual(rendered?.webhooks, expected, `${desired.kind}, ${values.join(" ")}`);
        }
        const validating = objects.find((o) => o.kind === "ValidatingWebhookConfiguration");
        assert.equal(validating?.webhooks?.length, 1);
        const [judge] = validating.webhooks as { matchConditions?: unknown }[];
        assert.equal(judge?.matchConditions === undefined, judgesApps);
      }
    });

    test("both roles run Node.js with the chart's nodeOptions, and none when emptied", async () => {
      for (const [values, expected] of [
        [[], "--max-semi-space-size=8"],
        [["--set", "operator.nodeOptions="], undefined],
      ] as const) {
        const deployments = (await render([...values])).filter((o) => o.kind === "Deployment");
        assert.equal(deployments.length, 2);
        for (const deployment of deployments) {
          const env = containerEnv(deployment);
          assert.equal(env.find((e) => e.name === "NODE_OPTIONS")?.value, expected);
        }
      }
    });

    test("ceilings reach both roles as the operator's variables, and unset ones not at all", async () => {
      const objects = await render([
        "--set",
        "ceilings.connections=100",
        "--set",
        "ceilings.jetstream.storage=1048576",
        "--set",
        "ceilings.appsPerNamespace=20",
      ]);
      const deployments = objects.filter((o) => o.kind === "Deployment");
      assert.equal(deployments.length, 2);
      for (const deployment of deployments) {
        const env = containerEnv(deployment);
        const ceilings = Object.fromEntries(
          env.filter((e) => e.name.startsWith("NATS_TENANCY_MAX_")).map((e) => [e.name, e.value]),
        );
        assert.deepEqual(ceilings, {
          NATS_TENANCY_MAX_CONNECTIONS: "100",
          NATS_TENANCY_MAX_JETSTREAM_STORAGE: "1048576",
          NATS_TENANCY_MAX_APPS_PER_NAMESPACE: "20",
        });
        const flags = parseOptions([], Object.fromEntries(env.map((e) => [e.name, e.value])));
        assert.deepEqual(flags.settings.ceilings, {
          appsPerNamespace: 20,
          limits: { connections: 100, "jetstream.storage": 1048576 },
        });
      }
      await assert.rejects(render(["--set", "ceilings.connections=0"]), /ceilings/);
    });

    test("the credential settings reach the controller as its variables", async () => {
      const objects = await render([
        "--set",
        "operator.credentials.lifetimeSeconds=86400",
        "--set",
        "operator.credentials.maxLifetimeSeconds=604800",
        "--set",
        "operator.credentials.rotationOverlapSeconds=300",
        "--set",
        "operator.credentials.signingKeyMaxAgeSeconds=2592000",
      ]);
      const controller = objects.find(
        (o) => o.kind === "Deployment" && containerEnv(o).some((e) => e.value === "controller"),
      );
      assert.ok(controller);
      const env = Object.fromEntries(containerEnv(controller).map((e) => [e.name, e.value]));
      assert.deepEqual(parseOptions([], env).settings.credentials, {
        rotationOverlapMs: 300_000,
        lifetime: { defaultSeconds: 86_400, minSeconds: 600, maxSeconds: 604_800 },
        signingKeyMaxAgeSeconds: 2_592_000,
      });
      // The defaults are the operator's own.
      const defaults = await render([]);
      const plain = defaults.find(
        (o) => o.kind === "Deployment" && containerEnv(o).some((e) => e.value === "controller"),
      );
      assert.ok(plain);
      assert.deepEqual(
        parseOptions([], Object.fromEntries(containerEnv(plain).map((e) => [e.name, e.value])))
          .settings.credentials,
        DEFAULT_CREDENTIAL_POLICY,
      );
      await assert.rejects(
        render(["--set", "operator.credentials.minLifetimeSeconds=10"]),
        /minLifetimeSeconds/,
      );
    });

    test("exposure: off by default; on, a Service for the client port only, and the controller told the names and the URL outside clients get", async () => {
      const controllerEnv = (objects: Rendered[]): Record<string, string | undefined> => {
        const controller = objects.find(
          (o) => o.kind === "Deployment" && containerEnv(o).some((e) => e.value === "controller"),
        );
        assert.ok(controller);
        return Object.fromEntries(containerEnv(controller).map((e) => [e.name, e.value]));
      };
      const services = (objects: Rendered[]) =>
        objects.filter((o) => o.kind === "Service" && o.metadata.name.endsWith("-external"));
      const plain = await render([]);
      assert.deepEqual(services(plain), []);
      assert.equal(controllerEnv(plain).NATS_TENANCY_EXTERNAL_NAMES, undefined);

      const exposed = await render([
        "--set",
        "nats.expose.enabled=true",
        "--set",
        "nats.expose.names={nats.example.com,10.0.0.5}",
        "--set",
        "nats.expose.nodePort=30422",
      ]);
      const [service] = services(exposed);
      assert.deepEqual(service?.spec, {
        type: "NodePort",
        externalTrafficPolicy: "Cluster",
        selector: {
          "app.kubernetes.io/name": "nats-tenancy",
          "app.kubernetes.io/instance": "nats-tenancy",
          "app.kubernetes.io/component": "nats",
        },
        ports: [
          { name: "nats", port: 4222, targetPort: "nats", appProtocol: "tls", nodePort: 30422 },
        ],
      });
      const settings = parseOptions([], controllerEnv(exposed)).settings;
      assert.deepEqual(settings.natsNames.external, ["nats.example.com", "10.0.0.5"]);
      assert.equal(settings.appUrls.externalUrl, "tls://nats.example.com:30422");

      const balanced = await render(["-f", everything]);
      const [lb] = services(balanced);
      assert.equal((lb?.spec as { type: string }).type, "LoadBalancer");
      assert.deepEqual((lb?.spec as { ports: unknown[] }).ports, [
        { name: "nats", port: 4443, targetPort: "nats", appProtocol: "tls" },
        { name: "websocket", port: 443, targetPort: "websocket", appProtocol: "https" },
      ]);
      assert.deepEqual(parseOptions([], controllerEnv(balanced)).settings.appUrls, {
        url: "tls://nats.example.com:4222",
        externalUrl: "tls://nats.example.com:4443",
        externalWebsocketUrl: "wss://nats.example.com:443",
      });
      const ipv6 = await render([
        "--set",
        "nats.expose.enabled=true",
        "--set",
        "nats.expose.type=LoadBalancer",
        "--set",
        "nats.expose.names={fd00::5}",
      ]);
      assert.equal(controllerEnv(ipv6).NATS_TENANCY_EXTERNAL_URL, "tls://[fd00::5]:4222");

      await assert.rejects(
        render(["--set", "nats.expose.enabled=true", "--set", "nats.expose.nodePort=30422"]),
        /nats.expose.names: list at least one host name or address/,
      );
      await assert.rejects(
        render(["--set", "nats.expose.enabled=true", "--set", "nats.expose.names={a.example.com}"]),
        /nats.expose.nodePort: choose the node port/,
      );
      await assert.rejects(
        render(
          [
            ...["nats.expose.enabled=true", "nats.expose.names={a.example.com}"],
            ...["nats.expose.nodePort=30422", "nats.expose.websocket.enabled=true"],
          ].flatMap((v) => ["--set", v]),
        ),
        /nats.expose.websocket.nodePort: choose the node port/,
      );
      await assert.rejects(
        render(["--set", "nats.expose.enabled=true", "--set", "nats.expose.type=ClusterIP"]),
        /\/nats\/expose\/type/,
      );
    });

    test("the CRD and admission policy are templates behind crds.install, kept on uninstall by crds.keep", async () => {
      const kinds = [
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
      ];
      const byDefault = (await render([])).filter((o) => kinds.includes(o.kind));
      assert.deepEqual(byDefault.map((o) => o.kind).sort(), [...kinds].sort());
      for (const object of byDefault)
        assert.equal(object.metadata.annotations?.["helm.sh/resource-policy"], "keep");
      const notKept = (await render(["-f", everything])).filter((o) => kinds.includes(o.kind));
      assert.equal(notKept.length, 3);
      for (const object of notKept)
        assert.equal(object.metadata.annotations?.["helm.sh/resource-policy"], undefined);
      const none = (await render(["--set", "crds.install=false"])).filter((o) =>
        kinds.includes(o.kind),
      );
      assert.deepEqual(none, []);
    });
  });
}
