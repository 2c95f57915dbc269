import type { ManagedProcess } from "./process.ts";

export class WaitError extends Error {
  override name = "WaitError";
}

/** Polls `check` until it returns true; fails early with the log tail if a process exits. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  options: { timeoutMs: number; processes?: ManagedProcess[]; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError = "";
  for (;;) {
    const dead = options.processes?.find((p) => !p.running);
    if (dead) {
      throw new WaitError(
        `${dead.name} ${dead.describeExit()} while waiting for ${what}:\n${dead.tail(30)}`,
      );
    }
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      throw new WaitError(
        `timed out after ${options.timeoutMs} ms waiting for ${what}${lastError ? ` (${lastError})` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 200));
  }
}
