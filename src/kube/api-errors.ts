/** The API's error answers the operator expects and handles as outcomes rather than failures. */
import { ApiException } from "@kubernetes/client-node";

export function statusOf(error: unknown): number | undefined {
  return error instanceof ApiException ? error.code : undefined;
}

/** The call's result, or undefined when the object is not there (404); other errors rethrow. */
export async function unlessNotFound<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw error;
  }
}
