/**
 * The operator's own CA and its rotation, as pure decisions over a stored state.
 *
 * Rotation never leaves a client with a bundle that does not verify the server it talks to:
 *   1. at 2/3 of the active CA's life a `next` CA is made; bundles hold both, leaves still
 *      come from the active one;
 *   2. once `next` has been in the bundles for the overlap period (apps have re-read their CA
 *      file), it becomes active and leaves are reissued from it; the old one is `retired`;
 *   3. the retired CA leaves the bundles when every leaf comes from the active CA and the
 *      overlap has passed again (apps hold the new bundle), or when it expires.
 */
import { X509Certificate, createPrivateKey } from "node:crypto";
import { createCa, type KeyAndCertificate } from "../pki/certificates.ts";

export interface CaPolicy {
  caLifetimeMs: number;
  /** How long a new CA sits in the bundles before it signs, and the old one after. */
  overlapMs: number;
  commonName: string;
  /** notBefore lies this far before issuance; 5 minutes by default. */
  backdateMs?: number;
}

export interface CaState {
  active: KeyAndCertificate;
  next?: KeyAndCertificate;
  /** When `next` entered the bundles (ms since epoch). */
  nextSince?: number;
  retired?: KeyAndCertificate;
  /** When `retired` stopped signing. */
  retiredSince?: number;
}

export class CaCorruptError extends Error {
  override name = "CaCorruptError";
}

export const DAY_MS = 24 * 60 * 60 * 1000;

export const DEFAULT_CA_POLICY: CaPolicy = {
  caLifetimeMs: 3 * 365 * DAY_MS,
  overlapMs: 7 * DAY_MS,
  commonName: "nats-tenancy CA",
};

/** A certificate's validity window in ms since epoch. */
export function validity(pem: string): { notBefore: number; notAfter: number } {
  const cert = new X509Certificate(pem);
  return {
    notBefore: new Date(cert.validFrom).getTime(),
    notAfter: new Date(cert.validTo).getTime(),
  };
}

/** Renewal point: 2/3 of the way from notBefore to notAfter. */
export function renewalTime(pem: string): number {
  const { notBefore, notAfter } = validity(pem);
  return notBefore + ((notAfter - notBefore) * 2) / 3;
}

/** Checks a stored CA: parses, is a CA, and its key matches. Throws CaCorruptError saying what is wrong. */
export function checkCa(label: string, ca: KeyAndCertificate): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(ca.certificatePem);
  } catch (error) {
    throw new CaCorruptError(`${label}: the certificate is not valid PEM/X.509`, { cause: error });
  }
  if (!cert.ca) throw new CaCorruptError(`${label}: the certificate is not a CA certificate`);
  let key;
  try {
    key = createPrivateKey(ca.privateKeyPem);
  } catch (error) {
    throw new CaCorruptError(`${label}: the private key is not valid PEM`, { cause: error });
  }
  if (!cert.checkPrivateKey(key))
    throw new CaCorruptError(`${label}: the private key does not match the certificate`);
}

export function checkCaState(state: CaState): void {
  checkCa("active CA", state.active);
  if (state.next) checkCa("next CA", state.next);
  if (state.retired) checkCa("retired CA", state.retired);
}

/** Every CA a client must trust now, active first. */
export function caBundle(state: CaState): string {
  return [state.active, state.next, state.retired]
    .filter((ca): ca is KeyAndCertificate => ca !== undefined)
    .map((ca) => ca.certificatePem.trim())
    .join("\n")
    .concat("\n");
}

export interface CaStep {
  state: CaState;
  changed: boolean;
  /** What happened, for logs and events; never key material. */
  reason?: "created" | "next-created" | "promoted" | "retired-dropped";
}

/**
 * One step of the state machine. `leavesCurrent` is true when every leaf in use was issued by
 * the active CA. Call until `changed` is false.
 */
export async function stepCa(
  state: CaState | undefined,
  policy: CaPolicy,
  nowMs: number,
  leavesCurrent: boolean,
): Promise<CaStep> {
  const make = (): Promise<KeyAndCertificate> =>
    createCa({
      commonName: policy.commonName,
      lifetimeMs: policy.caLifetimeMs,
      now: new Date(nowMs),
    });
  if (!state) return { state: { active: await make() }, changed: true, reason: "created" };
  if (state.retired && state.retiredSince !== undefined) {
    const expired = validity(state.retired.certificatePem).notAfter <= nowMs;
    if (expired || (leavesCurrent && nowMs >= state.retiredSince + policy.overlapMs)) {
      const { retired: _r, retiredSince: _s, ...rest } = state;
      return { state: rest, changed: true, reason: "retired-dropped" };
    }
  }
  if (state.next && state.nextSince !== undefined) {
    const activeExpiring =
      validity(state.active.certificatePem).notAfter - policy.overlapMs / 2 <= nowMs;
    if (nowMs >= state.nextSince + policy.overlapMs || activeExpiring) {
      if (state.retired) return { state, changed: false };
      return {
        state: { active: state.next, retired: state.active, retiredSince: nowMs },
        changed: true,
        reason: "promoted",
      };
    }
    return { state, changed: false };
  }
  if (!state.next && nowMs >= renewalTime(state.active.certificatePem)) {
    return {
      state: { ...state, next: await make(), nextSince: nowMs },
      changed: true,
      reason: "next-created",
    };
  }
  return { state, changed: false };
}
