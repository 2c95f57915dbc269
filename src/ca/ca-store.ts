/**
 * The CA's state in the key store (a Secret in the operator's namespace). A CA that cannot be
 * read is reported and left alone: replacing it would break every client's trust.
 */
import type { SecretStore } from "../accounts/key-store.ts";
import type { KeyAndCertificate } from "../pki/certificates.ts";
import {
  CaCorruptError,
  checkCaState,
  stepCa,
  type CaPolicy,
  type CaState,
  type CaStep,
} from "./authority.ts";

export const CA_ENTRY = "nats-tenancy-ca";

function encode(state: CaState): Record<string, string> {
  const data: Record<string, string> = {
    "active.crt": state.active.certificatePem,
    "active.key": state.active.privateKeyPem,
  };
  if (state.next) {
    data["next.crt"] = state.next.certificatePem;
    data["next.key"] = state.next.privateKeyPem;
    data.nextSince = String(state.nextSince ?? 0);
  }
  if (state.retired) {
    data["retired.crt"] = state.retired.certificatePem;
    data["retired.key"] = state.retired.privateKeyPem;
    data.retiredSince = String(state.retiredSince ?? 0);
  }
  return data;
}

function pair(data: Record<string, string>, role: string): KeyAndCertificate | undefined {
  const certificatePem = data[`${role}.crt`];
  const privateKeyPem = data[`${role}.key`];
  if (certificatePem === undefined && privateKeyPem === undefined) return undefined;
  if (!certificatePem || !privateKeyPem) {
    throw new CaCorruptError(`${CA_ENTRY}: ${role}.crt and ${role}.key must both be present`);
  }
  return { certificatePem, privateKeyPem };
}

export function decodeCaState(data: Record<string, string>): CaState {
  const active = pair(data, "active");
  if (!active) throw new CaCorruptError(`${CA_ENTRY}: active.crt and active.key are missing`);
  const state: CaState = { active };
  const next = pair(data, "next");
  if (next) {
    state.next = next;
    state.nextSince = Number(data.nextSince ?? 0);
  }
  const retired = pair(data, "retired");
  if (retired) {
    state.retired = retired;
    state.retiredSince = Number(data.retiredSince ?? 0);
  }
  checkCaState(state);
  return state;
}

export const REGENERATE_HINT =
  `to start over with a new CA, delete the Secret ${CA_ENTRY} and the NATS config Secret in ` +
  "the operator's namespace; every NATS client must then get the new CA bundle (restart the app pods)";

/**
 * Loads the CA (creating it on first start; a concurrent creator wins and is read back), runs
 * the rotation state machine to rest and saves what changed. Returns the steps taken.
 */
export async function ensureCa(
  store: SecretStore,
  policy: CaPolicy,
  nowMs: number,
  leavesCurrent: boolean | ((state: CaState) => boolean),
  /** May refuse a creation by throwing: a new CA where one existed breaks every client's TLS. */
  beforeCreate?: () => Promise<void>,
): Promise<{ state: CaState; steps: CaStep["reason"][] }> {
  // Asked of each state the rotation passes through: a promotion makes every leaf stale.
  const current = (state: CaState | undefined): boolean =>
    typeof leavesCurrent === "boolean"
      ? leavesCurrent
      : state !== undefined && leavesCurrent(state);
  let data = await store.get(CA_ENTRY);
  if (!data) {
    await beforeCreate?.();
    const first = await stepCa(undefined, policy, nowMs, current(undefined));
    if (await store.create(CA_ENTRY, encode(first.state)))
      return { state: first.state, steps: [first.reason] };
    data = await store.get(CA_ENTRY);
    if (!data) throw new CaCorruptError(`${CA_ENTRY} was created concurrently and then vanished`);
  }
  let state: CaState;
  try {
    state = decodeCaState(data);
  } catch (error) {
    if (error instanceof CaCorruptError) {
      throw new CaCorruptError(
        `${error.message}; it is not replaced automatically: ${REGENERATE_HINT}`,
        { cause: error },
      );
    }
    throw error;
  }
  const steps: CaStep["reason"][] = [];
  for (let i = 0; i < 4; i++) {
    const step = await stepCa(state, policy, nowMs, current(state));
    if (!step.changed) break;
    state = step.state;
    steps.push(step.reason);
  }
  if (steps.length > 0) await store.put(CA_ENTRY, encode(state));
  return { state, steps };
}
