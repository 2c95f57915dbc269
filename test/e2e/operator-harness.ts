/**
 * A suite fixture: the local stack (real API server, real NATS cluster configured from the
 * operator's own config Secret) started before the suite, operator processes started on demand
 * (see operator-process.ts), everything stopped after it; plus App and Secret helpers.
 */
import { after, afterEach, before } from "node:test";
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Secret,
} from "@kubernetes/client-node";
import { formatCreds, type OperatorIdentity } from "../../src/accounts/identities.ts";
import { ResolverClient } from "../../src/accounts/resolver-client.ts";
import { APP_API_VERSION, APP_KIND, APP_RESOURCE } from "../../src/crds/app.ts";
import type { AppObject } from "../../src/contract/app-object.ts";
import { startLocalStack, type LocalStack } from "../../src/embedded/local-stack.ts";
import { freePort } from "../../src/embedded/ports.ts";
import { unlessNotFound } from "../../src/kube/api-errors.ts";
import { decodeSecretData } from "../../src/kube/read-secret.ts";
import { toolchain } from "./harness.ts";

export { readyAtGeneration };
import {
  OPERATOR_USER,
  auditSecretReads,
  auditWrites,
  countPushes,
  launchOperator,
  operatorAccess,
  readyAtGeneration,
  type AuditedRequest,
  type OperatorFlags,
  type RunningOperator,
} from "./operator-process.ts";

export { OPERATOR_USER, type RunningOperator } from "./operator-process.ts";

function passed(t: object): boolean {
  return (t as { passed?: boolean }).passed !== false;
}

export interface OperatorStack {
  stack: LocalStack;
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  operatorKubeconfig: string;
  identity: OperatorIdentity;
  /** The port the webhook URL registered by this suite's operators points at. */
  webhookPort: number;
  startOperator: (flags?: OperatorFlags) => Promise<RunningOperator>;
  /** Writes (create/update/patch/delete) the operator made, Lease renewals excepted. */
  operatorWrites: () => AuditedRequest[];
  /** Every Secret the operator read one by one. */
  operatorSecretReads: () => AuditedRequest[];
  /** The operator's own system user, for list/lookup from the test. */
  resolver: () => Promise<ResolverClient>;
  /** Counts every CLAIMS.UPDATE / CLAIMS.DELETE request any server receives. */
  pushCounter: () => Promise<{
    updates: () => number;
    deletes: () => number;
    close: () => Promise<void>;
  }>;
}

/** Starts the local stack before the suite, stops every operator and the stack after it. */
export function useOperatorStack(natsLabel?: string): () => OperatorStack {
  let current: OperatorStack | undefined;
  const operators: RunningOperator[] = [];
  let stack: LocalStack | undefined;
  before(async () => {
    const tools = await toolchain();
    const binary = tools.natsServers.find((n) => n.label === natsLabel) ?? tools.natsServers.at(-1);
    if (!binary) throw new Error("no nats-server");
    stack = await startLocalStack({ toolchain: tools, natsBinary: binary.path });
    const started = stack;
    const kc = started.controlPlane.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const { kubeconfig: operatorKubeconfig, identity } = await operatorAccess(started);
    const webhookPort = await freePort();
    const config = await secretValues(
      core,
      started.settings.namespace,
      started.settings.natsConfigSecret,
    );
    const systemUserCreds = formatCreds(config?.["system-user.jwt"] ?? "", identity.systemUser);
    current = {
      stack: started,
      kc,
      core,
      custom: kc.makeApiClient(CustomObjectsApi),
      operatorKubeconfig,
      identity,
      webhookPort,
      startOperator: async (flags = {}) => {
        const operator = await launchOperator(started, operatorKubeconfig, {
          webhook: { port: webhookPort, registeredPort: webhookPort },
          ...flags,
        });
        operators.push(operator);
        return operator;
      },
      operatorWrites: () => auditWrites(started.controlPlane.auditLog, OPERATOR_USER),
      operatorSecretReads: () => auditSecretReads(started.controlPlane.auditLog, OPERATOR_USER),
      resolver: () =>
        ResolverClient.connect({
          servers: started.nats.tlsUrls,
          creds: systemUserCreds,
          expectedServers: started.nats.nodes.length,
          caFile: started.nats.caFile,
          name: "test-observer",
        }),
      pushCounter: () => countPushes(started, identity),
    };
  });
  afterEach(async (t) => {
    if (!passed(t) && stack) {
      const logs = operators.map(
        (o) => `--- operator ${o.process.describeExit()}\n${o.process.tail(60)}`,
      );
      process.stderr.write(
        `\n=== logs after failed test "${t.name}" ===\n${stack.logTails()}\n${logs.join("\n")}\n`,
      );
      // A test that failed before stopping its operator would leave it leading, on the
      // webhook port, under every later test of the suite: one failure, one report.
      for (const operator of operators) await operator.process.stop();
    }
  });
  after(async () => {
    for (const operator of operators) await operator.process.stop();
    await stack?.stop();
  });
  return () => {
    if (!current) throw new Error("the operator stack did not start (see its before hook)");
    return current;
  };
}

export function appManifest(
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
): Record<string, unknown> {
  return { apiVersion: APP_API_VERSION, kind: APP_KIND, metadata: { name, namespace }, spec };
}

export function appsApi(custom: CustomObjectsApi) {
  return {
    create: (namespace: string, body: Record<string, unknown>) =>
      custom.createNamespacedCustomObject({ ...APP_RESOURCE, namespace, body }),
    get: async (namespace: string, name: string): Promise<AppObject | undefined> =>
      (await unlessNotFound(
        custom.getNamespacedCustomObject({ ...APP_RESOURCE, namespace, name }),
      )) as AppObject | undefined,
    patchSpec: (namespace: string, name: string, spec: Record<string, unknown>) =>
      custom.patchNamespacedCustomObject(
        { ...APP_RESOURCE, namespace, name, body: { spec } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    annotate: (namespace: string, name: string, annotations: Record<string, string>) =>
      custom.patchNamespacedCustomObject(
        { ...APP_RESOURCE, namespace, name, body: { metadata: { annotations } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    delete: (namespace: string, name: string) =>
      custom.deleteNamespacedCustomObject({ ...APP_RESOURCE, namespace, name }),
  };
}

export async function secretValues(
  core: CoreV1Api,
  namespace: string,
  name: string,
): Promise<Record<string, string> | undefined> {
  const secret = await unlessNotFound(core.readNamespacedSecret({ namespace, name }));
  return secret ? decodeSecretData(secret) : undefined;
}

export function decode(secret: V1Secret): Record<string, string> {
  return decodeSecretData(secret);
}
