/**
 * The operator's own connection to the NATS servers, as the system user. The servers cannot
 * start before the operator has written their config Secret, so the operator starts without
 * one and keeps trying; reconciles that need NATS meanwhile fail with NatsUnavailableError and
 * are retried. A new CA bundle (rotation) gets a new connection that trusts it. When the term's
 * signal fires the connection closes at once: requests in flight fail rather than land late.
 */
import type { Logger } from "pino";
import { ResolverClient } from "../accounts/resolver-client.ts";
import { watchServerArrivals, type ServerArrivals } from "../nats/server-discovery.ts";
import type { Loop } from "../runtime/loop.ts";
import { Trigger } from "../runtime/triggers.ts";

export interface NatsLinkOptions {
  servers: string[];
  expectedServers: number;
  creds: string;
  ca: string;
  timeoutMs?: number;
  logger: Logger;
}

/** The NATS connection is not up yet (first start, or the servers are down). */
export class NatsUnavailableError extends Error {
  override name = "NatsUnavailableError";
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 15_000;

export class NatsLink implements Loop {
  /** Fires after each new connection: work that waited for NATS can go on now. */
  readonly connected = new Trigger();
  /**
   * Fires when a server joins the cluster after the connection was made: one that was down
   * (a rolling restart, a crash) lacks what was pushed and deleted while it was away.
   */
  readonly serverJoined = new Trigger();
  private client: ResolverClient | undefined;
  private arrivals: ServerArrivals | undefined;
  private options: NatsLinkOptions;
  private stopped = false;
  private connecting: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(options: NatsLinkOptions) {
    this.options = options;
  }

  /** Connects in the background until it succeeds; closes when `signal` fires. */
  start(signal: AbortSignal): Promise<void> {
    signal.addEventListener("abort", () => void this.stop(), { once: true });
    this.connect();
    return Promise.resolve();
  }

  private connect(): void {
    if (this.stopped) return;
    this.connecting ??= this.connectLoop().finally(() => {
      this.connecting = undefined;
    });
  }

  /** The connected client; throws NatsUnavailableError before the first connection. */
  resolver(): ResolverClient {
    if (!this.client || this.client.connection.isClosed())
      throw new NatsUnavailableError(
        `not connected to the NATS servers (${this.options.servers.join(", ")}) yet`,
      );
    return this.client;
  }

  isConnected(): boolean {
    return this.client !== undefined && !this.client.connection.isClosed();
  }

  /** Reconnects when the CA bundle or credentials changed. */
  update(creds: string, ca: string): void {
    if (creds === this.options.creds && ca === this.options.ca) return;
    this.options = { ...this.options, creds, ca };
    const old = this.client;
    this.client = undefined;
    this.arrivals?.stop();
    void old?.close().catch(() => undefined);
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.wake?.();
    await this.connecting;
    this.arrivals?.stop();
    await this.client?.close().catch(() => undefined);
    this.client = undefined;
  }

  private async connectLoop(): Promise<void> {
    let delay = RETRY_MIN_MS;
    while (!this.stopped && !this.client) {
      const { servers, expectedServers, creds, ca, timeoutMs, logger } = this.options;
      try {
        const client = await ResolverClient.connect({
          servers,
          expectedServers,
          creds,
          ca,
          ...(timeoutMs ? { timeoutMs } : {}),
        });
        this.client = client;
        this.arrivals = watchServerArrivals(client.connection, expectedServers, (serverId) => {
          logger.info({ serverId }, "a NATS server joined");
          this.serverJoined.fire();
        });
        logger.info({ servers }, "connected to NATS");
        this.connected.fire();
      } catch (error) {
        logger.warn({ servers, err: error, retryInMs: delay }, "NATS not reachable yet");
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.timer = setTimeout(resolve, delay);
        });
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      }
    }
  }
}
