/**
 * One page of a cluster-wide custom resource list. Custom objects come back as raw JSON, so the
 * page token is `metadata.continue`; the typed lists' models rename it `_continue`, which is
 * what the informers read. Reading the wrong one silently ends a list at its first page.
 */
import type { CustomObjectsApi } from "@kubernetes/client-node";

export interface CustomListPage<T> {
  items: T[];
  metadata: { resourceVersion?: string; _continue?: string };
}

export async function listCustomObjectsPage<T>(
  api: CustomObjectsApi,
  resource: { group: string; version: string; plural: string },
  limit: number,
  token?: string,
): Promise<CustomListPage<T>> {
  const page = (await api.listClusterCustomObject({
    ...resource,
    limit,
    ...(token ? { _continue: token } : {}),
  })) as { items?: T[]; metadata?: { resourceVersion?: string; continue?: string } };
  const next = page.metadata?.continue;
  return {
    items: page.items ?? [],
    metadata: {
      ...(page.metadata?.resourceVersion ? { resourceVersion: page.metadata.resourceVersion } : {}),
      ...(next ? { _continue: next } : {}),
    },
  };
}
