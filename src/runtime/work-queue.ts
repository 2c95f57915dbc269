/**
 * A controller work queue in the spirit of client-go's workqueue: keys, not events, are queued,
 * so a burst of changes to one object costs one reconcile. A key is never processed twice at
 * once; one added while it runs is marked dirty and runs once more after the current run.
 * Failures retry with per-key exponential backoff; a run may also ask to be repeated later.
 */

/** What a run returns: nothing when done, or a request to run the key again later. */
export type WorkResult = undefined | { requeueAfterMs: number };

/**
 * Spelled as two promises because lint forbids `void` inside a union, and a plain
 * `async (key) => { ... }` returns Promise<void>, which Promise<WorkResult> does not accept.
 */
export type ProcessKey<K extends string> = (key: K) => Promise<WorkResult> | Promise<void>;

export interface WorkQueueOptions<K extends string = string> {
  /** Keys processed at once, at least 1. */
  concurrency: number;
  process: ProcessKey<K>;
  /** First retry delay after a failure; doubles with each consecutive failure. 200 ms. */
  baseDelayMs?: number;
  /** Ceiling of the retry delay. 60 s. */
  maxDelayMs?: number;
  /** `attempt` counts the key's consecutive failures, this one included (1 for the first). */
  onError?: (key: K, error: unknown, attempt: number) => void;
  onDepthChange?: (depth: number) => void;
}

/**
 * Shaving off up to this fraction keeps keys that failed together (say, NATS went away) from
 * retrying in lockstep, and never takes a delay past the ceiling.
 */
const JITTER = 0.1;

/** `min(base * 2^(failures-1), max)`, less up to 10% jitter. */
export function backoffDelay(
  failures: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const delay = Math.min(baseDelayMs * 2 ** Math.max(failures - 1, 0), maxDelayMs);
  return delay * (1 - JITTER * random());
}

export class WorkQueue<K extends string = string> {
  private readonly concurrency: number;
  private readonly process: ProcessKey<K>;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly onError: ((key: K, error: unknown, attempt: number) => void) | undefined;
  private readonly onDepthChange: ((depth: number) => void) | undefined;

  /** Keys waiting to start, in the order they were added (a Set iterates in insertion order). */
  private readonly waiting = new Set<K>();
  private readonly processing = new Set<K>();
  /** Keys added while they were being processed. */
  private readonly dirty = new Set<K>();
  private readonly delayed = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  private readonly failureCounts = new Map<K, number>();
  /** When each waiting or running key was added: how long its change has waited to be seen. */
  private readonly pendingSince = new Map<K, number>();
  /** When each running key's current run started. */
  private readonly runningSince = new Map<K, number>();
  private idleWaiters: (() => void)[] = [];
  private pumpScheduled = false;
  private draining = false;
  /** exclusive() sections in progress or waiting; no key starts while there is one. */
  private exclusiveDepth = 0;
  private quietWaiters: (() => void)[] = [];

