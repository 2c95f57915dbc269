import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as nextMacrotask } from "node:timers/promises";
import { WorkQueue, backoffDelay, type WorkResult } from "../../src/runtime/work-queue.ts";

/** Lets every pending microtask chain (runs finishing, the queue starting keys) play out. */
async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await nextMacrotask();
}

/** Runs of a key that wait until the test releases them, so overlaps are decided by the test. */
class Gates {
  readonly started: string[] = [];
  private readonly pending = new Map<string, PromiseWithResolvers<undefined>[]>();
  active = 0;
  maxActive = 0;

  run(key: string): Promise<undefined> {
    this.started.push(key);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const gate = Promise.withResolvers<undefined>();
    const queue = this.pending.get(key) ?? [];
    queue.push(gate);
    this.pending.set(key, queue);
    return gate.promise.finally(() => {
      this.active--;
    });
  }

  release(key: string, error?: Error): void {
    const gate = this.pending.get(key)?.shift();
    assert.ok(gate, `${key} is not running`);
    if (error) gate.reject(error);
    else gate.resolve(undefined);
  }
}

function timers(): string[] {
  return process.getActiveResourcesInfo().filter((name) => name === "Timeout");
}

describe("WorkQueue", () => {
  test("a key waiting to start is queued once; keys start in the order added", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 1, process: (key) => gates.run(key) });
    queue.add("x");
    await flush();
    for (const key of ["a", "a", "b", "a", "b", "c"]) queue.add(key);
    assert.equal(queue.depth(), 3);
    gates.release("x");
    await flush();
    gates.release("a");
    await flush();
    gates.release("b");
    await flush();
    gates.release("c");
    await queue.idle();
    assert.deepEqual(gates.started, ["x", "a", "b", "c"]);
  });

  test("adds in one tick collapse into one run", async () => {
    const seen: string[] = [];
    const queue = new WorkQueue({
      concurrency: 4,
      process: async (key) => {
        seen.push(key);
        await nextMacrotask();
      },
    });
    queue.add("a");
    queue.add("a");
    queue.add("a");
    await queue.idle();
    assert.deepEqual(seen, ["a"]);
  });

  test("a key added while it runs is not run concurrently, and runs once more afterwards", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 4, process: (key) => gates.run(key) });
    queue.add("a");
    await flush();
    assert.equal(queue.running(), 1);
    queue.add("a");
    queue.add("a");
    queue.add("a");
    await flush();
    assert.equal(queue.running(), 1);
    assert.equal(queue.depth(), 0);
    assert.deepEqual(gates.started, ["a"]);

    gates.release("a");
    await flush();
    assert.deepEqual(gates.started, ["a", "a"]);
    gates.release("a");
    await queue.idle();
    await flush();
    assert.deepEqual(gates.started, ["a", "a"]);
    assert.equal(gates.maxActive, 1);
  });

  test("no more than `concurrency` keys run at once", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 2, process: (key) => gates.run(key) });
    for (const key of ["k0", "k1", "k2", "k3", "k4"]) queue.add(key);
    await flush();
    assert.deepEqual(gates.started, ["k0", "k1"]);
    assert.equal(queue.running(), 2);
    assert.equal(queue.depth(), 3);

    gates.release("k1");
    await flush();
    assert.deepEqual(gates.started, ["k0", "k1", "k2"]);
    gates.release("k0");
    gates.release("k2");
    await flush();
    assert.deepEqual(gates.started, ["k0", "k1", "k2", "k3", "k4"]);
    gates.release("k3");
    gates.release("k4");
    await queue.idle();
    assert.equal(gates.maxActive, 2);
    assert.equal(queue.running(), 0);
  });

  test("failures back off exponentially up to the ceiling, and success resets the count", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
    t.mock.method(Math, "random", () => 0);
    const outcomes = [false, false, false, true, false, true];
    const runs: number[] = [];
    const errors: { key: string; message: string; attempt: number }[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      baseDelayMs: 100,
      maxDelayMs: 300,
      process: async () => {
        runs.push(Date.now());
        await Promise.resolve();
        if (!outcomes[runs.length - 1]) throw new Error(`failure ${runs.length}`);
      },
      onError: (key, error, attempt) => {
        errors.push({ key, message: (error as Error).message, attempt });
      },
    });
    queue.add("a");
    await flush();
    assert.equal(queue.failures("a"), 1);

    // 100, then 200, then 300 (400 capped).
    for (const delay of [100, 200, 300]) {
      t.mock.timers.tick(delay - 1);
      await flush();
      const before = runs.length;
      t.mock.timers.tick(1);
      await flush();
      assert.equal(runs.length, before + 1, `a retry after exactly ${delay} ms`);
    }
    assert.deepEqual(runs, [0, 100, 300, 600]);
    assert.equal(queue.failures("a"), 0);

    queue.add("a");
    await flush();
    assert.equal(queue.failures("a"), 1);
    t.mock.timers.tick(100);
    await flush();
    assert.deepEqual(runs, [0, 100, 300, 600, 600, 700]);
    assert.equal(queue.failures("a"), 0);
    assert.deepEqual(errors, [
      { key: "a", message: "failure 1", attempt: 1 },
      { key: "a", message: "failure 2", attempt: 2 },
      { key: "a", message: "failure 3", attempt: 3 },
      { key: "a", message: "failure 5", attempt: 1 },
    ]);
    t.mock.timers.tick(60_000);
    await flush();
    assert.equal(runs.length, 6);
  });

  test("backoffDelay doubles, caps, and jitters only downwards", () => {
    const none = (): number => 0;
    assert.deepEqual(
      [1, 2, 3, 4, 10, 5000].map((failures) => backoffDelay(failures, 200, 60_000, none)),
      [200, 400, 800, 1600, 60_000, 60_000],
    );
    assert.equal(
      backoffDelay(1, 200, 60_000, () => 0.5),
      190,
    );
    assert.equal(
      backoffDelay(20, 200, 60_000, () => 1),
      54_000,
    );
  });

  test("a process that throws synchronously counts as a failure", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
    const attempts: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      process: () => {
        throw new TypeError("not even a promise");
      },
      onError: (_key, error, attempt) => {
        assert.ok(error instanceof TypeError);
        attempts.push(attempt);
      },
    });
    queue.add("a");
    await flush();
    assert.deepEqual(attempts, [1]);
    await queue.drain();
  });

  test("a failing key added during its run retries at once, keeping its failure count", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
    t.mock.method(Math, "random", () => 0);
    const gates = new Gates();
    const attempts: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      baseDelayMs: 100,
      process: (key) => gates.run(key),
      onError: (_key, _error, attempt) => {
        attempts.push(attempt);
      },
    });
    queue.add("a");
    await flush();
    queue.add("a");
    gates.release("a", new Error("down"));
    await flush();
    assert.deepEqual(gates.started, ["a", "a"]);
    gates.release("a", new Error("still down"));
    await flush();
    assert.deepEqual(attempts, [1, 2]);
    t.mock.timers.tick(199);
    await flush();
    assert.equal(gates.started.length, 2);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(gates.started.length, 3);
    gates.release("a");
    await queue.idle();
    assert.equal(queue.failures("a"), 0);
    t.mock.timers.tick(60_000);
    await flush();
    assert.equal(gates.started.length, 3);
  });

  test("requeueAfterMs runs the key again later without counting a failure", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
    const runs: number[] = [];
    let errors = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      process: async () => {
        runs.push(Date.now());
        await Promise.resolve();
        return runs.length === 1 ? { requeueAfterMs: 500 } : undefined;
      },
      onError: () => {
        errors++;
      },
    });
    queue.add("a");
    await queue.idle();
    assert.deepEqual(runs, [0]);
    assert.equal(queue.failures("a"), 0);
    t.mock.timers.tick(499);
    await flush();
    assert.deepEqual(runs, [0]);
    t.mock.timers.tick(1);
    await flush();
    assert.deepEqual(runs, [0, 500]);
    t.mock.timers.tick(10_000);
    await flush();
    assert.deepEqual(runs, [0, 500]);
    assert.equal(errors, 0);
  });

  test("of several delayed adds of one key, the earliest wins and only one run follows", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
    const runs: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      process: async () => {
        runs.push(Date.now());
        await Promise.resolve();
      },
    });
    queue.addAfter("a", 1000);
    queue.addAfter("a", 300);
    queue.addAfter("a", 800);
    assert.equal(queue.depth(), 0);
    t.mock.timers.tick(300);
    await flush();
    assert.deepEqual(runs, [300]);
    t.mock.timers.tick(5000);
    await flush();
    assert.deepEqual(runs, [300]);
  });

  test("drain waits for running work, drops waiting and delayed keys, then ignores adds", async () => {
    const timersBefore = timers().length;
    const gates = new Gates();
    const attempts: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      process: (key) => gates.run(key),
      onError: (_key, _error, attempt) => {
        attempts.push(attempt);
      },
    });
    queue.add("a");
    await flush();
    queue.add("a");
    queue.add("b");
    queue.addAfter("c", 60_000);
    assert.equal(timers().length, timersBefore + 1);

    let drained = false;
    const draining = queue.drain().then(() => {
      drained = true;
    });
    queue.add("d");
    queue.addAfter("e", 10);
    await flush();
    assert.equal(drained, false);
    assert.equal(queue.running(), 1);
    assert.equal(queue.depth(), 0);

    // The failure is still reported, but neither retried nor re-run as dirty.
    gates.release("a", new Error("interrupted"));
    await draining;
    assert.equal(drained, true);
    assert.deepEqual(attempts, [1]);
    assert.equal(queue.running(), 0);
    queue.add("f");
    await flush();
    assert.deepEqual(gates.started, ["a"]);
    assert.equal(queue.depth(), 0);
    assert.equal(timers().length, timersBefore);
  });

  test("drain of an idle queue resolves at once and cancels delayed keys", async () => {
    const timersBefore = timers().length;
    const queue = new WorkQueue({ concurrency: 1, process: () => Promise.resolve() });
    queue.addAfter("a", 60_000);
    queue.addAfter("b", 60_000);
    assert.equal(timers().length, timersBefore + 2);
    await queue.drain();
    assert.equal(timers().length, timersBefore);
  });

  test("idle waits for waiting and running keys but not for delayed ones", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 1, process: (key) => gates.run(key) });
    await queue.idle();
    queue.add("a");
    queue.add("b");
    queue.addAfter("c", 60_000);
    let idle = false;
    const waiting = queue.idle().then(() => {
      idle = true;
    });
    await flush();
    gates.release("a");
    await flush();
    assert.equal(idle, false);
    gates.release("b");
    await waiting;
    assert.deepEqual(gates.started, ["a", "b"]);
    await queue.drain();
  });

  test("onDepthChange reports every change of the number of waiting keys", async () => {
    const gates = new Gates();
    const depths: number[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      process: (key) => (gates.started.includes(key) ? Promise.resolve() : gates.run(key)),
      onDepthChange: (depth) => {
        depths.push(depth);
      },
    });
    queue.add("a");
    await flush();
    queue.add("b");
    queue.add("c");
    queue.add("b");
    queue.add("a");
    assert.deepEqual(depths, [1, 0, 1, 2]);
    gates.release("a");
    await flush();
    gates.release("b");
    await flush();
    gates.release("c");
    await queue.idle();
    // a's re-run joins the back of the queue when its first run ends.
    assert.deepEqual(depths, [1, 0, 1, 2, 3, 2, 1, 0]);
    assert.deepEqual(gates.started, ["a", "b", "c"]);
  });

  test("exclusive waits for running keys, and no key starts until it is done", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 4, process: (key) => gates.run(key) });
    queue.add("a");
    await flush();
    const events: string[] = [];
    let finishSection = (): void => undefined;
    const section = queue.exclusive(async () => {
      events.push(`section starts while ${queue.running()} run`);
      await new Promise<void>((resolve) => {
        finishSection = resolve;
      });
      events.push("section ends");
      return 42;
    });
    queue.add("b");
    await flush();
    assert.deepEqual(events, [], "the section waits for the running key");
    gates.release("a");
    await flush();
    assert.deepEqual(events, ["section starts while 0 run"]);
    assert.deepEqual(gates.started, ["a"], "b does not start during the section");
    finishSection();
    assert.equal(await section, 42);
    await flush();
    assert.deepEqual(gates.started, ["a", "b"]);
    gates.release("b");
    await queue.idle();
  });

  test("a section that throws still lets keys start afterwards", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 1, process: (key) => gates.run(key) });
    const section = queue.exclusive(() => {
      queue.add("a");
      return Promise.reject(new Error("boom"));
    });
    await assert.rejects(section, /boom/);
    await flush();
    assert.deepEqual(gates.started, ["a"]);
    gates.release("a");
    await queue.idle();
  });

  test("retryFailedNow starts keys waiting out a backoff at once, not keys delayed on request", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const runs: string[] = [];
    const queue = new WorkQueue({
      concurrency: 2,
      baseDelayMs: 10_000,
      // The first run of each fails ("failing") or asks to run again later ("later").
      process: (key): Promise<WorkResult> => {
        const first = !runs.includes(key);
        runs.push(key);
        if (first && key === "failing") return Promise.reject(new Error("NATS down"));
        return Promise.resolve(first && key === "later" ? { requeueAfterMs: 10_000 } : undefined);
      },
      onError: () => undefined,
    });
    queue.add("failing");
    await flush();
    queue.add("later");
    await flush();
    assert.deepEqual(runs, ["failing", "later"]);
    queue.retryFailedNow();
    await flush();
    assert.deepEqual(runs, ["failing", "later", "failing"], "only the failed key ran again");
    assert.equal(queue.failures("failing"), 0);
    t.mock.timers.tick(10_000);
    await flush();
    assert.deepEqual(runs, ["failing", "later", "failing", "later"]);
    await queue.drain();
  });

  test("keys whose runs never wait on I/O still let timers fire between them", async () => {
    const processed: string[] = [];
    const queue = new WorkQueue({
      concurrency: 4,
      process: (key: string) => {
        processed.push(key);
        return Promise.resolve(undefined);
      },
    });
    const firedAfter = new Promise<number>((resolve) =>
      setTimeout(() => {
        resolve(processed.length);
      }, 0),
    );
    for (let key = 0; key < 5_000; key++) queue.add(String(key));
    await queue.idle();
    assert.ok((await firedAfter) < 5_000, "the timer waited for the whole queue");
  });

  test("concurrency must be a positive integer", () => {
    for (const concurrency of [0, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => new WorkQueue({ concurrency, process: () => Promise.resolve() }),
        RangeError,
      );
    }
  });

  test("what monitoring reads: keys in backoff, the oldest unfinished key, the longest run", async () => {
    const gates = new Gates();
    const queue = new WorkQueue({ concurrency: 1, process: (key) => gates.run(key) });
    assert.equal(queue.oldestPendingMs(), 0);
    assert.equal(queue.longestRunningMs(), 0);
    queue.add("slow");
    queue.add("next");
    await flush();
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.ok(queue.longestRunningMs() >= 25, "the run's age");
    assert.ok(queue.oldestPendingMs() >= 25, "the oldest key's age");
    gates.release("slow", new Error("down"));
    await flush();
    assert.equal(queue.backingOff(), 1, "the failed key waits out its backoff");
    assert.equal(queue.longestRunningMs() < 25, true, "next started just now");
    gates.release("next");
    await flush();
    assert.equal(queue.oldestPendingMs(), 0, "a key waiting out a backoff is not pending");
    await queue.drain();
    assert.equal(queue.backingOff(), 0);
  });
});
