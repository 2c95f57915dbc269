/**
 * Keeps every NATS server running the operator JWT of the NATS config Secret. A reload cannot
 * change a server's operator JWT, only a restart: under the chart the leader rolls the NATS
 * StatefulSet the way `kubectl rollout restart` does, once per operator JWT; elsewhere it waits
 * for someone to restart the servers (and says so). Either way it asks the servers (VARZ) until
 * every one runs the Secret's operator JWT, then fires `current`. One run at a time; a request
 * for another operator JWT cuts the run short.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { V1StatefulSet } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { trustedSigningKeysOf } from "../../accounts/identities.ts";
import type { ClusterAccess } from "../../kube/cluster-access.ts";
import { JsonRequests } from "../../kube/json-requests.ts";
import {
  RESTARTED_FOR_ANNOTATION,
  rolloutRestart,
  workloadPath,
} from "../../kube/rollout-restart.ts";
import { runningOperatorJwts } from "../../nats/server-trust.ts";
import { Trigger } from "../../runtime/triggers.ts";

export interface NatsRestartsOptions {
  cluster: ClusterAccess;
  /** The servers' StatefulSet, which the leader may roll; absent: it never restarts them. */
  statefulSet?: { namespace: string; name: string };
  expectedServers: number;
  /** The operator's system-user connection; throws while there is none. */
  connection: () => NatsConnection;
  logger: Logger;
}

/** How often the servers are asked while some still run an older operator JWT. */
const CHECK_MS = 5000;
/** A run gives up after this long (a roll of many servers included); the next request retries. */
const DEADLINE_MS = 15 * 60_000;

/** `restarted-for` on the StatefulSet's template: the operator JWT it was rolled for. */
function restartedFor(operatorJwt: string): string {
  return `operator-jwt-${createHash("sha256").update(operatorJwt).digest("hex").slice(0, 16)}`;
}

export class NatsRestarts {
  /** Every server runs the operator JWT last asked for. */
  readonly current = new Trigger();
  private readonly options: NatsRestartsOptions;
  private readonly abort = new AbortController();
  private run: { operatorJwt: string; abort: AbortController; done: Promise<void> } | undefined;
  /** The signing keys every server trusts, as last seen; undefined until all answered. */
  private trusted: string[] | undefined;

  constructor(options: NatsRestartsOptions) {
    this.options = options;
  }

  /** The signing keys every server trusted when last asked; undefined when unknown. */
  trustedByAll(): string[] | undefined {
    return this.trusted;
  }

  request(operatorJwt: string): void {
    if (this.run?.operatorJwt === operatorJwt || this.abort.signal.aborted) return;
    this.run?.abort.abort();
    const abort = new AbortController();
    const signal = AbortSignal.any([this.abort.signal, abort.signal]);
    this.run = {
      operatorJwt,
      abort,
      done: this.until(operatorJwt, signal).catch((error: unknown) => {
        if (!signal.aborted)
          this.options.logger.warn(
            { err: error },
            "watching the NATS servers' operator JWT failed; the next resync asks again",
          );
      }),
    };
    const run = this.run;
    void run.done.finally(() => {
      if (this.run === run) this.run = undefined;
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.run?.done;
  }

  private async until(operatorJwt: string, signal: AbortSignal): Promise<void> {
    const { logger, statefulSet } = this.options;
    const deadline = Date.now() + DEADLINE_MS;
    let asked = false;
    while (!signal.aborted) {
      const running = await this.running();
      if (running && [...running.values()].every((jwt) => jwt === operatorJwt)) {
        if (asked) logger.info("every NATS server runs the new operator JWT");
        this.current.fire();
        return;
      }
      if (running && !asked) {
        const stale = [...running].filter(([, jwt]) => jwt !== operatorJwt).map(([name]) => name);
        if (statefulSet) {
          await this.roll(statefulSet, operatorJwt);
          logger.info(
            { servers: stale, statefulSet: statefulSet.name },
            "NATS servers run an older operator JWT, which only a restart changes: rolling their StatefulSet",
          );
        } else {
          logger.warn(
            { servers: stale },
            "NATS servers run an older operator JWT, which only a restart changes: restart them",
          );
        }
        asked = true;
      }
      if (Date.now() >= deadline) {
        logger.warn("NATS servers still run an older operator JWT; the next resync asks again");
        return;
      }
      await sleep(CHECK_MS, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Each server's operator JWT, noting the keys all trust; undefined unless all answered. */
  private async running(): Promise<Map<string, string> | undefined> {
    let connection: NatsConnection;
    try {
      connection = this.options.connection();
    } catch {
      return undefined; // not connected: asked again at the next check
    }
    const running = await runningOperatorJwts(connection, this.options.expectedServers, 2000);
    this.trusted = running
      ? [...running.values()]
          .map((jwt) => trustedSigningKeysOf(jwt))
          .reduce((all, keys) => all.filter((key) => keys.includes(key)))
      : undefined;
    return running;
  }

  /** Rolls the StatefulSet unless it was rolled for this operator JWT already. */
  private async roll(
    target: { namespace: string; name: string },
    operatorJwt: string,
  ): Promise<void> {
    const cause = restartedFor(operatorJwt);
    const requests = new JsonRequests(this.options.cluster);
    const found = await requests.get<V1StatefulSet>(
      workloadPath(target.namespace, "statefulsets", target.name),
    );
    if (found.spec?.template.metadata?.annotations?.[RESTARTED_FOR_ANNOTATION] === cause) return;
    await rolloutRestart(requests, { ...target, plural: "statefulsets" }, cause, Date.now());
  }
}