  constructor(options: WorkQueueOptions<K>) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1)
      throw new RangeError(`concurrency must be a positive integer, not ${options.concurrency}`);
    this.concurrency = options.concurrency;
    this.process = options.process;
    this.baseDelayMs = options.baseDelayMs ?? 200;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
    this.onError = options.onError;
    this.onDepthChange = options.onDepthChange;
  }

  add(key: K): void {
    if (this.draining) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waiting.has(key)) return;
    this.waiting.add(key);
    if (!this.pendingSince.has(key)) this.pendingSince.set(key, performance.now());
    this.depthChanged();
    this.schedulePump();
  }

  /** Adds the key after `ms`; of several pending delays for one key, the earliest wins. */
  addAfter(key: K, ms: number): void {
    if (this.draining) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = Date.now() + ms;
    const pending = this.delayed.get(key);
    if (pending) {
      if (pending.at <= at) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, timer });
  }

  /**
   * Starts now every key waiting out a failure's backoff (what failed it is fixed, say NATS is
   * reachable again); keys delayed at their own request keep their delay.
   */
  retryFailedNow(): void {
    for (const [key, { timer }] of this.delayed) {
      if (this.failures(key) === 0) continue;
      clearTimeout(timer);
      this.delayed.delete(key);
      this.add(key);
    }
  }

  /** Keys waiting to start. A running key added again is not counted until its run ends. */
  depth(): number {
    return this.waiting.size;
  }

  running(): number {
    return this.processing.size;
  }

  /** Keys waiting out a failure's backoff. */
  backingOff(): number {
    let count = 0;
    for (const key of this.delayed.keys()) if (this.failures(key) > 0) count++;
    return count;
  }

  /** How long the oldest key waiting or running has been, in ms; 0 when there is none. */
  oldestPendingMs(): number {
    return ageOfOldest(this.pendingSince);
  }

  /** How long the longest run in progress has been running, in ms; 0 when none runs. */
  longestRunningMs(): number {
    return ageOfOldest(this.runningSince);
  }

  /** The key's consecutive failures; 0 once it succeeds. */
  failures(key: K): number {
    return this.failureCounts.get(key) ?? 0;
  }

  /** Resolves when no key is waiting or running; delayed keys do not count. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
    });
  }

  /**
   * Runs `section` while no key runs: keys already running finish first, no key starts until
   * it is done. For work that must not interleave with reconciles (comparing every server's
   * accounts with the stored ones, where a reconcile minting or deleting one midway would make
   * the comparison wrong).
   */
  async exclusive<T>(section: () => Promise<T>): Promise<T> {
    this.exclusiveDepth += 1;
    try {
      if (this.processing.size > 0) {
        await new Promise<void>((resolve) => {
          this.quietWaiters.push(resolve);
        });
      }
      return await section();
    } finally {
      this.exclusiveDepth -= 1;
      if (this.waiting.size > 0) this.schedulePump();
    }
  }

  /**
   * Stops for good: later adds are ignored, delayed keys and keys not yet started are dropped
   * (a new leader relists everything anyway), and running work is waited for. Leaves no timer.
   */
  async drain(): Promise<void> {
    this.draining = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.dirty.clear();
    if (this.waiting.size > 0) {
      for (const key of this.waiting) this.pendingSince.delete(key);
      this.waiting.clear();
      this.depthChanged();
    }
    this.settle();
    await this.idle();
  }

  /**
   * Starting on a microtask rather than inside add() lets a burst of adds of one key in the same
   * tick collapse into one run, and keeps process() out of the caller's stack.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    let started = false;
    for (const key of this.waiting) {
      if (this.draining || this.exclusiveDepth > 0 || this.processing.size >= this.concurrency)
        break;
      this.waiting.delete(key);
      this.processing.add(key);
      this.runningSince.set(key, performance.now());
      started = true;
      void this.run(key);
    }
    if (started) this.depthChanged();
  }

  private async run(key: K): Promise<void> {
    let followUpMs: number | undefined;
    // A reconcile that finds everything current never waits on I/O: without this hop one key
    // after another would run in one chain of microtasks, and timers (the Lease renewal among
    // them) and sockets would wait for the whole queue.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      const result = await this.process(key);
      this.failureCounts.delete(key);
      if (result) followUpMs = result.requeueAfterMs;
    } catch (error) {
      const attempt = this.failures(key) + 1;
      this.failureCounts.set(key, attempt);
      this.onError?.(key, error, attempt);
      followUpMs = backoffDelay(attempt, this.baseDelayMs, this.maxDelayMs);
    }
    this.processing.delete(key);
    this.runningSince.delete(key);
    // A dirty key's new change is still pending; its age runs on.
    if (!this.dirty.has(key)) this.pendingSince.delete(key);
    if (this.processing.size === 0 && this.quietWaiters.length > 0) {
      const waiters = this.quietWaiters;
      this.quietWaiters = [];
      for (const resolve of waiters) resolve();
    }
    // A dirty key runs again at once, and that run decides its own retry or requeue; scheduling
    // this run's as well would only add a redundant run. The failure count carries over, so a
    // failing dirty key still backs off.
    if (this.dirty.delete(key)) this.add(key);
    else if (followUpMs !== undefined) this.addAfter(key, followUpMs);
    if (this.waiting.size > 0) this.schedulePump();
    this.settle();
  }

  private isIdle(): boolean {
    return this.waiting.size === 0 && this.processing.size === 0;
  }

  private settle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private depthChanged(): void {
    this.onDepthChange?.(this.waiting.size);
  }
}

function ageOfOldest(since: ReadonlyMap<unknown, number>): number {
  let oldest = Infinity;
  for (const at of since.values()) oldest = Math.min(oldest, at);
  return oldest === Infinity ? 0 : performance.now() - oldest;
}
