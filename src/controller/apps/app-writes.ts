/**
 * Every write the App reconciler makes to the API server, each server-side applied under the
 * operator's field manager (Secrets, the finalizer, status), a plain create (Events) or a JSON
 * patch (the finalizer's removal). One place, so writes can be counted and nothing writes
 * behind the metrics' back.
 */
import type { V1Secret } from "@kubernetes/client-node";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import { APP_API_VERSION, APP_KIND, appPath } from "../../crds/app.ts";
import type { AppStatus } from "../../crds/app.ts";
import { FINALIZER, type AppObject as App } from "../../contract/app-object.ts";
import { FIELD_MANAGER, applySecret, createSecret, staleKeys } from "../../kube/apply-secret.ts";
import { unlessNotFound } from "../../kube/api-errors.ts";
import { recordEvent, type EventInput } from "../../kube/events.ts";
import { APPLY_TYPE, JSON_PATCH_TYPE, JsonRequests, corePath } from "../../kube/json-requests.ts";
import { restartWorkloads } from "./workload-restarts.ts";

export interface AppWrites {
  /** Creates the Secret; false, writing nothing, when one of that name exists. */
  createSecret(secret: V1Secret): Promise<boolean>;
  /** Applies `secret`, removing what `existing` holds beyond it. */
  applySecret(secret: V1Secret, existing?: V1Secret): Promise<void>;
  deleteSecret(namespace: string, name: string): Promise<void>;
  /** Adds or drops the operator's finalizer; other finalizers are left as they are. */
  setFinalizer(app: App, present: boolean): Promise<void>;
  applyStatus(app: App, status: AppStatus): Promise<void>;
  event(app: App, event: EventInput): Promise<void>;
  /** Restarts the environment's workloads not yet restarted for `rotation`; their names. */
  restartWorkloads(
    namespace: string,
    target: { app: string; environment: string; rotation: string },
  ): Promise<string[]>;
}

/**
 * The uid makes each apply a precondition: an apply to a missing App would otherwise create
 * one, and an App deleted and re-created under the same name is another App.
 */
function identify(app: App): { name: string; namespace: string; uid: string } {
  return { name: app.metadata.name, namespace: app.metadata.namespace, uid: app.metadata.uid };
}

function pathOf(app: App): string {
  return appPath(app.metadata.namespace, app.metadata.name);
}

export function kubernetesAppWrites(
  cluster: ClusterAccess,
  component: string,
  onWrite: (resource: string) => void,
): AppWrites {
  const requests = new JsonRequests(cluster);
  return {
    createSecret(secret) {
      onWrite("secret");
      return createSecret(requests, secret);
    },
    async applySecret(secret, existing) {
      onWrite("secret");
      await applySecret(requests, secret, staleKeys(existing, secret));
    },
    async deleteSecret(namespace, name) {
      onWrite("secret");
      await unlessNotFound(
        requests.send({ method: "DELETE", path: corePath("secrets", namespace, name) }),
      );
    },
    async setFinalizer(app, present) {
      onWrite("app");
      if (present) {
        await requests.send({
          method: "PATCH",
          path: pathOf(app),
          query: { fieldManager: FIELD_MANAGER, force: "true" },
          body: {
            apiVersion: APP_API_VERSION,
            kind: APP_KIND,
            metadata: { ...identify(app), finalizers: [FINALIZER] },
          },
          contentType: APPLY_TYPE,
        });
        return;
      }
      // Set at admission, the entry belongs to whoever created the App, so an apply that leaves
      // it out would only drop this manager's claim; it is removed where it stands instead. The
      // tests make a stale copy fail (and be retried) rather than remove someone else's entry.
      const index = (app.metadata.finalizers ?? []).indexOf(FINALIZER);
      if (index < 0) return;
      const at = `/metadata/finalizers/${String(index)}`;
      await requests.send({
        method: "PATCH",
        path: pathOf(app),
        query: { fieldManager: FIELD_MANAGER },
        body: [
          { op: "test", path: "/metadata/uid", value: app.metadata.uid },
          { op: "test", path: at, value: FINALIZER },
          { op: "remove", path: at },
        ],
        contentType: JSON_PATCH_TYPE,
      });
    },
    async applyStatus(app, status) {
      onWrite("app/status");
      await requests.send({
        method: "PATCH",
        path: `${pathOf(app)}/status`,
        query: { fieldManager: FIELD_MANAGER, force: "true" },
        body: { apiVersion: APP_API_VERSION, kind: APP_KIND, metadata: identify(app), status },
        contentType: APPLY_TYPE,
      });
    },
    async restartWorkloads(namespace, target) {
      const restarted = await restartWorkloads(cluster, namespace, target, Date.now());
      restarted.forEach(() => {
        onWrite("workload");
      });
      return restarted;
    },
    async event(app, event) {
      onWrite("event");
      const { name, namespace, uid } = app.metadata;
      await recordEvent(
        requests,
        component,
        { apiVersion: APP_API_VERSION, kind: APP_KIND, name, namespace, uid },
        event,
      );
    },
  };
}
