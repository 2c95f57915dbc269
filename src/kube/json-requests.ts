/**
 * The operator's requests to the Kubernetes API, sent as plain JSON over the pooled,
 * authenticated and bounded connections of its ClusterAccess, with Node's own https client.
 * client-node sends each call through undici's fetch (WHATWG streams and Response objects),
 * walks its generated model on the way out and back, and costs 75 MiB to load; none of that
 * changes what is sent.
 */
// Types only from node:http: importing it as a module builds its facade, whose WebSocket export
// loads Node's bundled undici (about 4 MiB resident) that nothing here uses.
import type { IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createInterface } from "node:readline";
import { KubeApiError } from "./api-errors.ts";
import type { Authorization, ClusterAccess } from "./cluster-access.ts";

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

/** Sends one request and resolves with the answer's head, its body still to be read. */
function open(
  url: string,
  options: {
    method: string;
    headers: Record<string, string>;
    agent: Authorization["agent"];
    signal?: AbortSignal | undefined;
  },
  body?: string,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const { signal, ...rest } = options;
    // https only: an API server answers plain HTTP nowhere since Kubernetes 1.20.
    const request = httpsRequest(url, signal ? { ...rest, signal } : rest);
    request.once("response", resolve);
    request.once("error", reject);
    request.end(body);
  });
}

async function textOf(answer: IncomingMessage): Promise<string> {
  answer.setEncoding("utf8");
  let text = "";
  for await (const chunk of answer) text += chunk as string;
  return text;
}

/**
 * One page of a list as the API sends it. The page token is `metadata.continue` in the JSON;
 * client-node's typed models rename it `_continue`, and reading that here would end every list
 * at its first page.
 */
export interface ListPage<T> {
  items?: T[];
  metadata?: { resourceVersion?: string; continue?: string };
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
  private readonly cluster: ClusterAccess;

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

  /** Every page of a list, `limit` objects at a time, in order. */
  async *pages<T>(
    path: string,
    query: Record<string, string>,
    limit: number,
  ): AsyncIterable<ListPage<T>> {
    let token: string | undefined;
    do {
      const page = await this.get<ListPage<T>>(path, {
        ...query,
        limit: String(limit),
        ...(token ? { continue: token } : {}),
      });
      yield page;
      token = page.metadata?.continue || undefined;
    } while (token);
  }

  private async exchange(call: JsonRequest): Promise<string> {
    const url = withQuery(this.cluster.server, call.path, call.query);
    const { headers: auth, agent, signal } = await this.cluster.authorize();
    const headers: Record<string, string> = { ...auth, accept: JSON_TYPE };
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    if (body !== undefined) {
      headers["content-type"] = call.contentType ?? JSON_TYPE;
      // Sized, not chunked: after a DELETE whose body went chunked (the key store's
      // preconditioned delete), the next request on that connection was answered 400.
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    signal?.throwIfAborted();
    const answer = await open(url, { method: call.method, headers, agent, signal }, body);
    const text = await textOf(answer);
    if ((answer.statusCode ?? 0) >= 300) throw fail(answer.statusCode ?? 0, text);
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
    const { headers, agent } = await this.cluster.authorize();
    const answer = await open(url, {
      method: "GET",
      headers: { ...headers, accept: JSON_TYPE },
      agent,
      signal,
    });
    if ((answer.statusCode ?? 0) >= 300) throw fail(answer.statusCode ?? 0, await textOf(answer));
    const lines = createInterface({ input: answer, crlfDelay: Infinity });
    return (async function* events() {
      try {
        for await (const line of lines) if (line.trim()) yield JSON.parse(line) as WatchEvent<T>;
      } catch (error) {
        if (!signal.aborted) throw error;
      } finally {
        lines.close();
        answer.destroy();
      }
    })();
  }
}
