/**
 * The operator's writes of Secrets, App status and Events (those it makes for every
 * app-environment), sent as plain JSON over the same pooled, authenticated and abortable
 * connections as client-node's clients. client-node sends each call through undici's fetch
 * (WHATWG streams and Response objects) and walks its generated model on the way out and back;
 * for a Secret nothing of that changes what is sent. Everything else keeps using client-node.
 */
import { request } from "undici";
import { ApiException, RequestContext, type KubeConfig } from "@kubernetes/client-node";

export const JSON_TYPE = "application/json";
export const APPLY_TYPE = "application/apply-patch+yaml";
export const MERGE_PATCH_TYPE = "application/merge-patch+json";
export const JSON_PATCH_TYPE = "application/json-patch+json";

export interface JsonRequest {
  method: "POST" | "PUT" | "PATCH" | "DELETE";
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

/** Sends JSON requests to the kubeconfig's current cluster. */
export class JsonRequests {
  private readonly kubeConfig: KubeConfig;

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
  }

  /**
   * Sends the request; the answer's body is not parsed (a Secret or an App comes back whole,
   * and parsing what no one reads was 3% of the operator's CPU in a burst profile). A status of
   * 300 or above throws the ApiException client-node would (code and body), so callers handle
   * both paths' errors alike.
   */
  async send(call: JsonRequest): Promise<void> {
    await this.exchange(call);
  }

  /** As send, and returns the answer's JSON body. */
  async read<T>(call: JsonRequest): Promise<T> {
    return JSON.parse(await this.exchange(call)) as T;
  }

  private async exchange(call: JsonRequest): Promise<string> {
    const server = this.kubeConfig.getCurrentCluster()?.server;
    if (!server) throw new Error("the kubeconfig names no current cluster");
    const query = call.query ? `?${new URLSearchParams(call.query).toString()}` : "";
    const url = `${server.replace(/\/+$/, "")}${call.path}${query}`;
    // The kubeconfig fills the context in: credentials, the pooled dispatcher, and (through an
    // abortable view) the term's signal and a timeout.
    const context = new RequestContext(url, call.method);
    await this.kubeConfig.applySecurityAuthentication(context);
    const headers: Record<string, string> = { ...context.getHeaders(), accept: JSON_TYPE };
    if (call.body !== undefined) headers["content-type"] = call.contentType ?? JSON_TYPE;
    const signal = context.getSignal();
    signal?.throwIfAborted();
    const answer = await settledBy(
      signal,
      request(url, {
        method: call.method,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
        dispatcher: context.getDispatcher(),
        signal,
      }),
    );
    const text = await answer.body.text();
    if (answer.statusCode >= 300) {
      let body: unknown = text;
      try {
        body = JSON.parse(text) as unknown;
      } catch {
        // Not JSON (a proxy's page): kept as text.
      }
      const headers = Object.fromEntries(
        Object.entries(answer.headers).map(([name, value]) => [name, String(value)]),
      );
      throw new ApiException(answer.statusCode, "request refused", body, headers);
    }
    return text;
  }
}
