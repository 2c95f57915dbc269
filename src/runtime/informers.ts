/**
 * List-and-watch caches of the objects the controller reacts to. client-node's informer stops
 * on any error other than 410 Gone, so each is restarted with backoff until stopped; and it
 * lists without paging or the label selector it watches with, so the list is ours.
 */
import {
  CustomObjectsApi,
  makeInformer,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import { APP_GROUP, APP_PLURAL, APP_RESOURCE, APP_VERSION } from "../crds/app.ts";
import { listCustomObjectsPage } from "../kube/custom-list.ts";
import { asAppObject, type AppObject } from "../contract/app-object.ts";

/** Objects per list request while an informer starts: bounded memory per response. */
export const LIST_PAGE_SIZE = 500;

export interface WatchedResource<T extends KubernetesObject> {
  get(namespace: string, name: string): T | undefined;
  list(): readonly T[];
  /** True once the first list has been loaded and the watch is open. */
  synced(): boolean;
  /** Resolves once synced (the first list can fail and be retried). */
  waitSynced(): Promise<void>;
  stop(): Promise<void>;
}

export interface WatchOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** What it is, for logs. */
  label: string;
  /** API path of the collection, e.g. /api/v1/secrets. */
  path: string;
  labelSelector?: string;
  /** One page of the list; `continueToken` pages through. */
  listPage: (
    labelSelector: string | undefined,
    continueToken: string | undefined,
  ) => Promise<{ items: T[]; metadata?: { resourceVersion?: string; _continue?: string } }>;
  onChange: (object: T) => void;
  logger: Logger;
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

export async function watchResource<T extends KubernetesObject>(
  options: WatchOptions<T>,
): Promise<WatchedResource<T>> {
  let listed = false;
  let markSynced: () => void = () => undefined;
  const syncedOnce = new Promise<void>((resolve) => {
    markSynced = resolve;
  });
  const list = async (): Promise<{ items: T[]; metadata: { resourceVersion?: string } }> => {
    const items: T[] = [];
    let token: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await options.listPage(options.labelSelector, token);
      items.push(...page.items);
      resourceVersion = page.metadata?.resourceVersion;
      token = page.metadata?._continue || undefined;
    } while (token);
    listed = true;
    markSynced();
    return { items, metadata: resourceVersion ? { resourceVersion } : {} };
  };
  const informer = makeInformer<T>(options.kubeConfig, options.path, list, options.labelSelector);
  let stopped = false;
  let delay = RESTART_MIN_MS;
  let timer: NodeJS.Timeout | undefined;
  for (const verb of ["add", "update", "delete"] as const) informer.on(verb, options.onChange);
  informer.on("connect", () => {
    delay = RESTART_MIN_MS;
  });
  informer.on("error", (error: unknown) => {
    if (stopped) return;
    options.logger.warn(
      { resource: options.label, err: error, retryInMs: delay },
      "watch failed; restarting",
    );
    timer = setTimeout(() => {
      informer.start().catch(() => undefined);
    }, delay);
    delay = Math.min(delay * 2, RESTART_MAX_MS);
  });
  // start() resolves once the list ran, whether it succeeded or not (a failure goes through
  // the error handler and its restart).
  await informer.start();
  return {
    get: (namespace, name) => informer.get(name, namespace),
    list: () => informer.list(),
    synced: () => listed,
    waitSynced: () => syncedOnce,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await informer.stop();
    },
  };
}

/** Every App in the cluster; `onChange` sees only objects shaped like an App. */
export function watchApps(options: {
  kubeConfig: KubeConfig;
  label: string;
  onChange: (app: AppObject) => void;
  logger: Logger;
}): Promise<WatchedResource<AppObject>> {
  const custom = options.kubeConfig.makeApiClient(CustomObjectsApi);
  return watchResource<AppObject>({
    kubeConfig: options.kubeConfig,
    label: options.label,
    path: `/apis/${APP_GROUP}/${APP_VERSION}/${APP_PLURAL}`,
    listPage: (_selector, token) =>
      listCustomObjectsPage<AppObject>(custom, APP_RESOURCE, LIST_PAGE_SIZE, token),
    onChange: (object) => {
      const app = asAppObject(object);
      if (app) options.onChange(app);
    },
    logger: options.logger,
  });
}
