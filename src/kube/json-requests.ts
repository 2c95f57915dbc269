/**
 * The operator's requests to the Kubernetes API, sent as plain JSON over the pooled,
 * authenticated and bounded connections of its ClusterAccess. client-node sends each call
 * through undici's fetch (WHATWG streams and Response objects), walks its generated model on
 * the way out and back, and costs 75 MiB to load; none of that changes what is sent.
 */
import { createInterface } from "node:readline";
import { request } from "undici";
import { KubeApiError } from "./api-errors.ts";
import type { ClusterAccess } from "./cluster-access.ts";

export const JSON_TYPE = "application/json";
export const APPLY_TYPE = "application/apply-patch+yaml";
export const MERGE_PATCH_TYPE = "application/merge-patch+json";
export const JSON_PATCH_TYPE = "application/json-patch+json";

export interface JsonRequest {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** From the API root, e.g. `/api/v1/namespaces/default/secrets`. */
  path: string;
  query?: Record<string, string>;
  body?: unknown;
  /** JSON unless told. */
  contentType?: string;
}

/** The path of a core/v1 namespaced collection (`secrets`, `events`), or of one object in it. */
export function corePath(resource: string, namespace: string, name?: string): string {
  const collection = `/api/v1/namespaces/${namespace}/${resource}`;
  return name === undefined ? collection : `${collection}/${name}`;
}

/**
 * The promise, or the signal's reason as soon as it fires. undici holds an abort back until the
 * connection it waits for opens (then the request is dropped unsent); a leader that lost its
 * Lease must not wait that long for its requests to end.
 */
function settledBy<T>(signal: AbortSignal | undefined, promise: Promise<T>): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => {
      signal.removeEventListener("abort", abort);
    });
  });
}

/** One event of a watch: the object as it is now, or as it was when deleted. */
export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

function fail(statusCode: number, text: string): KubeApiError {
  let body: unknown = text;
  try {
    body = JSON.parse(text) as unknown;
  } catch {
    // Not JSON (a proxy's page): kept as text.
  }
  return new KubeApiError(statusCode, body);
}

function withQuery(server: string, path: string, query: Record<string, string> | undefined) {
  const search = query ? `?${new URLSearchParams(query).toString()}` : "";
  return `${server}${path}${search}`;
}

/** Sends JSON requests to the cluster the access leads to. */
export class JsonRequests {
  readonly cluster: ClusterAccess;

  constructor(cluster: ClusterAccess) {
    this.cluster = cluster;
  }

  /**
   * Sends the request; the answer's body is not parsed (a Secret or an App comes back whole,
   * and parsing what no one reads was 3% of the operator's CPU in a burst profile). A status of
   * 300 or above throws a KubeApiError (code and body).
   */
  async send(call: JsonRequest): Promise<void> {
    await this.exchange(call);
  }

  /** As send, and returns the answer's JSON body. */
  async read<T>(call: JsonRequest): Promise<T> {
    return JSON.parse(await this.exchange(call)) as T;
  }

  /** GETs a path and returns its JSON. */
  get<T>(path: string, query?: Record<string, string>): Promise<T> {
    return this.read<T>({ method: "GET", path, ...(query ? { query } : {}) });
  }

  private async exchange(call: JsonRequest): Promise<string> {
    const url = withQuery(this.cluster.server, call.path, call.query);
    const { headers: auth, dispatcher, signal } = await this.cluster.authorize();
    const headers: Record<string, string> = { ...auth, accept: JSON_TYPE };
    if (call.body !== undefined) headers["content-type"] = call.contentType ?? JSON_TYPE;
    signal?.throwIfAborted();
    const answer = await settledBy(
      signal,
      request(url, {
        method: call.method,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
        dispatcher,
        signal,
      }),
    );
    const text = await answer.body.text();
    if (answer.statusCode >= 300) throw fail(answer.statusCode, text);
    return text;
  }

  /**
   * Opens a watch of a collection and resolves once the API server has answered; its events
   * follow until the server ends the watch or `signal` fires (then the iteration just ends).
   * The access's own signal is not used: a watch lives as long as its informer, not a request.
   */
  async watch<T>(
    path: string,
    query: Record<string, string>,
    signal: AbortSignal,
  ): Promise<AsyncIterable<WatchEvent<T>>> {
    const url = withQuery(this.cluster.server, path, { ...query, watch: "true" });
    const { headers, dispatcher } = await this.cluster.authorize();
    const answer = await request(url, {
      method: "GET",
      headers: { ...headers, accept: JSON_TYPE },
      dispatcher,
      signal,
    });
    if (answer.statusCode >= 300) throw fail(answer.statusCode, await answer.body.text());
    const lines = createInterface({ input: answer.body, crlfDelay: Infinity });
    return (async function* events() {
      try {
        for await (const line of lines) if (line.trim()) yield JSON.parse(line) as WatchEvent<T>;
      } catch (error) {
        if (!signal.aborted) throw error;
      } finally {
        lines.close();
        answer.body.destroy();
      }
    })();
  }
}
