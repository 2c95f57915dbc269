/**
 * List-and-watch caches of the objects the controller reacts to. A watch that fails is
 * restarted with backoff until stopped, with a new list; one the API server ends (its request
 * timeout) resumes from the last resourceVersion, and one too old to resume (410 Gone) lists
 * again. Lists are paged and take the label selector the watch takes.
 */
import type { KubernetesObject, V1Secret } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { APP_GROUP, APP_PLURAL, APP_VERSION } from "../crds/app.ts";
import { asAppObject, type AppObject } from "../contract/app-object.ts";
import { APP_LABEL } from "../contract/app-secret.ts";
import { MANAGED_BY } from "../kube/apply-secret.ts";
import { statusOf } from "../kube/api-errors.ts";
import type { ClusterAccess } from "../kube/cluster-access.ts";
import { JsonRequests } from "../kube/json-requests.ts";

/** Objects per list request while an informer starts: bounded memory per response. */
export const LIST_PAGE_SIZE = 500;

export interface WatchedResource<T extends KubernetesObject> {
  /** Lists, then watches; resolves after the first attempt, which may fail and be retried. */
  start(): Promise<void>;
  get(namespace: string, name: string): T | undefined;
  /** Every cached object, or those of one namespace. */
  list(namespace?: string): readonly T[];
  /**
   * True once the first list has been loaded and its watch has opened. It stays true while a
   * failed watch restarts: the cache is still the best answer there is, and every replica
   * turning unready at once on an API server hiccup would take the webhook down with it.
   */
  synced(): boolean;
  /** Resolves once first synced. */
  waitSynced(): Promise<void>;
  stop(): Promise<void>;
}

export interface WatchOptions<T extends KubernetesObject> {
  cluster: ClusterAccess;
  /** What it is, for logs and the restart metric. */
  label: string;
  /** API path of the collection, e.g. /api/v1/secrets. */
  path: string;
  labelSelector?: string;
  /** Objects per list request; LIST_PAGE_SIZE when omitted. */
  pageSize?: number;
  /** Makes a listed or watched object smaller before it is cached (and handed on). */
  shrink?: (object: T) => T;
  onChange: (object: T) => void;
  /** Each restart after a failed list or watch. */
  onRestart?: () => void;
  logger: Logger;
}

const RESTART_MIN_MS = 500;
const RESTART_MAX_MS = 30_000;

/**
 * The object as cached: without managedFields, which nothing here reads and every App and
 * Secret carries (with 2,000 environments cached, the heap in use after a restart went from
 * 109 to 94 MiB). The watch's handlers get the object the cache holds, so it is stripped there.
 */
function lean<T extends KubernetesObject>(object: T): T {
  if (object.metadata?.managedFields) delete object.metadata.managedFields;
  return object;
}

/** Thrown when a watch must start over from a new list: what it would resume from is gone. */
class Expired extends Error {}

