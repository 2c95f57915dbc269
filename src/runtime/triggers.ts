/**
 * What starts work, as values a loop can declare in one place: a Trigger one part of the
 * operator fires and others listen to (NATS connected, certificates renewed), and a period.
 */

/** A subscription that can be ended; every source a loop declares is one. */
export interface Subscription {
  cancel(): void;
}

export class Trigger {
  private readonly listeners = new Set<() => void>();

  on(listener: () => void): Subscription {
    this.listeners.add(listener);
    return {
      cancel: () => {
        this.listeners.delete(listener);
      },
    };
  }

  fire(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/**
 * Runs `work` every `ms`, the next period counted from the end of the last run, so a slow run
 * never overlaps the next.
 */
export function every(ms: number, work: () => Promise<void>): Subscription {
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    timer = setTimeout(() => {
      void work().finally(() => {
        if (!cancelled) schedule();
      });
    }, ms);
  };
  schedule();
  return {
    cancel: () => {
      cancelled = true;
      clearTimeout(timer);
    },
  };
}

/** A source of work a loop declares: a trigger, or a period. */
export type Source = { trigger: Trigger; run: () => void } | { everyMs: number; run: () => void };

export function subscribe(source: Source): Subscription {
  if ("trigger" in source) return source.trigger.on(source.run);
  return every(source.everyMs, () => {
    source.run();
    return Promise.resolve();
  });
}
