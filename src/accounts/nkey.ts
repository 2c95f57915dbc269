/**
 * NATS nkeys backed by node:crypto Ed25519 KeyObjects.
 *
 * @nats-io/nkeys (tweetnacl) re-derives the key pair from the seed on every sign() and
 * getPublicKey(), tens of milliseconds per JWT. The encoding (base32 with role prefix and CRC)
 * stays nkeys'; only the curve arithmetic moves to OpenSSL. Ed25519 is deterministic, so the
 * signatures are byte-identical to the ones nkeys makes.
 */
import {
  type KeyObject,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
} from "node:crypto";
import { Prefix } from "@nats-io/nkeys";
// The codec is not re-exported by the package's entry point, but it is the one nkeys uses.
import { Codec } from "@nats-io/nkeys/lib/codec.js";

export type KeyRole = "operator" | "account" | "user";

const PREFIX: Record<KeyRole, Prefix> = {
  operator: Prefix.Operator,
  account: Prefix.Account,
  user: Prefix.User,
};
const ROLE_LETTER: Record<KeyRole, string> = { operator: "O", account: "A", user: "U" };

export class NKeyError extends Error {
  override name = "NKeyError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

export class NKey {
  readonly role: KeyRole;
  readonly publicKey: string;
  readonly #seed: string;
  readonly #private: KeyObject;

  private constructor(role: KeyRole, seed: string, publicKey: string, privateKey: KeyObject) {
    this.role = role;
    this.#seed = seed;
    this.publicKey = publicKey;
    this.#private = privateKey;
  }

  static generate(role: KeyRole): NKey {
    const { privateKey } = generateKeyPairSync("ed25519");
    const jwk = privateKey.export({ format: "jwk" });
    if (!jwk.d || !jwk.x) throw new NKeyError("node:crypto returned an Ed25519 JWK without d or x");
    const raw = Buffer.from(jwk.d, "base64url");
    const rawPublic = Buffer.from(jwk.x, "base64url");
    const seed = decoder.decode(Codec.encodeSeed(PREFIX[role], raw));
    const publicKey = decoder.decode(Codec.encode(PREFIX[role], rawPublic));
    return new NKey(role, seed, publicKey, privateKey);
  }

  /** Parses a seed ("SO…", "SA…", "SU…"); throws NKeyError if it is not a valid seed of `role`. */
  static fromSeed(seed: string, role: KeyRole): NKey {
    let decoded: { prefix: Prefix; buf: Uint8Array };
    try {
      decoded = Codec.decodeSeed(encoder.encode(seed));
    } catch (error) {
      throw new NKeyError(`not a valid nkey seed`, { cause: error });
    }
    if (decoded.prefix !== PREFIX[role]) {
      throw new NKeyError(`seed is not an ${role} seed`);
    }
    // PKCS#8 import derives the public half once; the JWK form needs it up front.
    const pkcs8 = Buffer.concat([
      Buffer.from("302e020100300506032b657004220420", "hex"),
      decoded.buf,
    ]);
    const derived = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
    const x = derived.export({ format: "jwk" }).x;
    if (!x) throw new NKeyError("node:crypto returned an Ed25519 JWK without x");
    const publicKey = decoder.decode(Codec.encode(PREFIX[role], Buffer.from(x, "base64url")));
    return new NKey(role, seed, publicKey, derived);
  }

  /** The seed, for the key store only. Never log it. */
  get seed(): string {
    return this.#seed;
  }

  sign(data: Uint8Array): Uint8Array {
    return sign(null, data, this.#private);
  }

  /** The nkeys KeyPair shape that @nats-io/jwt expects of a signer. */
  getPublicKey(): string {
    return this.publicKey;
  }

  getSeed(): Uint8Array {
    return encoder.encode(this.#seed);
  }

  toJSON(): string {
    // A key that reaches JSON.stringify (a log line, a status) shows only its public half.
    return this.publicKey;
  }
}

const publicKeyCache = new Map<string, KeyObject>();

/** Verifies an Ed25519 signature by an nkey public key ("O…", "A…", "U…"). */
export function verifySignature(
  publicKey: string,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  let key = publicKeyCache.get(publicKey);
  if (!key) {
    const letter = publicKey[0] ?? "";
    const role = (Object.keys(ROLE_LETTER) as KeyRole[]).find((r) => ROLE_LETTER[r] === letter);
    if (!role) return false;
    let raw: Uint8Array;
    try {
      raw = Codec.decode(PREFIX[role], encoder.encode(publicKey));
    } catch {
      return false;
    }
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64url(raw) }, format: "jwk" });
    if (publicKeyCache.size > 10_000) publicKeyCache.clear();
    publicKeyCache.set(publicKey, key);
  }
  return verify(null, data, key, signature);
}

export function isPublicKey(value: string, role: KeyRole): boolean {
  if (value[0] !== ROLE_LETTER[role]) return false;
  try {
    Codec.decode(PREFIX[role], encoder.encode(value));
    return true;
  } catch {
    return false;
  }
}
