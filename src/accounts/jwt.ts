/**
 * NATS v2 JWT encoding with a caller-chosen `iat`.
 *
 * @nats-io/jwt's encode() stamps `iat` from the clock, but servers that sync resolver stores
 * keep the JWT with the higher `iat` (whole seconds), so each account's `iat` must strictly
 * increase, even for two updates in one second. The layout (claim order, jti as base64 of the
 * SHA-512 of the claims) is the library's, so a JWT made here equals the library's for the same
 * clock (a unit test holds the two side by side).
 */
import { createHash } from "node:crypto";
import type { ClaimsData } from "@nats-io/jwt";
import { verifySignature, type NKey } from "./nkey.ts";

export type ClaimType = "operator" | "account" | "user" | "generic" | "activation";

export interface ClaimsInput<T> {
  name: string;
  sub: string;
  type: ClaimType;
  nats: T;
  exp?: number;
}

export class JwtError extends Error {
  override name = "JwtError";
}

const HEADER = Buffer.from(JSON.stringify({ typ: "JWT", alg: "ed25519-nkey" })).toString(
  "base64url",
);
const encoder = new TextEncoder();

/**
 * JWTs this process signed lately. Their signatures hold by construction, so decodeJwt does not
 * check them again: a push checks every JWT it sends, and an Ed25519 verify costs three signs
 * (about 10% of the operator's CPU in a burst of new accounts). Pushes follow their mint within
 * one reconcile, so a short memory is enough: the oldest of the last 1024 makes room.
 */
const signedHere = new Set<string>();
const lastSigned: (string | undefined)[] = new Array<string | undefined>(1024);
let nextSlot = 0;

function remember(jwt: string): string {
  const oldest = lastSigned[nextSlot];
  if (oldest !== undefined) signedHere.delete(oldest);
  lastSigned[nextSlot] = jwt;
  nextSlot = (nextSlot + 1) % lastSigned.length;
  signedHere.add(jwt);
  return jwt;
}

export function encodeJwt<T extends object>(
  input: ClaimsInput<T>,
  signer: NKey,
  iat: number,
): string {
  const claims: Record<string, unknown> = {};
  if (input.exp !== undefined) claims.exp = input.exp;
  claims.aud = "NATS";
  claims.name = input.name;
  claims.sub = input.sub;
  claims.nats = { ...input.nats, type: input.type, version: 2 };
  claims.iss = signer.publicKey;
  claims.iat = iat;
  claims.jti = createHash("sha512").update(JSON.stringify(claims)).digest("base64");
  const payload = `${HEADER}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return remember(
    `${payload}.${Buffer.from(signer.sign(encoder.encode(payload))).toString("base64url")}`,
  );
}

/**
 * Parses a JWT without checking its signature: for JWTs this operator issued and stored
 * itself, compared only to decide whether to reissue. Anything sent out goes through decodeJwt.
 */
export function parseJwt<T = unknown>(jwt: string): ClaimsData<T> {
  const body = jwt.split(".")[1];
  if (body === undefined) throw new JwtError("not a JWT");
  try {
    return JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as ClaimsData<T>;
  } catch (error) {
    throw new JwtError("JWT claims are not JSON", { cause: error });
  }
}

/** Parses a JWT and checks its signature against its `iss`. Does not check who `iss` is. */
export function decodeJwt<T = unknown>(jwt: string): ClaimsData<T> {
  const parts = jwt.split(".");
  if (parts.length !== 3) throw new JwtError(`a JWT has 3 parts, this has ${parts.length}`);
  const [header, body, signature] = parts as [string, string, string];
  let parsedHeader: { alg?: unknown };
  let claims: ClaimsData<T>;
  try {
    parsedHeader = JSON.parse(Buffer.from(header, "base64url").toString("utf8")) as {
      alg?: unknown;
    };
    claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as ClaimsData<T>;
  } catch (error) {
    throw new JwtError("JWT header or claims are not JSON", { cause: error });
  }
  if (parsedHeader.alg !== "ed25519-nkey")
    throw new JwtError(`unsupported JWT algorithm ${String(parsedHeader.alg)}`);
  if (typeof claims.iss !== "string" || typeof claims.sub !== "string")
    throw new JwtError("JWT without iss or sub");
  if (
    !signedHere.has(jwt) &&
    !verifySignature(
      claims.iss,
      encoder.encode(`${header}.${body}`),
      Buffer.from(signature, "base64url"),
    )
  ) {
    throw new JwtError("JWT signature does not verify");
  }
  return claims;
}

/**
 * True when `jwt` already says what `input` would, issued by `issuer`: ignoring iat, jti and
 * the type/version stamps.
 */
function sameClaims<T extends object>(jwt: string, input: ClaimsInput<T>, issuer: string): boolean {
  try {
    const claims = parseJwt<Record<string, unknown>>(jwt);
    const { type: _type, version: _version, ...nats } = claims.nats;
    return (
      claims.name === input.name &&
      claims.sub === input.sub &&
      claims.iss === issuer &&
      JSON.stringify(nats) === JSON.stringify(input.nats)
    );
  } catch {
    return false;
  }
}

/** Strictly after `previousJwt`'s iat, and not before now. */
export function nextIat(previousJwt: string | undefined, nowMs: number): number {
  let previous = 0;
  if (previousJwt) {
    try {
      previous = parseJwt(previousJwt).iat;
    } catch {
      // Unreadable: anything from now on is later.
    }
  }
  return Math.max(Math.floor(nowMs / 1000), previous + 1);
}

/**
 * `previous` if it already carries these claims from this signer, else a new JWT whose iat
 * follows it: the same inputs re-sign nothing, a change always moves iat forward. A new JWT
 * expires `lifetimeSeconds` after its iat (0: never).
 */
export function keepOrIssue<T extends object>(
  previous: string | undefined,
  input: ClaimsInput<T>,
  signer: NKey,
  nowMs: number,
  lifetimeSeconds = 0,
): string {
  if (previous && sameClaims(previous, input, signer.publicKey)) return previous;
  const iat = nextIat(previous, nowMs);
  return encodeJwt(
    lifetimeSeconds > 0 ? { ...input, exp: iat + lifetimeSeconds } : input,
    signer,
    iat,
  );
}

/** A JWT's validity: when issued and, if it expires, when (Unix seconds). */
export function validity(jwt: string): { iat: number; exp?: number } {
  const { iat, exp } = parseJwt(jwt);
  return exp === undefined ? { iat } : { iat, exp };
}
