/**
 * Which pods get NATS credentials, and how. A pod opts in with the labels naming its app and
 * environment; the variables then come from that environment's Secret by reference (the
 * webhook never copies a secret value into a pod spec), and the files from a read-only volume
 * of the same Secret laid out as a servicebinding.io binding, so NATS_CREDENTIALS_FILE,
 * NATS_CA_FILE and service-binding libraries all read the same files.
 */
import { APP_LABEL, CA_KEY, CREDS_KEY, ENVIRONMENT_LABEL } from "../contract/app-secret.ts";

export const INJECTED_ANNOTATION = "nats-tenancy.io/injected";
export const VOLUME_NAME = "nats-tenancy-credentials";
/** servicebinding.io: bindings live under $SERVICE_BINDING_ROOT/<binding name>. */
export const DEFAULT_BINDING_ROOT = "/bindings";
export const BINDING_NAME = "nats";
/** The binding's files: servicebinding.io's `type`, `provider` and `url`, plus the credentials. */
const BINDING_FILES = ["type", "provider", "url", CREDS_KEY, CA_KEY];

/*
 * Pods as the API server sends them: plain JSON, of which only these fields are read or
 * written; every other field passes through untouched. (client-node's models are classes that
 * drop unknown fields.)
 */
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
export interface Container {
  name: string;
  env?: EnvVar[];
  volumeMounts?: VolumeMount[];
  [field: string]: unknown;
}
export interface Volume {
  name: string;
  [field: string]: unknown;
}
export interface Pod {
  metadata?: {
    name?: string;
    generateName?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  spec: {
    containers: Container[];
    initContainers?: Container[];
    volumes?: Volume[];
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

export interface InjectionTarget {
  app: string;
  environment: string;
  secretName: string;
}

/**
 * Why a pod is left alone or refused: a code for metrics and Event reasons, beside the sentence
 * a person reads.
 */
export const SKIP_CODES = ["NotOptedIn", "NamespaceExcluded"] as const;
export const REFUSAL_CODES = [
  "NoEnvironmentLabel",
  "AppNotFound",
  "AppTerminating",
  "NatsOff",
  "EnvironmentNotFound",
  "SecretContested",
] as const;
export type SkipCode = (typeof SKIP_CODES)[number];
export type RefusalCode = (typeof REFUSAL_CODES)[number];

/** What the webhook does with a pod: inject, leave it alone (why), or refuse it (why). */
export type Decision =
  | { action: "inject"; target: InjectionTarget }
  | { action: "skip"; code: SkipCode; reason: string }
  | { action: "reject"; code: RefusalCode; reason: string };

export interface AppView {
  /** Environments that have NATS accounts: empty when NATS is off for the App. */
  environments: string[];
  secretName: (environment: string) => string;
  /** Being deleted: its accounts and Secrets are about to go. */
  terminating?: boolean;
  /**
   * Another App's environment whose Secret has the same name, when this App has not been seen to
   * hold that Secret: injecting it could hand the pod the other App's account.
   */
  contestedBy?: (environment: string) => { app: string; environment: string } | undefined;
}

export function decide(
  pod: Pod,
  namespace: string,
  excludedNamespaces: ReadonlySet<string>,
  lookup: (namespace: string, app: string) => AppView | undefined,
): Decision {
  const labels = pod.metadata?.labels ?? {};
  const app = labels[APP_LABEL];
  if (!app)
    return {
      action: "skip",
      code: "NotOptedIn",
      reason: `no ${APP_LABEL} label: the pod did not opt in`,
    };
  if (excludedNamespaces.has(namespace))
    return {
      action: "skip",
      code: "NamespaceExcluded",
      reason: `namespace ${namespace} is excluded from injection`,
    };
  const environment = labels[ENVIRONMENT_LABEL];
  // A pod that asked for NATS and would start without it fails later, far from the cause:
  // refusing it names the cause where the user looks (the create's error, the ReplicaSet's events).
  if (!environment)
    return {
      action: "reject",
      code: "NoEnvironmentLabel",
      reason: `the pod names NATS app ${app} but has no ${ENVIRONMENT_LABEL} label`,
    };
  const view = lookup(namespace, app);
  if (!view)
    return {
      action: "reject",
      code: "AppNotFound",
      reason: `there is no App ${app} in namespace ${namespace}`,
    };
  if (view.terminating)
    return {
      action: "reject",
      code: "AppTerminating",
      reason: `App ${namespace}/${app} is being deleted: its NATS credentials are about to stop working`,
    };
  if (!view.environments.includes(environment)) {
    const off = view.environments.length === 0;
    const known = off ? "none: NATS is off" : view.environments.join(", ");
    return {
      action: "reject",
      code: off ? "NatsOff" : "EnvironmentNotFound",
      reason: `App ${namespace}/${app} has no NATS environment ${environment} (it has ${known})`,
    };
  }
  const secretName = view.secretName(environment);
  const rival = view.contestedBy?.(environment);
  if (rival)
    return {
      action: "reject",
      code: "SecretContested",
      reason:
        `Secret ${namespace}/${secretName} is also the Secret of App ${namespace}/${rival.app} ` +
        `environment ${rival.environment}, and App ${namespace}/${app} does not hold it ` +
        `(its status does not show ${environment} ready): rename the App or the environment`,
    };
  return { action: "inject", target: { app, environment, secretName } };
}

function literalEnv(container: Container, name: string): string | undefined {
  return container.env?.find((e) => e.name === name && e.valueFrom === undefined)?.value;
}

function addEnv(env: EnvVar[], variable: EnvVar): void {
  // A variable the user set wins: it may point at their own broker or a mounted file.
  if (!env.some((e) => e.name === variable.name)) env.push(variable);
}

function injectContainer(container: Container, secretName: string): Container {
  const root = literalEnv(container, "SERVICE_BINDING_ROOT") ?? DEFAULT_BINDING_ROOT;
  const dir = `${root.replace(/\/+$/, "")}/${BINDING_NAME}`;
  const env = [...(container.env ?? [])];
  const fromSecret = (name: string, key: string): EnvVar => ({
    name,
    valueFrom: { secretKeyRef: { name: secretName, key } },
  });
  addEnv(env, fromSecret("NATS_URL", "NATS_URL"));
  addEnv(env, fromSecret("NATS_CREDENTIALS", "NATS_CREDENTIALS"));
  addEnv(env, { name: "NATS_CREDENTIALS_FILE", value: `${dir}/${CREDS_KEY}` });
  addEnv(env, { name: "NATS_CA_FILE", value: `${dir}/${CA_KEY}` });
  addEnv(env, { name: "SERVICE_BINDING_ROOT", value: root });
  const mounts: VolumeMount[] = [...(container.volumeMounts ?? [])];
  if (!mounts.some((m) => m.name === VOLUME_NAME || m.mountPath === dir))
    mounts.push({ name: VOLUME_NAME, mountPath: dir, readOnly: true });
  return { ...container, env, volumeMounts: mounts };
}

/** A mutated copy of the pod; applying it to its own output changes nothing. */
export function injectPod(pod: Pod, target: InjectionTarget): Pod {
  const spec = pod.spec;
  const volumes: Volume[] = [...(spec.volumes ?? [])];
  if (!volumes.some((v) => v.name === VOLUME_NAME)) {
    volumes.push({
      name: VOLUME_NAME,
      secret: {
        secretName: target.secretName,
        items: BINDING_FILES.map((key) => ({ key, path: key })),
        defaultMode: 0o444,
      },
    });
  }
  return {
    ...pod,
    metadata: {
      ...pod.metadata,
      annotations: { ...pod.metadata?.annotations, [INJECTED_ANNOTATION]: target.secretName },
    },
    spec: {
      ...spec,
      volumes,
      containers: spec.containers.map((c) => injectContainer(c, target.secretName)),
      ...(spec.initContainers
        ? { initContainers: spec.initContainers.map((c) => injectContainer(c, target.secretName)) }
        : {}),
    },
  };
}
