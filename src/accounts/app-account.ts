/**
 * One app x environment's account: its keys, its account JWT (issued by the operator's signing
 * key), and the user its pods connect as (issued by the account's scoped signing key).
 */
import { isDeepStrictEqual } from "node:util";
import type { Account, SigningKey, User } from "@nats-io/jwt";
import { formatCreds, type OperatorIdentity } from "./identities.ts";
import { decodeJwt, encodeJwt, keepOrIssue, nextIat, parseJwt, validity } from "./jwt.ts";
import { NKey } from "./nkey.ts";
import { NO_SHARING, sharedClaims, type Activation, type Withdrawal } from "./sharing.ts";
import { accountLimits, accountName, validateAccountSpec, type AccountSpec } from "./spec.ts";

/** What the key store keeps per account. Seeds: operator namespace only. */
export interface StoredAccount {
  accountSeed: string;
  signingSeed: string;
  userSeed: string;
  accountJwt: string;
  userJwt: string;
  /** The rotation request the pods user answers; absent until an App asks for one. */
  rotatedFor?: string;
  /** The pods user the current one replaced: it works until it is revoked. */
  retiring?: RetiringUser;
  /** The signing-key rotation request the signing key answers; absent until one is asked. */
  signingRotatedFor?: string;
  /** When the signing key was made (Unix seconds); absent for keys older than this field. */
  signingSince?: number;
  /** The activation tokens the account signed for the importers of its exports. */
  activations?: Activation[];
  /** The activations it signed and no longer does: revoked in its exports. */
  withdrawn?: Withdrawal[];
}

export interface RetiringUser {
  /** Its public key. */
  user: string;
  /** When it was replaced, ms since the epoch. */
  since: number;
  /** When its JWT expires (Unix seconds); absent: never. */
  expires?: number;
  /**
   * The signing key that issued it, when a new key replaced that one too: the key stays in the
   * account until the user retires, then leaves, and the servers refuse what it signed.
   */
  signingKey?: string;
}

/** What the App asks of the pods user's credentials. */
export interface CredentialsRequest {
  /**
   * The rotation asked for now (App annotations): a new pods user when it differs from the
   * one the current user answers. The first account of an environment answers it as it is.
   */
  rotation?: string;
  /** The retiring user's overlap is over: revoke it now. */
  retire?: boolean;
  /**
   * Seconds a pods user is valid, 0 for no expiry; absent: as long as the current one is. A
   * user issued for another lifetime is replaced, and one at 2/3 of its lifetime is renewed.
   */
  lifetimeSeconds?: number;
  /**
   * The signing-key rotation asked for now: a new signing key, and a new pods user signed by
   * it, when it differs from the one the current key answers.
   */
  signingKeyRotation?: string;
  /** A signing key this old (seconds) is replaced; 0 or absent: only when asked. */
  signingKeyMaxAgeSeconds?: number;
}

/** Why a new pods user replaced the previous one. */
export type RotationCause = "requested" | "renewal" | "lifetime" | "signing-key";

/** When a signing key made at `since` (Unix seconds) is replaced; undefined: never. */
export function signingKeyRotateAt(
  since: number | undefined,
  maxAgeSeconds: number,
): number | undefined {
  return since !== undefined && maxAgeSeconds > 0 ? since + maxAgeSeconds : undefined;
}

/** A user is renewed at 2/3 of its lifetime: the rest is the time apps have to pick it up. */
export function renewAt(validity: { iat: number; exp?: number }): number | undefined {
  if (validity.exp === undefined) return undefined;
  return validity.iat + Math.floor(((validity.exp - validity.iat) * 2) / 3);
}

function lifetimeOf(validity: { iat: number; exp?: number }): number {
  return validity.exp === undefined ? 0 : validity.exp - validity.iat;
}

export interface MintedAccount {
  stored: StoredAccount;
  publicKey: string;
  name: string;
  /** The user's .creds text, for the app's Secret. */
  creds: string;
  /** False when `stored` equals what was passed in: nothing to save or push. */
  changed: boolean;
  /** Set when a new pods user replaced the previous one, which now retires. */
  rotated: RotationCause | undefined;
  /** Users revoked by this mint. */
  revoked: string[];
}

/** Subjects of the system account's namespace stay out of reach even inside an app's account. */
const APP_USER_TEMPLATE: Partial<User> = {
  pub: { deny: ["$SYS.>"] },
  sub: { deny: ["$SYS.>"] },
  subs: -1,
  data: -1,
  payload: -1,
};

export const APP_USER_ROLE = "app";

/**
 * What an account's JWTs are made of besides its keys. mintAppAccount issues from these and
 * nothing else (the user's claims derive from the keys and the name), so JWTs that keep their
 * keys change exactly when the recipe does.
 */
