/**
 * Runs the leader-only loops while this replica holds the Lease. Winning it builds them (their
 * factory may read and write, so it runs only then) and starts them; losing it aborts their
 * signal at once, so writes in flight stop, then stops them. A new term waits until the last
 * one's loops have stopped: one replica never runs two sets.
 */
import type { Logger } from "pino";
import { LeaderElector, type LeaderElectorOptions } from "./leader-election.ts";
import { readiness, startLoops, stopLoops, type Loop, type Readiness } from "./loop.ts";

export interface LeaderGatedOptions {
  election: Omit<LeaderElectorOptions, "onStartedLeading" | "onStoppedLeading" | "logger">;
  /** Builds the loops of one term; `term.signal` fires when it ends. */
  build: (term: LeaderTerm) => Promise<Loop[]>;
  logger: Logger;
  onLeadership?: (leading: boolean) => void;
  /** A term's loops could not be built or started (not merely cut short by losing the Lease). */
  onFailure: (error: unknown) => void;
}

/** What the loops of one term write under. */
export interface LeaderTerm {
  /** Fires when the term ends. */
  signal: AbortSignal;
  /**
   * Call before every write: ends the term (firing `signal`) unless this replica still surely
   * holds the Lease, so a process resumed after a pause past its Lease writes nothing.
   */
  fence: () => void;
  /** Why the term cannot start yet (readiness says it); undefined once it can. */
  report: (blocked: string | undefined) => void;
}

interface Term {
  abort: AbortController;
  loops: Loop[];
  running: boolean;
  blocked?: string | undefined;
  /** Built and started (or failed). */
  started: Promise<void>;
}

export class LeaderGated {
  private readonly options: LeaderGatedOptions;
  private readonly elector: LeaderElector;
  private term: Term | undefined;
  /** The last term to end, while its loops stop. */
  private ended: Term | undefined;
  /** That term's stop, which the next term waits for. */
  private ending: Promise<void> = Promise.resolve();

  constructor(options: LeaderGatedOptions) {
    this.options = options;
    this.elector = new LeaderElector({
      ...options.election,
      logger: options.logger,
      onStartedLeading: () => {
        this.begin();
      },
      onStoppedLeading: () => {
        void this.end(true);
      },
    });
  }

  start(): void {
    this.elector.start();
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  /** The running term's loops (empty while following or still building). */
  loops(): readonly Loop[] {
    return this.term?.loops ?? [];
  }

  /** A follower is ready; a leader once its loops have started and are ready. */
  ready(): Readiness {
    if (!this.term) return { ready: true };
    if (!this.term.running)
      return { ready: false, reason: this.term.blocked ?? "the leader's loops are starting" };
    return readiness(this.term.loops);
  }

  /**
   * Ends the term gracefully (work in flight finishes, the Lease still held), then releases the
   * Lease. Losing it meanwhile aborts what is left at once.
   */
  async stop(): Promise<void> {
    await this.end(false);
    await this.elector.stop();
  }

  private begin(): void {
    const { logger } = this.options;
    const abort = new AbortController();
    const term: Term = { abort, loops: [], running: false, started: Promise.resolve() };
    this.term = term;
    this.options.onLeadership?.(true);
    term.started = this.ending
      .then(async () => {
        logger.info("leading: starting the leader's loops");
        term.loops = await this.options.build({
          signal: abort.signal,
          fence: () => {
            // Stepping down ends this term at once (its signal fires before the request goes);
            // if the Lease is still this replica's, the next attempt starts a new term.
            if (!abort.signal.aborted && !this.elector.holdsLease())
              this.elector.stepDown("not renewed in time: another replica may hold the Lease");
          },
          report: (blocked) => {
            term.blocked = blocked;
          },
        });
        await startLoops(term.loops, abort.signal);
        term.running = true;
      })
      .catch((error: unknown) => {
        if (!abort.signal.aborted) this.options.onFailure(error);
      });
  }

  /**
   * `lost`: abort first, so nothing more is written; otherwise work in flight finishes. A term
   * still starting is cut short either way: its start may wait on a cache that never fills.
   */
  private end(lost: boolean): Promise<void> {
    const term = this.term;
    if (!term) {
      // Lost while a graceful stop drains: what is left may not write any more.
      if (lost) this.ended?.abort.abort();
      return this.ending;
    }
    this.term = undefined;
    this.ended = term;
    this.options.onLeadership?.(false);
    if (lost) this.options.logger.warn("lost the Lease: stopping the leader's loops");
    if (lost || !term.running) term.abort.abort();
    this.ending = (async () => {
      await term.started;
      await stopLoops(term.loops);
      term.abort.abort();
    })();
    return this.ending;
  }
}
