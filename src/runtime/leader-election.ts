/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that one replica reconciles while the
 * others stand by. A replica takes the Lease when it does not exist, names no holder, or was
 * not renewed within its leaseDurationSeconds; every write carries the resourceVersion it read,
 * so of two replicas racing for it, one gets a 409 and stays a follower.
 *
 * Whether another holder's Lease has expired is judged as client-go does, by this replica's own
 * monotonic clock: the record must not have changed for leaseDurationSeconds since this replica
 * first saw it as it is. Comparing the holder's renewTime with the local wall clock would let a
 * standby whose clock runs ahead take a Lease its holder is still renewing.
 *
 * Times in a Lease are MicroTime, which the API server only accepts with exactly six fractional
 * digits: a Date's JSON has three and is refused (400), hence microTime().
 */
import type { V1Lease, V1LeaseSpec } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { boundedAccess, type ClusterAccess } from "../kube/cluster-access.ts";
import { statusOf, unlessNotFound } from "../kube/api-errors.ts";
import { JsonRequests } from "../kube/json-requests.ts";

/** A MicroTime as the API server takes it: six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

/** The Lease's reads and writes; each request bounded by the requests it is made with. */
class Leases {
  private readonly requests: JsonRequests;
  private readonly collection: string;
  private readonly name: string;

  constructor(requests: JsonRequests, namespace: string, name: string) {
    this.requests = requests;
    this.collection = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
    this.name = name;
  }

  read(): Promise<V1Lease> {
    return this.requests.get<V1Lease>(`${this.collection}/${this.name}`);
  }

  create(lease: Pick<V1Lease, "metadata" | "spec">): Promise<void> {
    return this.write("POST", this.collection, lease);
  }

  replace(lease: Pick<V1Lease, "metadata" | "spec">): Promise<void> {
    return this.write("PUT", `${this.collection}/${this.name}`, lease);
  }

  private write(method: "POST" | "PUT", path: string, lease: Pick<V1Lease, "metadata" | "spec">) {
    const body = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", ...lease };
    return this.requests.send({ method, path, body });
  }
}

