/**
 * What an app asks for, validated, and the explicit account limits it becomes. The server reads
 * a missing limit as 0 (conn 0 refuses every connection), so every limit is always written.
 */
import type { OperatorLimits } from "@nats-io/jwt";
import type { Sharing } from "./sharing.ts";

export interface JetStreamRequest {
  /** Bytes of memory storage; 0 or absent: none. */
  memory?: number;
  /** Bytes of file storage; 0 or absent: none. */
  storage?: number;
  /** Maximum streams; -1 unlimited. */
  streams?: number;
  /** Maximum consumers; -1 unlimited. */
  consumers?: number;
}

export interface AccountRequest {
  connections?: number;
  /** Maximum message payload in bytes. */
  payload?: number;
  subscriptions?: number;
  jetstream?: JetStreamRequest;
}

export interface AccountSpec {
  namespace: string;
  app: string;
  environment: string;
  limits?: AccountRequest;
  /** Exports and imports with other accounts; absent: none. */
  sharing?: Sharing;
}

export interface ValidationIssue {
  path: string;
  message: string;
}

export class AccountSpecError extends Error {
  override name = "AccountSpecError";
  readonly issues: ValidationIssue[];

  constructor(issues: ValidationIssue[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join("; "));
    this.issues = issues;
  }
}

export const DEFAULT_LIMITS = {
  connections: 1000,
  payload: 1024 * 1024,
  subscriptions: 100_000,
} as const;

const MIB = 1024 * 1024;
const TIB = 1024 * 1024 * MIB;

/** Inclusive ranges; `unlimited` allows -1 as well. */
export const LIMIT_RANGES = {
  connections: { min: 1, max: 1_000_000, unlimited: true },
  // The servers are configured with max_payload 8MB, the most NATS recommends.
  payload: { min: 1, max: 8 * MIB, unlimited: false },
  subscriptions: { min: 1, max: 10_000_000, unlimited: true },
  "jetstream.memory": { min: 0, max: TIB, unlimited: false },
  "jetstream.storage": { min: 0, max: 1024 * TIB, unlimited: false },
  "jetstream.streams": { min: 0, max: 100_000, unlimited: true },
  "jetstream.consumers": { min: 0, max: 1_000_000, unlimited: true },
} as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkLabel(issues: ValidationIssue[], path: string, value: unknown): void {
  if (typeof value !== "string" || value.length === 0) {
    issues.push({ path, message: "is required" });
  } else if (value.length > 63 || !DNS_LABEL.test(value)) {
    issues.push({
      path,
      message: `"${value}" is not a DNS label (at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit)`,
    });
  }
}

function checkLimit(
  issues: ValidationIssue[],
  key: keyof typeof LIMIT_RANGES,
  value: unknown,
): void {
  if (value === undefined) return;
  const range = LIMIT_RANGES[key];
  const path = `limits.${key}`;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    issues.push({ path, message: "must be an integer" });
  } else if (!(range.unlimited && value === -1) && (value < range.min || value > range.max)) {
    issues.push({
      path,
      message: `${value} is out of range: ${range.min} to ${range.max}${range.unlimited ? ", or -1 for unlimited" : ""}`,
    });
  }
}

/** Throws AccountSpecError listing every problem at once. */
export function validateAccountSpec(spec: AccountSpec): void {
  const issues: ValidationIssue[] = [];
  checkLabel(issues, "namespace", spec.namespace);
  checkLabel(issues, "app", spec.app);
  checkLabel(issues, "environment", spec.environment);
  const limits = spec.limits ?? {};
  checkLimit(issues, "connections", limits.connections);
  checkLimit(issues, "payload", limits.payload);
  checkLimit(issues, "subscriptions", limits.subscriptions);
  const js = limits.jetstream ?? {};
  checkLimit(issues, "jetstream.memory", js.memory);
  checkLimit(issues, "jetstream.storage", js.storage);
  checkLimit(issues, "jetstream.streams", js.streams);
  checkLimit(issues, "jetstream.consumers", js.consumers);
  if (issues.length > 0) throw new AccountSpecError(issues);
}

/** The account's name on the servers: unique per (namespace, app, environment), since labels have no '/'. */
export function accountName(spec: Pick<AccountSpec, "namespace" | "app" | "environment">): string {
  return `${spec.namespace}/${spec.app}/${spec.environment}`;
}

/**
 * Every limit the server knows, set explicitly. JetStream is on when either store is non-zero.
 * An account may hold exactly the exports and imports it shares.
 */
export function accountLimits(
  request: AccountRequest | undefined,
  sharing?: Sharing,
): OperatorLimits {
  const js = request?.jetstream;
  const memory = js?.memory ?? 0;
  const storage = js?.storage ?? 0;
  const jetstream = memory !== 0 || storage !== 0;
  return {
    subs: request?.subscriptions ?? DEFAULT_LIMITS.subscriptions,
    data: -1,
    payload: request?.payload ?? DEFAULT_LIMITS.payload,
    imports: sharing?.imports.length ?? 0,
    exports: sharing?.exports.length ?? 0,
    wildcards: true,
    conn: request?.connections ?? DEFAULT_LIMITS.connections,
    leaf: 0,
    mem_storage: memory,
    disk_storage: storage,
    streams: jetstream ? (js?.streams ?? -1) : 0,
    consumer: jetstream ? (js?.consumers ?? -1) : 0,
    mem_max_stream_bytes: 0,
    disk_max_stream_bytes: 0,
    max_bytes_required: false,
    max_ack_pending: -1,
  };
}

/**
 * The request an account's limits came from (accountLimits' inverse): what keeps an account
 * exactly as it is when its App's spec cannot be applied.
 */
export function requestFromLimits(limits: OperatorLimits): AccountRequest {
  const memory = limits.mem_storage ?? 0;
  const storage = limits.disk_storage ?? 0;
  const request: AccountRequest = {
    connections: limits.conn ?? DEFAULT_LIMITS.connections,
    payload: limits.payload ?? DEFAULT_LIMITS.payload,
    subscriptions: limits.subs ?? DEFAULT_LIMITS.subscriptions,
  };
  if (memory === 0 && storage === 0) return request;
  return {
    ...request,
    jetstream: {
      memory,
      storage,
      streams: limits.streams ?? -1,
      consumers: limits.consumer ?? -1,
    },
  };
}

/** Limits for the system account: unlimited, and no JetStream of its own. */
export const SYSTEM_ACCOUNT_LIMITS: OperatorLimits = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: 0,
  disk_storage: 0,
  streams: 0,
  consumer: 0,
};
