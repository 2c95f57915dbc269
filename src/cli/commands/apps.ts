/** Reading Apps and their Secrets for the tool, with answers a person can act on. */
import type { V1Secret } from "@kubernetes/client-node";
import { asAppObject, readAppObject, type AppObject } from "../../contract/app-object.ts";
import { APP_RESOURCE, type EnvironmentStatus } from "../../crds/app.ts";
import { statusOf, unlessNotFound } from "../../kube/api-errors.ts";
import { decodeSecretData } from "../../kube/read-secret.ts";
import { CommandError, UsageError, type Cluster } from "./command.ts";

export async function readApp(cluster: Cluster, namespace: string, name: string) {
  const app = await readAppObject(cluster.requests, namespace, name);
  if (!app) throw new CommandError(`App ${namespace}/${name} not found`);
  return app;
}

/** Every App of a namespace, or of every namespace, in pages. */
export async function listApps(cluster: Cluster, namespace?: string): Promise<AppObject[]> {
  const apps: AppObject[] = [];
  let token: string | undefined;
  do {
    const page = (await (namespace
      ? cluster.custom.listNamespacedCustomObject({
          ...APP_RESOURCE,
          namespace,
          limit: 500,
          ...(token ? { _continue: token } : {}),
        })
      : cluster.custom.listClusterCustomObject({
          ...APP_RESOURCE,
          limit: 500,
          ...(token ? { _continue: token } : {}),
        }))) as { items?: unknown[]; metadata?: { continue?: string } };
    for (const item of page.items ?? []) {
      const app = asAppObject(item);
      if (app) apps.push(app);
    }
    token = page.metadata?.continue || undefined;
  } while (token);
  return apps;
}

/** The environments a command acts on: `--env` if given, else all the App has. */
export function environmentsOf(app: AppObject, only: string | undefined): EnvironmentStatus[] {
  const all = app.status?.environments ?? [];
  if (only === undefined) return all;
  const found = all.filter((e) => e.name === only);
  if (found.length === 0)
    throw new CommandError(
      `App ${app.metadata.namespace}/${app.metadata.name} has no environment ${only}` +
        (all.length > 0 ? ` (it has ${all.map((e) => e.name).join(", ")})` : " (none yet)"),
    );
  return found;
}

/** The one environment a single-value answer is about. */
export function oneEnvironment(app: AppObject, only: string | undefined): EnvironmentStatus {
  const environments = environmentsOf(app, only);
  const [environment] = environments;
  if (!environment)
    throw new CommandError(
      `App ${app.metadata.namespace}/${app.metadata.name} has no environments yet`,
    );
  if (environments.length > 1)
    throw new UsageError(
      `which environment? add --env (${environments.map((e) => e.name).join(", ")})`,
    );
  return environment;
}

/** An app Secret's values; a caller not allowed to read it is told so. */
export async function readAppSecret(
  cluster: Cluster,
  namespace: string,
  name: string,
): Promise<Record<string, string>> {
  let secret: V1Secret | undefined;
  try {
    secret = await unlessNotFound(cluster.core.readNamespacedSecret({ namespace, name }));
  } catch (error) {
    if (statusOf(error) === 403)
      throw new CommandError(`you may not read Secret ${namespace}/${name} (forbidden)`);
    throw error;
  }
  if (!secret) throw new CommandError(`Secret ${namespace}/${name} not found`);
  return decodeSecretData(secret);
}
