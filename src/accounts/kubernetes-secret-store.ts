/**
 * The key store as Kubernetes Secrets in the operator's namespace, and only there: the
 * namespace is fixed at construction and never taken from an App.
 */
import type { V1Secret } from "@kubernetes/client-node";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import {
  FIELD_MANAGER,
  MANAGED_BY,
  applySecret,
  createSecret,
  secretCreation,
  secretData,
} from "../kube/apply-secret.ts";
import { JsonRequests, corePath } from "../kube/json-requests.ts";
import { statusOf, unlessExists, unlessNotFound } from "../kube/api-errors.ts";
import { decodeSecretData, readSecret, readSecretData } from "../kube/read-secret.ts";
import type { SecretStore, StoreEntry, VersionedEntry } from "./key-store.ts";

export const KEYS_LABEL = "nats-tenancy.io/keys";

export class KubernetesSecretStore implements SecretStore {
  private readonly requests: JsonRequests;
  readonly namespace: string;

  constructor(cluster: ClusterAccess, namespace: string) {
    this.requests = new JsonRequests(cluster);
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
    return readSecretData(this.requests, this.namespace, name);
  }

  create(name: string, data: Record<string, string>): Promise<boolean> {
    return createSecret(this.requests, this.manifest(name, data));
  }

  async put(name: string, data: Record<string, string>): Promise<void> {
    await applySecret(this.requests, this.manifest(name, data));
  }

  async read(name: string): Promise<VersionedEntry | undefined> {
    const secret = await readSecret(this.requests, this.namespace, name);
    const version = secret?.metadata?.resourceVersion;
    return secret && version ? { data: decodeSecretData(secret), version } : undefined;
  }

  async write(
    name: string,
    data: Record<string, string>,
    version?: string,
  ): Promise<string | undefined> {
    const body = this.manifest(name, data);
    if (!version)
      return (await unlessExists(this.requests.read<V1Secret>(secretCreation(body))))?.metadata
        ?.resourceVersion;
    // The replace's precondition: it fails if the Secret changed since it was read.
    if (body.metadata) body.metadata.resourceVersion = version;
    try {
      const written = await this.requests.read<V1Secret>({
        method: "PUT",
        path: corePath("secrets", this.namespace, name),
        query: { fieldManager: FIELD_MANAGER },
        body,
      });
      return written.metadata?.resourceVersion;
    } catch (error) {
      // Changed, or deleted, since it was read.
      if (statusOf(error) === 409 || statusOf(error) === 404) return undefined;
      throw error;
    }
  }

  async delete(name: string, version?: string): Promise<boolean> {
    try {
      await unlessNotFound(
        this.requests.send({
          method: "DELETE",
          path: corePath("secrets", this.namespace, name),
          ...(version ? { body: { preconditions: { resourceVersion: version } } } : {}),
        }),
      );
      return true;
    } catch (error) {
      if (statusOf(error) === 409) return false;
      throw error;
    }
  }

  async list(): Promise<string[]> {
    const names: string[] = [];
    for await (const { name } of this.entries()) names.push(name);
    return names;
  }

  async *entries(): AsyncIterable<StoreEntry> {
    const pages = this.requests.pages<V1Secret>(
      corePath("secrets", this.namespace),
      { labelSelector: `${KEYS_LABEL}=true` },
      500,
    );
    for await (const page of pages)
      for (const secret of page.items ?? []) {
        const name = secret.metadata?.name;
        if (name) yield { name, data: decodeSecretData(secret) };
      }
  }
}
