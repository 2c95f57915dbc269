/**
 * An App's status from what the reconciler found: per-environment results and two conditions,
 * Ready and Degraded, each with reason, message and the generation they describe. A condition
 * keeps its lastTransitionTime while its status stays the same, so an unchanged world gives an
 * identical status and nothing is written.
 */
import { isDeepStrictEqual } from "node:util";
import { renewAt, signingKeyRotateAt, type StoredAccount } from "../../accounts/app-account.ts";
import { parseJwt, validity } from "../../accounts/jwt.ts";
import { revokeBy } from "../../accounts/retirement.ts";
import type {
  AppStatus,
  Condition,
  CredentialsStatus,
  EnvironmentStatus,
  RotationStatus,
  SigningKeyStatus,
} from "../../crds/app.ts";

export interface StatusInput {
  generation: number;
  environments: EnvironmentStatus[];
  /** Servers running a full resolver, to say which accounts some of them still lack. */
  expectedServers?: number;
  /** Set when something stopped the App from being fully reconciled. */
  problem?: { reason: string; message: string };
  /** Set when something is wrong that leaves the App Ready (an import that does not flow). */
  notice?: { reason: string; message: string };
  /** Set when NATS is turned off for the App. */
  disabled?: boolean;
}

function condition(
  previous: Condition[] | undefined,
  type: string,
  status: "True" | "False",
  reason: string,
  message: string,
  generation: number,
  nowIso: string,
): Condition {
  const before = previous?.find((c) => c.type === type);
  return {
    type,
    status,
    reason,
    message,
    observedGeneration: generation,
    lastTransitionTime: before && before.status === status ? before.lastTransitionTime : nowIso,
  };
}

export function appStatus(
  previous: AppStatus | undefined,
  outcome: StatusInput,
  nowMs: number,
): AppStatus {
  const now = isoSeconds(nowMs);
  const ready = outcome.environments.filter((e) => e.ready).length;
  const total = outcome.environments.length;
  const allReady = !outcome.problem && ready === total;
  const readyReason = outcome.problem
    ? outcome.problem.reason
    : outcome.disabled
      ? "NatsDisabled"
      : "AccountsReady";
  const readyMessage = outcome.problem
    ? outcome.problem.message
    : outcome.disabled
      ? "NATS is off for this app: it has no accounts"
      : `${ready} of ${total} environment${total === 1 ? "" : "s"} ready${partialNote(outcome)}`;
  const conditions = previous?.conditions;
  const degraded = outcome.problem ?? outcome.notice;
  return {
    observedGeneration: outcome.generation,
    conditions: [
      condition(
        conditions,
        "Ready",
        allReady ? "True" : "False",
        readyReason,
        readyMessage,
        outcome.generation,
        now,
      ),
      condition(
        conditions,
        "Degraded",
        degraded ? "True" : "False",
        degraded ? degraded.reason : "AsExpected",
        degraded ? degraded.message : "nothing is wrong",
        outcome.generation,
        now,
      ),
    ],
    environments: outcome.environments,
  };
}

/** RFC 3339 in whole seconds, as Kubernetes writes times. */
function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
}

/**
 * The state of the environment's last rotation: overlapping while a replaced user works on,
 * done once it is revoked; undefined when none was ever asked for and no renewal overlaps.
 */
export function rotationStatus(
  stored: StoredAccount,
  overlapMs: number,
): RotationStatus | undefined {
  const { retiring, rotatedFor } = stored;
  const requested = rotatedFor !== undefined ? { requested: rotatedFor } : {};
  if (!retiring) return rotatedFor !== undefined ? { ...requested, state: "Done" } : undefined;
  return {
    ...requested,
    state: "Overlapping",
    oldUser: retiring.user,
    since: isoSeconds(retiring.since),
    revokeBy: isoSeconds(revokeBy(retiring, overlapMs)),
  };
}

/**
 * The account's signing key, when there is something to say about it: a rotation of it was
 * asked for, a schedule replaces it, or the key it replaced still overlaps.
 */
export function signingKeyStatus(
  stored: StoredAccount,
  maxAgeSeconds: number,
): SigningKeyStatus | undefined {
  const { signingRotatedFor, signingSince, retiring } = stored;
  const rotateAt = signingKeyRotateAt(signingSince, maxAgeSeconds);
  if (signingRotatedFor === undefined && rotateAt === undefined && !retiring?.signingKey)
    return undefined;
  return {
    // The current user's issuer: the key itself stays in the operator's namespace.
    key: parseJwt(stored.userJwt).iss,
    ...(signingRotatedFor !== undefined ? { requested: signingRotatedFor } : {}),
    ...(signingSince !== undefined ? { since: isoSeconds(signingSince * 1000) } : {}),
    ...(rotateAt !== undefined ? { rotateAt: isoSeconds(rotateAt * 1000) } : {}),
    ...(retiring?.signingKey ? { oldKey: retiring.signingKey } : {}),
  };
}

/** When the pods user expires and is renewed; undefined when it never expires. */
export function credentialsStatus(stored: StoredAccount): CredentialsStatus | undefined {
  const user = validity(stored.userJwt);
  const renewal = renewAt(user);
  if (user.exp === undefined || renewal === undefined) return undefined;
  return {
    lifetimeSeconds: user.exp - user.iat,
    expires: isoSeconds(user.exp * 1000),
    renewAt: isoSeconds(renewal * 1000),
  };
}

/** Ready, but not every server acknowledged the account yet. */
export function lacksServers(environment: EnvironmentStatus, expectedServers: number): boolean {
  return (
    environment.ready && environment.servers !== undefined && environment.servers < expectedServers
  );
}

/** Which ready environments only some of the servers acknowledged, said in passing. */
function partialNote({ environments, expectedServers }: StatusInput): string {
  if (expectedServers === undefined) return "";
  const partial = environments.filter((e) => lacksServers(e, expectedServers));
  if (partial.length === 0) return "";
  const held = partial.map((e) => `${e.name} on ${String(e.servers)}`).join(", ");
  return `; ${held} of ${String(expectedServers)} NATS servers so far (the others get it when they return)`;
}

export function sameStatus(a: AppStatus | undefined, b: AppStatus): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? {})), JSON.parse(JSON.stringify(b)));
}

export function degradedReason(status: AppStatus | undefined): string | undefined {
  const degraded = status?.conditions?.find((c) => c.type === "Degraded");
  return degraded?.status === "True" ? degraded.reason : undefined;
}
