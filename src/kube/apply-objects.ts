/**
 * Server-side apply of whole objects of any kind, in order, under one field manager: what a
 * chart-less install (the App CRD and its policy, the test node's add-ons) needs.
 */
import {
  KubernetesObjectApi,
  PatchStrategy,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";

export async function applyObjects(
  kubeConfig: KubeConfig,
  objects: KubernetesObject[],
  fieldManager: string,
): Promise<void> {
  const generic = KubernetesObjectApi.makeApiClient(kubeConfig);
  for (const object of objects) {
    await generic.patch(
      object,
      undefined,
      undefined,
      fieldManager,
      true,
      PatchStrategy.ServerSideApply,
    );
  }
}
