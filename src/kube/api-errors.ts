/** The API's error answers the operator expects and handles as outcomes rather than failures. */

/**
 * An answer of 300 or above: the status code and the body (parsed when it is JSON). The
 * operator's requests throw KubeApiError and the CLI's client-node calls ApiException; both
 * have this shape, so both are handled alike.
 */
export interface ApiAnswer {
  code: number;
  body: unknown;
}

export class KubeApiError extends Error implements ApiAnswer {
  override name = "KubeApiError";
  readonly code: number;
  readonly body: unknown;

  constructor(code: number, body: unknown) {
    super(apiErrorSentence({ code, body }));
    this.code = code;
    this.body = body;
  }
}

/** The error as an API answer, or undefined when it is another failure (a refused connection). */
export function apiAnswer(error: unknown): ApiAnswer | undefined {
  if (!(error instanceof Error) || !("code" in error) || !("body" in error)) return undefined;
  return typeof error.code === "number" ? { code: error.code, body: error.body } : undefined;
}

export function statusOf(error: unknown): number | undefined {
  return apiAnswer(error)?.code;
}

/** The call's result, or undefined when the API answered `status`; other errors rethrow. */
async function unlessAnswered<T>(status: number, call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if (statusOf(error) === status) return undefined;
    throw error;
  }
}

/** The call's result, or undefined when the object is not there (404). */
export function unlessNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  return unlessAnswered(404, call);
}

/** The call's result, or undefined when the object already exists (409). */
export function unlessExists<T>(call: Promise<T>): Promise<T | undefined> {
  return unlessAnswered(409, call);
}

/**
 * A sentence for status conditions and Events: client-node's message carries the whole
 * response body and headers, which no user should have to read.
 */
export function apiErrorSentence(error: ApiAnswer): string {
  let body: unknown = error.body;
  if (typeof body === "string") {
    try {
      body = JSON.parse(body) as unknown;
    } catch {
      // Not JSON: a proxy's page, say; its text says nothing a user can act on.
    }
  }
  const status = body as { message?: unknown; reason?: unknown } | undefined;
  const said = typeof status?.message === "string" ? status.message : undefined;
  const reason = typeof status?.reason === "string" ? ` ${status.reason}` : "";
  return `the Kubernetes API answered ${String(error.code)}${reason}${said ? `: ${said}` : ""}`;
}
