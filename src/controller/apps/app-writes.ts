/**
 * Every write the App reconciler makes to the API server, each server-side applied under the
 * operator's field manager (Secrets, the finalizer, status), a plain create (Events) or a JSON
 * patch (the finalizer's removal). One place, so writes can be counted and nothing writes
 * behind the metrics' back.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1Secret,
} from "@kubernetes/client-node";
import { APP_API_VERSION, APP_KIND, APP_RESOURCE } from "../../crds/app.ts";
import type { AppStatus } from "../../crds/app.ts";
import { FINALIZER, type AppObject as App } from "../../contract/app-object.ts";
import { FIELD_MANAGER, applySecret, createSecret } from "../../kube/apply-secret.ts";
import { unlessNotFound } from "../../kube/api-errors.ts";
import { recordEvent, type EventInput } from "../../kube/events.ts";

export interface AppWrites {
  /** Creates the Secret; false, writing nothing, when one of that name exists. */
  createSecret(secret: V1Secret): Promise<boolean>;
  applySecret(secret: V1Secret): Promise<void>;
  deleteSecret(namespace: string, name: string): Promise<void>;
  /** Adds or drops the operator's finalizer; other finalizers are left as they are. */
  setFinalizer(app: App, present: boolean): Promise<void>;
  applyStatus(app: App, status: AppStatus): Promise<void>;
  event(app: App, event: EventInput): Promise<void>;
}

/**
 * The uid makes each apply a precondition: an apply to a missing App would otherwise create
 * one, and an App deleted and re-created under the same name is another App.
 */
function identify(app: App): { name: string; namespace: string; uid: string } {
  return { name: app.metadata.name, namespace: app.metadata.namespace, uid: app.metadata.uid };
}

const applyOptions = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

export function kubernetesAppWrites(
  kubeConfig: KubeConfig,
  component: string,
  onWrite: (resource: string) => void,
): AppWrites {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const custom = kubeConfig.makeApiClient(CustomObjectsApi);
  const target = (app: App) => ({
    ...APP_RESOURCE,
    namespace: app.metadata.namespace,
    name: app.metadata.name,
  });
  return {
    async createSecret(secret) {
      onWrite("secret");
      return (await createSecret(core, secret)) !== undefined;
    },
    async applySecret(secret) {
      onWrite("secret");
      await applySecret(core, secret);
    },
    async deleteSecret(namespace, name) {
      onWrite("secret");
      await unlessNotFound(core.deleteNamespacedSecret({ name, namespace }));
    },
    async setFinalizer(app, present) {
      onWrite("app");
      if (present) {
        await custom.patchNamespacedCustomObject(
          {
            ...target(app),
            body: {
              apiVersion: APP_API_VERSION,
              kind: APP_KIND,
              metadata: { ...identify(app), finalizers: [FINALIZER] },
            },
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          applyOptions,
        );
        return;
      }
      // Set at admission, the entry belongs to whoever created the App, so an apply that leaves
      // it out would only drop this manager's claim; it is removed where it stands instead. The
      // tests make a stale copy fail (and be retried) rather than remove someone else's entry.
      const index = (app.metadata.finalizers ?? []).indexOf(FINALIZER);
      if (index < 0) return;
      const at = `/metadata/finalizers/${String(index)}`;
      await custom.patchNamespacedCustomObject(
        {
          ...target(app),
          body: [
            { op: "test", path: "/metadata/uid", value: app.metadata.uid },
            { op: "test", path: at, value: FINALIZER },
            { op: "remove", path: at },
          ],
          fieldManager: FIELD_MANAGER,
        },
        setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
      );
    },
    async applyStatus(app, status) {
      onWrite("app/status");
      await custom.patchNamespacedCustomObjectStatus(
        {
          ...target(app),
          body: {
            apiVersion: APP_API_VERSION,
            kind: APP_KIND,
            metadata: identify(app),
            status,
          },
          fieldManager: FIELD_MANAGER,
          force: true,
        },
        applyOptions,
      );
    },
    async event(app, event) {
      onWrite("event");
      const { name, namespace, uid } = app.metadata;
      await recordEvent(
        core,
        component,
        { apiVersion: APP_API_VERSION, kind: APP_KIND, name, namespace, uid },
        event,
      );
    },
  };
}
