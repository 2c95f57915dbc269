/**
 * Installs the App CRD and its admission policy into a cluster that has no chart (the embedded
 * control plane of `npm start` and the tests), then waits until Apps are served: the Established
 * condition can come before the first list succeeds.
 */
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  loadAllYaml,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { APP_CRD_NAME, appManifestsYaml } from "../crds/crd.ts";
import { APP_RESOURCE } from "../crds/app.ts";
import { waitUntil } from "./wait.ts";
import { applyObjects } from "../kube/apply-objects.ts";
import { FIELD_MANAGER } from "../kube/apply-secret.ts";

export async function installAppManifests(
  kubeConfig: KubeConfig,
  timeoutMs = 30_000,
): Promise<void> {
  // The typed clients serialize through their models, which drop a plain object's
  // x-kubernetes-* keys; objects parsed by loadAllYaml carry them in the models' own fields.
  const objects = loadAllYaml(appManifestsYaml()) as KubernetesObject[];
  await applyObjects(kubeConfig, objects, FIELD_MANAGER);
  const extensions = kubeConfig.makeApiClient(ApiextensionsV1Api);
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  await waitUntil(
    `CRD ${APP_CRD_NAME} served`,
    async () => {
      const current = await extensions.readCustomResourceDefinition({ name: APP_CRD_NAME });
      const established = current.status?.conditions?.some(
        (c) => c.type === "Established" && c.status === "True",
      );
      if (!established) return false;
      await custom.listClusterCustomObject({ ...APP_RESOURCE, limit: 1 });
      return true;
    },
    { timeoutMs },
  );
}