const keyOf = (object: KubernetesObject) =>
  `${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;

/** A cache of one collection, not started: start() lists and opens the watch. */
export function watchResource<T extends KubernetesObject>(
  options: WatchOptions<T>,
): WatchedResource<T> {
  const requests = new JsonRequests(options.cluster);
  const cached = (object: T) => {
    const leaner = lean(object);
    return options.shrink ? options.shrink(leaner) : leaner;
  };
  const selector: Record<string, string> = options.labelSelector
    ? { labelSelector: options.labelSelector }
    : {};
  /** By namespace, then name: the webhook lists one namespace's Apps on every admission. */
  const byNamespace = new Map<string, Map<string, T>>();
  let resourceVersion: string | undefined;
  let synced = false;
  /** When the watch last opened; undefined while it is not open. */
  let openedAt: number | undefined;
  let markSynced: () => void = () => undefined;
  const syncedOnce = new Promise<void>((resolve) => {
    markSynced = resolve;
  });
  let stopped = false;
  let delay = RESTART_MIN_MS;
  let timer: NodeJS.Timeout | undefined;
  let watching = new AbortController();

  const at = (namespace: string, name: string) => byNamespace.get(namespace)?.get(name);
  const put = (object: T) => {
    const namespace = object.metadata?.namespace ?? "";
    let names = byNamespace.get(namespace);
    if (!names) byNamespace.set(namespace, (names = new Map<string, T>()));
    names.set(object.metadata?.name ?? "", object);
  };
  const remove = (object: T) => {
    const namespace = object.metadata?.namespace ?? "";
    const names = byNamespace.get(namespace);
    names?.delete(object.metadata?.name ?? "");
    if (names?.size === 0) byNamespace.delete(namespace);
  };
  const all = () => [...byNamespace.values()].flatMap((names) => [...names.values()]);

  /** Replaces the cache with a fresh list; what changed or went is handed on. */
  const relist = async () => {
    const listed = new Map<string, T>();
    let version: string | undefined;
    const pages = requests.pages<T>(options.path, selector, options.pageSize ?? LIST_PAGE_SIZE);
    for await (const page of pages) {
      for (const item of page.items ?? []) listed.set(keyOf(item), cached(item));
      version = page.metadata?.resourceVersion;
    }
    const gone = all().filter((object) => !listed.has(keyOf(object)));
    const changed = [...listed.values()].filter(
      (object) =>
        at(object.metadata?.namespace ?? "", object.metadata?.name ?? "")?.metadata
          ?.resourceVersion !== object.metadata?.resourceVersion,
    );
    byNamespace.clear();
    for (const object of listed.values()) put(object);
    resourceVersion = version;
    for (const object of [...gone, ...changed]) options.onChange(object);
  };

  const consume = async (events: AsyncIterable<{ type: string; object: T }>) => {
    for await (const { type, object: sent } of events) {
      if (type === "ERROR") {
        const code = (sent as { code?: unknown }).code;
        if (code === 410) throw new Expired("the watch's resourceVersion is gone");
        throw new Error(`the watch failed: ${JSON.stringify(sent)}`);
      }
      resourceVersion = sent.metadata?.resourceVersion ?? resourceVersion;
      if (type === "BOOKMARK") continue;
      const object = cached(sent);
      if (type === "DELETED") remove(object);
      else put(object);
      options.onChange(object);
    }
  };

  const failed = (error: unknown) => {
    // Only a watch that stayed up a while starts the backoff over: one that opens and fails at
    // once keeps backing off.
    if (openedAt !== undefined && Date.now() - openedAt >= RESTART_MAX_MS) delay = RESTART_MIN_MS;
    openedAt = undefined;
    resourceVersion = undefined;
    if (stopped) return;
    options.onRestart?.();
    options.logger.warn(
      { resource: options.label, err: error, retryInMs: delay },
      "watch failed; restarting",
    );
    timer = setTimeout(() => {
      void attempt();
    }, delay);
    delay = Math.min(delay * 2, RESTART_MAX_MS);
  };

  /**
   * Lists when there is nothing to resume from, and opens the watch; resolves once it is open
   * or the failure is handled. The events are read on in the background.
   */
  const attempt = async (): Promise<void> => {
    try {
      if (resourceVersion === undefined) await relist();
      if (stopped) return;
      watching = new AbortController();
      const events = await requests.watch<T>(
        options.path,
        { ...selector, allowWatchBookmarks: "true", resourceVersion: resourceVersion ?? "" },
        watching.signal,
      );
      openedAt = Date.now();
      if (!synced) {
        synced = true;
        markSynced();
      }
      consume(events).then(
        () => {
          if (stopped) return;
          // The API server ends every watch after its request timeout: resume where it was.
          // One that ends at once (a server shutting down) is a failure, with its backoff.
          if (Date.now() - (openedAt ?? 0) < RESTART_MIN_MS) failed(new Error("the watch ended"));
          else void attempt();
        },
        (error: unknown) => {
          if (stopped) return;
          if (error instanceof Expired) {
            resourceVersion = undefined;
            void attempt();
          } else failed(error);
        },
      );
    } catch (error) {
      if (statusOf(error) === 410 && !stopped) {
        resourceVersion = undefined;
        return attempt();
      }
      failed(error);
    }
  };

  return {
    start: attempt,
    get: at,
    list: (namespace) =>
      namespace === undefined ? all() : [...(byNamespace.get(namespace)?.values() ?? [])],
    synced: () => synced,
    waitSynced: () => syncedOnce,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      watching.abort();
      return Promise.resolve();
    },
  };
}

/** Every App in the cluster; `onChange` sees only objects shaped like an App. */
export function watchApps(
  options: Omit<WatchOptions<AppObject>, "path" | "labelSelector">,
): WatchedResource<AppObject> {
  return watchResource<AppObject>({
    ...options,
    path: `/apis/${APP_GROUP}/${APP_VERSION}/${APP_PLURAL}`,
    onChange: (object) => {
      const app = asAppObject(object);
      if (app) options.onChange(app);
    },
  });
}

/**
 * Equal strings made one: of the last few distinct values seen, a value equal to one of them is
 * replaced by it. JSON parsing makes a new string of every value, however often it recurs.
 */
export function internRecent(size: number): (value: string) => string {
  const recent = new Map<string, string>();
  return (value) => {
    const known = recent.get(value);
    if (known !== undefined) {
      // Kept as the most recent: a value every object carries is never pushed out.
      recent.delete(value);
      recent.set(value, known);
      return known;
    }
    recent.set(value, value);
    if (recent.size > size) recent.delete(recent.keys().next().value ?? "");
    return value;
  };
}

/**
 * The operator's app Secrets in every namespace (labelled by app); no other Secret is cached.
 * Every one carries the same CA bundle and URL, and its creds twice: cached as one string each,
 * the heap in use after a restart over 10,000 went from 123 to 109 MiB.
 */
export function watchAppSecrets(
  options: Omit<WatchOptions<V1Secret>, "path" | "labelSelector">,
): WatchedResource<V1Secret> {
  const intern = internRecent(16);
  return watchResource<V1Secret>({
    ...options,
    shrink: (secret) => {
      const data = secret.data;
      if (data) for (const [key, value] of Object.entries(data)) data[key] = intern(value);
      return secret;
    },
    path: "/api/v1/secrets",
    labelSelector: `app.kubernetes.io/managed-by=${MANAGED_BY["app.kubernetes.io/managed-by"]},${APP_LABEL}`,
  });
}
