/**
 * X.509 building blocks on @peculiar/x509 and WebCrypto: ECDSA P-256 keys, a self-signed CA,
 * and leaf certificates signed by it. PEM in, PEM out, so callers store plain text. Reading
 * certificates needs no library (node:crypto's X509Certificate does it).
 */
import { KeyObject, webcrypto } from "node:crypto";
import type * as X509 from "@peculiar/x509";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

let library: Promise<typeof X509> | undefined;

/**
 * @peculiar/x509, loaded when a certificate is first made: with its dependencies about 6 MiB
 * resident, which an operator whose certificates are all current never needs (issue 16).
 */
function loadX509(): Promise<typeof X509> {
  library ??= (async () => {
    // It resolves its services through tsyringe, which needs this polyfill first.
    await import("reflect-metadata");
    const loaded = await import("@peculiar/x509");
    loaded.cryptoProvider.set(
      webcrypto as unknown as Parameters<typeof loaded.cryptoProvider.set>[0],
    );
    return loaded;
  })();
  return library;
}

/** PEM as this module has always written it: no newline after the END line. */
function pemOf(key: CryptoKey, type: "pkcs8" | "spki"): string {
  return (KeyObject.from(key).export({ type, format: "pem" }) as string).trimEnd();
}

const EC_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", hash: "SHA-256" } as const;
// Clocks of the machines that verify a new certificate may lag ours.
const BACKDATE_MS = 5 * 60 * 1000;

export interface KeyAndCertificate {
  certificatePem: string;
  privateKeyPem: string;
}

export interface CaParams {
  commonName: string;
  lifetimeMs: number;
  now?: Date;
  /** How far notBefore lies before `now` (clock skew of verifiers); 5 minutes by default. */
  backdateMs?: number;
}

export interface LeafParams {
  commonName: string;
  organization?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  server?: boolean;
  client?: boolean;
  lifetimeMs: number;
  now?: Date;
  backdateMs?: number;
}

async function generateKeyPair(): Promise<CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ["sign", "verify"]);
}

async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  const der = (await loadX509()).PemConverter.decode(pem)[0];
  if (!der) throw new Error("no PEM block in private key");
  return webcrypto.subtle.importKey("pkcs8", der, EC_ALGORITHM, true, ["sign"]);
}

function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  // First byte 0x01-0x7f: a positive INTEGER whose DER encoding is 16 bytes with no padding,
  // so strict parsers (Go's, in nats-server) never meet a non-minimal encoding.
  bytes[0] = ((bytes[0] ?? 0) % 0x7f) + 1;
  return Buffer.from(bytes).toString("hex");
}

function validity(
  now: Date | undefined,
  lifetimeMs: number,
  backdateMs = BACKDATE_MS,
): { notBefore: Date; notAfter: Date } {
  const start = now ?? new Date();
  // Renewal is due at 2/3 of notBefore..notAfter: a backdate of minutes on a certificate that
  // lives minutes would make it due at once, so it is at most a tenth of the lifetime.
  const backdate = Math.min(backdateMs, lifetimeMs / 10);
  return {
    notBefore: new Date(start.getTime() - backdate),
    notAfter: new Date(start.getTime() + lifetimeMs),
  };
}

function escapeDnValue(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}

export async function createCa(params: CaParams): Promise<KeyAndCertificate> {
  const x509 = await loadX509();
  const keys = await generateKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${escapeDnValue(params.commonName)}`,
    ...validity(params.now, params.lifetimeMs, params.backdateMs),
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certificatePem: cert.toString("pem"),
    privateKeyPem: pemOf(keys.privateKey, "pkcs8"),
  };
}

export async function issueLeaf(
  ca: KeyAndCertificate,
  params: LeafParams,
): Promise<KeyAndCertificate> {
  const x509 = await loadX509();
  const caCert = new x509.X509Certificate(ca.certificatePem);
  const caKey = await importPrivateKeyPem(ca.privateKeyPem);
  const keys = await generateKeyPair();
  const usages: string[] = [];
  if (params.server ?? true) usages.push(x509.ExtendedKeyUsage.serverAuth);
  if (params.client) usages.push(x509.ExtendedKeyUsage.clientAuth);
  const names: X509.JsonGeneralName[] = [
    ...(params.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(params.ipAddresses ?? []).map((value) => ({ type: "ip" as const, value })),
  ];
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(usages, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const subject = [
    params.organization ? `O=${escapeDnValue(params.organization)}` : undefined,
    `CN=${escapeDnValue(params.commonName)}`,
  ]
    .filter((part) => part !== undefined)
    .join(", ");
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject,
    issuer: caCert.subject,
    ...validity(params.now, params.lifetimeMs, params.backdateMs),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return {
    certificatePem: cert.toString("pem"),
    privateKeyPem: pemOf(keys.privateKey, "pkcs8"),
  };
}

/** A fresh P-256 key pair as PEM (PKCS#8 private, SPKI public), e.g. for service-account tokens. */
export async function generateSigningKeyPem(): Promise<{
  privateKeyPem: string;
  publicKeyPem: string;
}> {
  const keys = await generateKeyPair();
  return {
    privateKeyPem: pemOf(keys.privateKey, "pkcs8"),
    publicKeyPem: pemOf(keys.publicKey, "spki"),
  };
}
