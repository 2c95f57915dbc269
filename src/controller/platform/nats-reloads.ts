/**
 * Keeps every NATS server serving the certificate in the NATS config Secret: after each
 * bootstrap (a renewal or a CA step may have changed the Secret) and after each new connection,
 * the leader asks the servers that still present an older certificate to reload, until all
 * present the new one or the deadline passes (the next resync tries again). One run at a time:
 * a request for the same certificate during a run is taken up when it ends; one for another
 * certificate (a renewal landed meanwhile) cuts the run short, since no server that picks up
 * the newer files will ever present the older certificate.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import {
  reloadUntilServing,
  ServerReloadTimeoutError,
  type ServerEndpoint,
} from "../../nats/server-reload.ts";

export interface ServerReloadSettings {
  /** How the operator reaches a server by its name (the chart: the pod's headless DNS name). */
  endpoint: (serverName: string) => ServerEndpoint;
  /** Longer than the kubelet takes to refresh a Secret volume (its sync period plus cache). */
  deadlineMs: number;
}

export interface NatsReloadsOptions {
  settings: ServerReloadSettings;
  expectedServers: number;
  /** The operator's system-user connection; throws while there is none. */
  connection: () => NatsConnection;
  logger: Logger;
}

export interface ServingTarget {
  certificatePem: string;
}

export class NatsReloads {
  private readonly options: NatsReloadsOptions;
  private readonly abort = new AbortController();
  /** Cut short by a request for another certificate. */
  private current: { target: ServingTarget; abort: AbortController } | undefined;
  private target: ServingTarget | undefined;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(options: NatsReloadsOptions) {
    this.options = options;
  }

  request(target: ServingTarget): void {
    this.target = target;
    if (this.running) {
      this.again = true;
      if (this.current && this.current.target.certificatePem !== target.certificatePem)
        this.current.abort.abort();
      return;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async run(): Promise<void> {
    const { settings, expectedServers, logger } = this.options;
    do {
      this.again = false;
      const target = this.target;
      if (!target || this.stopped()) return;
      let connection: NatsConnection;
      try {
        connection = this.options.connection();
      } catch {
        return; // not connected: the next connection asks again
      }
      const run = { target, abort: new AbortController() };
      this.current = run;
      try {
        const result = await reloadUntilServing({
          connection,
          expectedCertificatePem: target.certificatePem,
          endpoint: settings.endpoint,
          expectedServers,
          deadlineMs: settings.deadlineMs,
          signal: AbortSignal.any([this.abort.signal, run.abort.signal]),
          logger,
        });
        if (result.reloaded.length > 0)
          logger.info({ servers: result.reloaded }, "NATS servers reloaded their certificates");
      } catch (error) {
        if (this.stopped() || run.abort.signal.aborted) continue;
        const message =
          error instanceof ServerReloadTimeoutError
            ? "some NATS servers still present an older certificate; the next resync asks again"
            : "asking the NATS servers to reload failed; the next resync asks again";
        logger.warn({ err: error }, message);
      }
    } while (this.requestedAgain());
  }

  // Methods, not fields, in the loop: both change while it awaits.
  private stopped(): boolean {
    return this.abort.signal.aborted;
  }

  private requestedAgain(): boolean {
    return this.again;
  }
}
