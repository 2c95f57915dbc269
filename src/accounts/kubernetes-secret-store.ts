/**
 * The key store as Kubernetes Secrets in the operator's namespace, and only there: the
 * namespace is fixed at construction and never taken from an App.
 */
import { CoreV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { MANAGED_BY, applySecret, createSecret, secretData } from "../kube/apply-secret.ts";
import { unlessNotFound } from "../kube/api-errors.ts";
import { decodeSecretData, readSecretData } from "../kube/read-secret.ts";
import type { SecretStore, StoreEntry } from "./key-store.ts";

export const KEYS_LABEL = "nats-tenancy.io/keys";

export class KubernetesSecretStore implements SecretStore {
  private readonly api: CoreV1Api;
  readonly namespace: string;

  constructor(kubeConfig: KubeConfig, namespace: string) {
    this.api = kubeConfig.makeApiClient(CoreV1Api);
    this.namespace = namespace;
  }

  private manifest(name: string, data: Record<string, string>): V1Secret {
    return {
      apiVersion: "v1",
      kind: "Secret",
      type: "Opaque",
      metadata: {
        name,
        namespace: this.namespace,
        labels: { ...MANAGED_BY, [KEYS_LABEL]: "true" },
      },
      data: secretData(data),
    };
  }

  get(name: string): Promise<Record<string, string> | undefined> {
    return readSecretData(this.api, this.namespace, name);
  }

  create(name: string, data: Record<string, string>): Promise<boolean> {
    return createSecret(this.api, this.manifest(name, data));
  }

  async put(name: string, data: Record<string, string>): Promise<void> {
    await applySecret(this.api, this.manifest(name, data));
  }

  async delete(name: string): Promise<void> {
    await unlessNotFound(this.api.deleteNamespacedSecret({ name, namespace: this.namespace }));
  }

  async list(): Promise<string[]> {
    const names: string[] = [];
    for await (const { name } of this.entries()) names.push(name);
    return names;
  }

  async *entries(): AsyncIterable<StoreEntry> {
    let next: string | undefined;
    do {
      const page = await this.api.listNamespacedSecret({
        namespace: this.namespace,
        labelSelector: `${KEYS_LABEL}=true`,
        limit: 500,
        ...(next ? { _continue: next } : {}),
      });
      for (const secret of page.items) {
        const name = secret.metadata?.name;
        if (name) yield { name, data: decodeSecretData(secret) };
      }
      next = page.metadata?._continue;
    } while (next);
  }
}
