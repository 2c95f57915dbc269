/**
 * What an environment's credentials ask of a reconcile: whether its status shows them settled
 * (so the fast path may keep them), when the App must be looked at again for them (an overlap,
 * a renewal, a signing key's age), and what to ask the mint for (the rotations the annotations
 * request, the lifetime, and whether the replaced user's overlap is over).
 */
import {
  signingKeyRotateAt,
  type CredentialsRequest,
  type StoredAccount,
} from "../../accounts/app-account.ts";
import type { CredentialPolicy } from "../../accounts/credential-policy.ts";
import { parseJwt } from "../../accounts/jwt.ts";
import {
  retireReason,
  type ConnectionCount,
  type RetireReason,
} from "../../accounts/retirement.ts";
import {
  ROTATE_SIGNING_KEY_ANNOTATION,
  rotationRequest,
} from "../../contract/credential-rotation.ts";
import type { EnvironmentStatus } from "../../crds/app.ts";

/** How often an environment whose old credentials still overlap asks whether they are in use. */
export const OVERLAP_RECHECK_MS = 5_000;

/** The rotations an App's annotations ask of one environment. */
export interface RotationsAsked {
  rotation: string | undefined;
  signingKey: string | undefined;
}

export function rotationsAsked(
  annotations: Record<string, string> | undefined,
  environment: string,
): RotationsAsked {
  return {
    rotation: rotationRequest(annotations, environment),
    signingKey: rotationRequest(annotations, environment, ROTATE_SIGNING_KEY_ANNOTATION),
  };
}

/**
 * Nothing to do about the environment's credentials: no old user overlaps, the rotations asked
 * for, if any, are the ones its status says were answered, the credentials are not due for
 * renewal, and the signing key's schedule is the policy's and not yet due.
 */
export function credentialsSettled(
  before: EnvironmentStatus | undefined,
  asked: RotationsAsked,
  lifetimeSeconds: number,
  signingKeyMaxAgeSeconds: number,
  nowMs: number,
): boolean {
  if (before?.rotation?.state === "Overlapping") return false;
  if (asked.rotation !== undefined && before?.rotation?.requested !== asked.rotation) return false;
  const held = before?.credentials;
  if ((held?.lifetimeSeconds ?? 0) !== lifetimeSeconds) return false;
  if (held && nowMs >= Date.parse(held.renewAt)) return false;
  const key = before?.signingKey;
  if (asked.signingKey !== undefined && key?.requested !== asked.signingKey) return false;
  if (signingKeyMaxAgeSeconds === 0) return key?.rotateAt === undefined;
  if (!key?.since || !key.rotateAt) return false;
  const rotateAt = Date.parse(key.rotateAt);
  const policy = signingKeyRotateAt(Date.parse(key.since) / 1000, signingKeyMaxAgeSeconds);
  return policy !== undefined && rotateAt === policy * 1000 && nowMs < rotateAt;
}

/** When the environment must be looked at again for its credentials, and why. */
export function credentialWaits(
  environment: EnvironmentStatus,
  nowMs: number,
): { ms: number; why: string }[] {
  const { name, rotation, credentials, signingKey } = environment;
  const waits: { ms: number; why: string }[] = [];
  if (rotation?.state === "Overlapping")
    waits.push({
      ms: Math.min(OVERLAP_RECHECK_MS, Date.parse(rotation.revokeBy ?? "") - nowMs),
      why: `${name}: replaced credentials still overlap`,
    });
  if (credentials)
    waits.push({
      ms: Date.parse(credentials.renewAt) - nowMs,
      why: `${name}: credentials renewed at ${credentials.renewAt}`,
    });
  if (signingKey?.rotateAt)
    waits.push({
      ms: Date.parse(signingKey.rotateAt) - nowMs,
      why: `${name}: signing key replaced at ${signingKey.rotateAt}`,
    });
  return waits;
}

/**
 * What to ask the mint for, and why the replaced user's overlap is over, if it is.
 * `lifetimeSeconds` undefined: as long as the current user's (an App on hold).
 */
export async function credentialsRequest(
  previous: StoredAccount | undefined,
  asked: RotationsAsked,
  lifetimeSeconds: number | undefined,
  options: { policy: CredentialPolicy; nowMs: number; connections: ConnectionCount },
): Promise<{ request: CredentialsRequest; retired: RetireReason | undefined }> {
  const retired = previous?.retiring
    ? await retireReason(previous.retiring, parseJwt(previous.accountJwt).sub, {
        nowMs: options.nowMs,
        overlapMs: options.policy.rotationOverlapMs,
        connections: options.connections,
      })
    : undefined;
  return {
    request: {
      ...(asked.rotation !== undefined ? { rotation: asked.rotation } : {}),
      ...(asked.signingKey !== undefined ? { signingKeyRotation: asked.signingKey } : {}),
      signingKeyMaxAgeSeconds: options.policy.signingKeyMaxAgeSeconds,
      retire: retired !== undefined,
      ...(lifetimeSeconds !== undefined ? { lifetimeSeconds } : {}),
    },
    retired,
  };
}