export interface LeaderElectorOptions {
  cluster: ClusterAccess;
  namespace: string;
  name: string;
  /** Unique per replica (the Pod's name). */
  identity: string;
  /** How long a Lease not renewed keeps others off it; 15 s when omitted. */
  leaseDurationMs?: number;
  /** How often the leader renews; 5 s when omitted. */
  renewIntervalMs?: number;
  /** How often a follower tries to acquire, and a leader retries a failed renewal; 2 s. */
  retryIntervalMs?: number;
  /** The wall clock written into the Lease (tests skew it); Date.now when omitted. */
  clock?: () => number;
  logger: Logger;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/** What changes on every renewal: an unchanged record means its holder has not renewed. */
function recordOf(spec: V1LeaseSpec): string {
  return JSON.stringify([
    spec.holderIdentity,
    spec.renewTime === undefined ? undefined : String(spec.renewTime),
    spec.leaseDurationSeconds,
    spec.leaseTransitions,
  ]);
}

export class LeaderElector {
  private readonly options: Required<Omit<LeaderElectorOptions, "clock">>;
  private readonly clock: () => number;
  private readonly logger: Logger;
  private running = false;
  private leading = false;
  /** When the last successful renewal was sent, by the monotonic clock. */
  private renewedAt = 0;
  /** The other holder's record as last read, and when this replica first saw it so. */
  private observed: { record: string; at: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;

  constructor(options: LeaderElectorOptions) {
    this.options = {
      ...options,
      leaseDurationMs: options.leaseDurationMs ?? 15_000,
      renewIntervalMs: options.renewIntervalMs ?? 5_000,
      retryIntervalMs: options.retryIntervalMs ?? 2_000,
    };
    this.clock = options.clock ?? Date.now;
    const { leaseDurationMs, renewIntervalMs, retryIntervalMs } = this.options;
    if (renewIntervalMs + retryIntervalMs >= leaseDurationMs) {
      // The Lease would expire between two renewals, and a standby take it from a live leader.
      throw new RangeError(
        "renewIntervalMs + retryIntervalMs must be shorter than leaseDurationMs",
      );
    }
    this.logger = options.logger.child({
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = this.tick();
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Leading, and renewed recently enough that no other replica can have taken the Lease yet,
   * by this process's monotonic clock, which keeps counting while the process is paused
   * (SIGSTOP, a long GC, a frozen VM). A write is safe only while this holds; the renewal that
   * would notice the loss may not have run yet.
   */
  holdsLease(): boolean {
    const { leaseDurationMs, retryIntervalMs } = this.options;
    return this.leading && performance.now() < this.renewedAt + leaseDurationMs - retryIntervalMs;
  }

  /** Stops competing and, if this replica holds the Lease, releases it for a standby. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.attempt;
    this.stepDown();
    await this.release();
  }

  private async tick(): Promise<void> {
    const { leaseDurationMs, renewIntervalMs, retryIntervalMs } = this.options;
    const started = performance.now();
    let holds: boolean | undefined;
    try {
      holds = await this.acquireOrRenew(this.boundedApi());
    } catch (error) {
      // A 409 is another replica's write between our read and our write: routine.
      this.logger[statusOf(error) === 409 ? "debug" : "warn"](
        { err: error },
        this.leading ? "renewing the Lease failed" : "acquiring the Lease failed",
      );
    }
    if (!this.running) return;

    if (holds === true) {
      this.renewedAt = started;
      if (!this.leading) {
        this.leading = true;
        this.logger.info("acquired the Lease: leading");
        this.options.onStartedLeading();
      }
    } else if (this.leading) {
      if (holds === false) {
        this.logger.warn("another replica holds the Lease");
        this.stepDown();
      } else if (performance.now() + 2 * retryIntervalMs >= this.renewedAt + leaseDurationMs) {
        // Step down before the Lease expires, not after: a standby may take it the moment it
        // does. The next attempt starts a retry interval from now and may time out after another.
        this.logger.warn("could not renew the Lease before it expires");
        this.stepDown();
      }
    }
    const delay = holds === true ? renewIntervalMs : retryIntervalMs;
    this.timer = setTimeout(() => {
      this.attempt = this.tick();
    }, delay);
  }

  /** Takes or renews the Lease: true if this replica now holds it, false if another does. */
  private async acquireOrRenew(leases: Leases): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const nowMs = this.clock();
    const lease = await unlessNotFound(leases.read());
    if (!lease) {
      await leases.create({
        metadata: { name, namespace },
        spec: this.heldSpec(nowMs, undefined),
      });
      return true;
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity;
    if (holder && holder !== identity && !this.expired(spec)) return false;
    await leases.replace({ metadata: lease.metadata, spec: this.heldSpec(nowMs, spec) });
    return true;
  }

  /** True once another holder's record has not changed for its duration, as this replica saw it. */
  private expired(spec: V1LeaseSpec): boolean {
    const record = recordOf(spec);
    const now = performance.now();
    if (this.observed?.record !== record) this.observed = { record, at: now };
    return now >= this.observed.at + (spec.leaseDurationSeconds ?? 0) * 1000;
  }

  private heldSpec(nowMs: number, previous: V1LeaseSpec | undefined): V1LeaseSpec {
    // The model types these as Date; what is sent and read back is the string.
    const now = microTime(nowMs) as unknown as Date;
    const renewal = previous?.holderIdentity === this.options.identity;
    return {
      holderIdentity: this.options.identity,
      leaseDurationSeconds: Math.ceil(this.options.leaseDurationMs / 1000),
      acquireTime: renewal ? previous.acquireTime : now,
      renewTime: now,
      leaseTransitions:
        previous === undefined ? 0 : (previous.leaseTransitions ?? 0) + (renewal ? 0 : 1),
    };
  }

  /**
   * Stops leading now (the loops stop); the next attempt takes the Lease again if it is still
   * this replica's, a new term.
   */
  stepDown(why?: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.logger.info({ why }, "stopped leading");
    this.options.onStoppedLeading();
  }

  /**
   * A client whose requests all end within one retry interval from now (client-node sets no
   * timeout): a hung API server cannot keep a leader from stepping down in time.
   */
  private boundedApi(): Leases {
    const { cluster, namespace, name, retryIntervalMs } = this.options;
    const bounded = boundedAccess(cluster, { signal: AbortSignal.timeout(retryIntervalMs) });
    return new Leases(new JsonRequests(bounded), namespace, name);
  }

  /** Clears the holder so a standby acquires at its next try rather than after the duration. */
  private async release(): Promise<void> {
    const { identity } = this.options;
    const leases = this.boundedApi();
    try {
      const lease = await leases.read();
      if (lease.spec?.holderIdentity !== identity) return;
      const { acquireTime, leaseTransitions } = lease.spec;
      const spec = {
        leaseDurationSeconds: 1,
        renewTime: microTime(this.clock()) as unknown as Date,
        acquireTime,
        leaseTransitions,
      };
      await leases.replace({ metadata: lease.metadata, spec });
      this.logger.info("released the Lease");
    } catch (error) {
      // Not fatal: a Lease not released expires after its duration.
      this.logger.warn({ err: error }, "could not release the Lease");
    }
  }
}