function recipeOf(spec: AccountSpec, operator: Pick<OperatorIdentity, "signing">) {
  const sharing = spec.sharing ?? NO_SHARING;
  return {
    name: accountName(spec),
    limits: accountLimits(spec.limits, sharing),
    role: APP_USER_ROLE,
    template: APP_USER_TEMPLATE,
    issuer: operator.signing.publicKey,
    // Tokens aside: an importer's token changes only with its exporter's key, consent or
    // export, all here already (the import's account and exportSubject; the import itself,
    // present only with consent).
    ...(sharing.exports.length > 0 ? { exports: sharing.exports } : {}),
    ...(sharing.imports.length > 0
      ? { imports: sharing.imports.map(({ token: _token, ...grant }) => grant) }
      : {}),
  };
}

/**
 * The recipe as text, to be recorded beside what was issued from it: an equal recipe later
 * means minting again from the same keys would change nothing.
 */
export function accountRecipe(
  spec: AccountSpec,
  operator: Pick<OperatorIdentity, "signing">,
): string {
  return JSON.stringify(recipeOf(spec, operator));
}

/**
 * Validates `spec` (throws AccountSpecError, before anything is signed), then keeps every key
 * and JWT of `previous` that still matches and issues the rest. iat strictly increases.
 */
export function mintAppAccount(
  spec: AccountSpec,
  operator: OperatorIdentity,
  previous?: StoredAccount,
  nowMs = Date.now(),
  credentials: CredentialsRequest = {},
): MintedAccount {
  validateAccountSpec(spec);
  const nowSeconds = Math.floor(nowMs / 1000);
  const maxAge = credentials.signingKeyMaxAgeSeconds ?? 0;
  const account = previous
    ? NKey.fromSeed(previous.accountSeed, "account")
    : NKey.generate("account");
  const previousSigning = previous ? NKey.fromSeed(previous.signingSeed, "account") : undefined;
  const newKey = previous !== undefined && signingKeyDue(previous, credentials, maxAge, nowMs);
  const signing = previousSigning && !newKey ? previousSigning : NKey.generate("account");
  const current = previous ? validity(previous.userJwt) : undefined;
  const lifetime = credentials.lifetimeSeconds ?? (current ? lifetimeOf(current) : 0);
  // A new key signs a new user: the overlap then counts that user's connections alone.
  const rotated: RotationCause | undefined = newKey
    ? "signing-key"
    : current && rotationCause(current, credentials, previous?.rotatedFor, lifetime, nowMs);
  const rotate = rotated !== undefined;
  const previousUser = previous ? NKey.fromSeed(previous.userSeed, "user") : undefined;
  const user = previousUser && !rotate ? previousUser : NKey.generate("user");
  const recipe = recipeOf(spec, operator);
  const { name } = recipe;

  // A rotation during an overlap ends that overlap: two users in retirement would be one old
  // set of credentials too many.
  const revoke =
    previous?.retiring && (credentials.retire || rotate) ? previous.retiring : undefined;
  const revocations = { ...revocationsOf(previous) };
  // One that expired is refused without: the account JWT need not carry it for good. Nor one
  // whose signing key leaves: the servers refuse it, and close its connections.
  if (
    revoke &&
    revoke.signingKey === undefined &&
    !(revoke.expires !== undefined && revoke.expires * 1000 <= nowMs)
  )
    revocations[revoke.user] = nowSeconds;
  const retiring: RetiringUser | undefined =
    rotate && previousUser && current
      ? {
          user: previousUser.publicKey,
          since: nowMs,
          ...(current.exp !== undefined ? { expires: current.exp } : {}),
          ...(newKey && previousSigning ? { signingKey: previousSigning.publicKey } : {}),
        }
      : revoke
        ? undefined
        : previous?.retiring;
  // The retiring key keeps the very scope it had: a server closes the connections of users
  // whose signing key's scope changed.
  const scope = (key: string): SigningKey => ({
    kind: "user_scope",
    key,
    role: recipe.role,
    template: recipe.template,
  });
  const shared = sharedClaims(spec.sharing ?? NO_SHARING, account, previous, nowMs);
  const accountClaims: Partial<Account> = {
    limits: recipe.limits,
    signing_keys: [
      scope(signing.publicKey),
      ...(retiring?.signingKey ? [scope(retiring.signingKey)] : []),
    ],
    // Only when there are some: accounts that share nothing keep their JWTs.
    ...(shared.exports.length > 0 ? { exports: shared.exports } : {}),
    ...(shared.imports.length > 0 ? { imports: shared.imports } : {}),
    // Only once there is one: accounts issued before rotations existed keep their JWTs.
    ...(Object.keys(revocations).length > 0 ? { revocations } : {}),
  };
  const accountJwt = keepOrIssue(
    previous?.accountJwt,
    { name, sub: account.publicKey, type: "account", nats: accountClaims },
    operator.signing,
    nowMs,
  );
  // A scoped user carries no permissions or limits of its own: the scope's template applies.
  const userClaims: Partial<User> = { issuer_account: account.publicKey };
  const userJwt = keepOrIssue(
    previous?.userJwt,
    { name: `${name}/pods`, sub: user.publicKey, type: "user", nats: userClaims },
    signing,
    nowMs,
    lifetime,
  );

  // Any new user answers the rotation asked for, whatever made it.
  const rotatedFor =
    (!previous || rotate) && credentials.rotation !== undefined
      ? credentials.rotation
      : previous?.rotatedFor;
  const signingRotatedFor =
    (!previous || newKey) && credentials.signingKeyRotation !== undefined
      ? credentials.signingKeyRotation
      : previous?.signingRotatedFor;
  // A key older than the field gets its age counted from when a schedule first needs it.
  const signingSince =
    !previous || newKey
      ? nowSeconds
      : (previous.signingSince ?? (maxAge > 0 ? nowSeconds : undefined));
  const stored: StoredAccount = {
    accountSeed: account.seed,
    signingSeed: signing.seed,
    userSeed: user.seed,
    accountJwt,
    userJwt,
    ...(rotatedFor !== undefined ? { rotatedFor } : {}),
    ...(retiring ? { retiring } : {}),
    ...(signingRotatedFor !== undefined ? { signingRotatedFor } : {}),
    ...(signingSince !== undefined ? { signingSince } : {}),
    ...(shared.activations.length > 0 ? { activations: shared.activations } : {}),
    ...(shared.withdrawn.length > 0 ? { withdrawn: shared.withdrawn } : {}),
  };
  return {
    stored,
    publicKey: account.publicKey,
    name,
    creds: formatCreds(userJwt, user),
    changed:
      previous === undefined ||
      previous.accountJwt !== accountJwt ||
      previous.userJwt !== userJwt ||
      previous.rotatedFor !== rotatedFor ||
      previous.signingRotatedFor !== signingRotatedFor ||
      previous.signingSince !== signingSince ||
      !isDeepStrictEqual(previous.retiring, retiring) ||
      !isDeepStrictEqual(previous.activations, stored.activations) ||
      !isDeepStrictEqual(previous.withdrawn, stored.withdrawn),
    rotated,
    revoked: revoke ? [revoke.user] : [],
  };
}

