/**
 * The operator and the system account: the trust root the servers are configured with, and the
 * account through which the operator pushes, deletes and lists account JWTs.
 *
 * Accounts are issued by the operator's signing key, so the identity key signs only the
 * operator JWT and can stay cold.
 */
import { fmtCreds, type Account, type KeyPair, type Operator, type User } from "@nats-io/jwt";
import { STATSZ_SUBJECT } from "../nats/server-discovery.ts";
import { SERVER_RELOAD_PUBLISH } from "../nats/server-reload.ts";
import { VARZ_SUBJECT } from "../nats/server-trust.ts";
import { keepOrIssue, parseJwt } from "./jwt.ts";
import { NKey } from "./nkey.ts";
import { SYSTEM_ACCOUNT_LIMITS } from "./spec.ts";

export interface OperatorSeeds {
  operatorSeed: string;
  operatorSigningSeed: string;
  systemAccountSeed: string;
  systemUserSeed: string;
}

/**
 * A rotation of the operator's signing key, as the operator entry keeps it: a new key is
 * trusted by every server before it signs, and the old one stays trusted until nothing it
 * signed is left (see operator-key-rotation.ts).
 */
export interface OperatorKeyState {
  /** The key the servers are being made to trust, before it signs. */
  nextSigningSeed?: string;
  /** Public key of the key that signed before the current one; trusted until it retires. */
  retiringSigningKey?: string;
  /** The retired key, until every server runs an operator JWT without it. */
  droppedSigningKey?: string;
  /** The rotation request the keys answer; absent until one is asked. */
  signingRotatedFor?: string;
  /** When the current key started signing (Unix seconds); absent for the first key. */
  signingSince?: number;
}

export type OperatorEntry = OperatorSeeds & OperatorKeyState;

export interface OperatorIdentity {
  name: string;
  operator: NKey;
  /** Signs accounts. */
  signing: NKey;
  /** Trusted, not signing yet. */
  nextSigning?: NKey;
  /** Trusted, no longer signing. */
  retiringSigning?: string;
  systemAccount: NKey;
  systemUser: NKey;
}

/**
 * The operator JWT's signing keys. Sorted, so that promoting the next key (which changes which
 * key signs, not which keys are trusted) leaves the operator JWT as it is: servers load a new
 * operator JWT only by a restart.
 */
export function trustedSigningKeys(
  identity: Pick<OperatorIdentity, "signing" | "nextSigning" | "retiringSigning">,
): string[] {
  return [identity.signing.publicKey, identity.nextSigning?.publicKey, identity.retiringSigning]
    .filter((key): key is string => key !== undefined)
    .sort();
}

/** What the servers are configured with, and the operator's own credentials. */
export interface OperatorArtifacts {
  operatorJwt: string;
  systemAccountJwt: string;
  systemUserCreds: string;
}

/** Subjects the operator's system user may publish to: the resolver's API and account purge. */
export const SYSTEM_USER_PUBLISH = [
  "$SYS.REQ.CLAIMS.UPDATE",
  "$SYS.REQ.CLAIMS.DELETE",
  "$SYS.REQ.CLAIMS.LIST",
  "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP",
  "$JS.API.ACCOUNT.PURGE.*",
  // Whether a replaced pods user still has connections, before it is revoked.
  "$SYS.REQ.ACCOUNT.*.CONNZ",
  // Certificate renewals reach the servers by a reload the operator asks for.
  ...SERVER_RELOAD_PUBLISH,
  // Which operator JWT each server runs: a new signing key waits until all trust it.
  VARZ_SUBJECT,
];

/** Replies, and the STATSZ by which a server's return is noticed. */
export const SYSTEM_USER_SUBSCRIBE = ["_INBOX.>", STATSZ_SUBJECT];

export function generateOperatorSeeds(): OperatorSeeds {
  return {
    operatorSeed: NKey.generate("operator").seed,
    operatorSigningSeed: NKey.generate("operator").seed,
    systemAccountSeed: NKey.generate("account").seed,
    systemUserSeed: NKey.generate("user").seed,
  };
}

export function loadOperatorIdentity(name: string, seeds: OperatorEntry): OperatorIdentity {
  return {
    name,
    operator: NKey.fromSeed(seeds.operatorSeed, "operator"),
    signing: NKey.fromSeed(seeds.operatorSigningSeed, "operator"),
    ...(seeds.nextSigningSeed
      ? { nextSigning: NKey.fromSeed(seeds.nextSigningSeed, "operator") }
      : {}),
    ...(seeds.retiringSigningKey ? { retiringSigning: seeds.retiringSigningKey } : {}),
    systemAccount: NKey.fromSeed(seeds.systemAccountSeed, "account"),
    systemUser: NKey.fromSeed(seeds.systemUserSeed, "user"),
  };
}

/** The signing keys an operator JWT lists. */
export function trustedSigningKeysOf(operatorJwt: string): string[] {
  // An operator's signing keys are plain public keys (scopes are for accounts').
  return (parseJwt<Partial<Operator>>(operatorJwt).nats.signing_keys ?? []).map((key) =>
    typeof key === "string" ? key : key.key,
  );
}

/**
 * Issues what changed and returns the rest as given. The same seeds and `previous` give back
 * `previous` unchanged, so a restart re-signs nothing.
 */
export function buildOperatorArtifacts(
  identity: OperatorIdentity,
  previous: Partial<OperatorArtifacts> = {},
  nowMs = Date.now(),
): OperatorArtifacts {
  const operatorClaims: Partial<Operator> = {
    signing_keys: trustedSigningKeys(identity),
    system_account: identity.systemAccount.publicKey,
  };
  const operatorJwt = keepOrIssue(
    previous.operatorJwt,
    {
      name: identity.name,
      sub: identity.operator.publicKey,
      type: "operator",
      nats: operatorClaims,
    },
    identity.operator,
    nowMs,
  );
  const systemClaims: Partial<Account> = { limits: SYSTEM_ACCOUNT_LIMITS };
  const systemAccountJwt = keepOrIssue(
    previous.systemAccountJwt,
    { name: "SYS", sub: identity.systemAccount.publicKey, type: "account", nats: systemClaims },
    identity.signing,
    nowMs,
  );
  const userClaims: Partial<User> = {
    pub: { allow: SYSTEM_USER_PUBLISH },
    sub: { allow: SYSTEM_USER_SUBSCRIBE },
    subs: -1,
    data: -1,
    payload: -1,
  };
  const systemUserJwt = keepOrIssue(
    previous.systemUserCreds ? credsJwt(previous.systemUserCreds) : undefined,
    {
      name: "nats-tenancy-operator",
      sub: identity.systemUser.publicKey,
      type: "user",
      nats: userClaims,
    },
    identity.systemAccount,
    nowMs,
  );
  return {
    operatorJwt,
    systemAccountJwt,
    systemUserCreds: formatCreds(systemUserJwt, identity.systemUser),
  };
}

/** .creds text: LF line endings and a final newline, which both credsAuthenticators require. */
export function formatCreds(userJwt: string, user: NKey): string {
  // fmtCreds reads only getSeed() of the key pair it is given.
  return new TextDecoder().decode(fmtCreds(userJwt, user as unknown as KeyPair));
}

/** The user JWT inside a .creds text. */
export function credsJwt(creds: string): string | undefined {
  return /-----BEGIN NATS USER JWT-----\n([^\n]+)\n/.exec(creds)?.[1];
}
