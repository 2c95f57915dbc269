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
import { keepOrIssue } from "./jwt.ts";
import { NKey } from "./nkey.ts";
import { SYSTEM_ACCOUNT_LIMITS } from "./spec.ts";

export interface OperatorSeeds {
  operatorSeed: string;
  operatorSigningSeed: string;
  systemAccountSeed: string;
  systemUserSeed: string;
}

export interface OperatorIdentity {
  name: string;
  operator: NKey;
  signing: NKey;
  systemAccount: NKey;
  systemUser: NKey;
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

export function loadOperatorIdentity(name: string, seeds: OperatorSeeds): OperatorIdentity {
  return {
    name,
    operator: NKey.fromSeed(seeds.operatorSeed, "operator"),
    signing: NKey.fromSeed(seeds.operatorSigningSeed, "operator"),
    systemAccount: NKey.fromSeed(seeds.systemAccountSeed, "account"),
    systemUser: NKey.fromSeed(seeds.systemUserSeed, "user"),
  };
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
    signing_keys: [identity.signing.publicKey],
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