function signingKeyDue(
  previous: StoredAccount,
  credentials: CredentialsRequest,
  maxAgeSeconds: number,
  nowMs: number,
): boolean {
  const asked = credentials.signingKeyRotation;
  if (asked !== undefined && asked !== previous.signingRotatedFor) return true;
  const due = signingKeyRotateAt(previous.signingSince, maxAgeSeconds);
  return due !== undefined && nowMs >= due * 1000;
}

function rotationCause(
  current: { iat: number; exp?: number },
  credentials: CredentialsRequest,
  answered: string | undefined,
  lifetime: number,
  nowMs: number,
): RotationCause | undefined {
  if (credentials.rotation !== undefined && credentials.rotation !== answered) return "requested";
  if (lifetimeOf(current) !== lifetime) return "lifetime";
  const renewal = renewAt(current);
  if (renewal !== undefined && nowMs >= renewal * 1000) return "renewal";
  return undefined;
}

/** The users an account's JWT revokes, by public key, with the time each was revoked. */
export function revocationsOf(
  stored: Pick<StoredAccount, "accountJwt"> | undefined,
): Record<string, number> {
  if (!stored) return {};
  return parseJwt<Account>(stored.accountJwt).nats.revocations ?? {};
}

/**
 * The account JWT that precedes a delete: no connections allowed. A server that missed the
 * delete and syncs from a peer gets this one back, not a working account.
 */
export function disabledAccountJwt(
  stored: Pick<StoredAccount, "accountJwt">,
  operator: Pick<OperatorIdentity, "signing">,
  nowMs = Date.now(),
): string {
  const claims = decodeJwt<Account & { type?: string; version?: number }>(stored.accountJwt);
  const { type: _type, version: _version, ...nats } = claims.nats;
  return encodeJwt(
    {
      name: claims.name,
      sub: claims.sub,
      type: "account",
      nats: { ...nats, limits: { ...nats.limits, conn: 0, leaf: 0 } },
    },
    operator.signing,
    nextIat(stored.accountJwt, nowMs),
  );
}
