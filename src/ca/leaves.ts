/**
 * Leaf certificates the operator issues from its CA: the NATS servers' client and route
 * certificates and the webhook's serving certificate. A leaf is reissued when it is missing,
 * was signed by another CA than the active one, names other hosts than asked, or has passed
 * 2/3 of its life.
 */
import { X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { issueLeaf, type KeyAndCertificate } from "../pki/certificates.ts";
import { renewalTime, validity, type CaState } from "./authority.ts";

export interface LeafSpec {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  server: boolean;
  client: boolean;
  lifetimeMs: number;
  backdateMs?: number;
}

export interface NatsNames {
  /** Client Service name, e.g. "nats". */
  service: string;
  /** Headless Service behind the StatefulSet, e.g. "nats-headless". */
  headlessService: string;
  statefulSet: string;
  namespace: string;
  replicas: number;
  clusterDomain: string;
  /** Adds localhost and 127.0.0.1 (port-forwards, local runs, tests). */
  loopback?: boolean;
  /**
   * Host names and addresses clients outside the cluster connect to (the chart's
   * nats.expose.names): the client certificate names them too, so those clients verify the
   * servers with the same CA bundle.
   */
  external?: string[];
}

function serviceNames(service: string, namespace: string, clusterDomain: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.${clusterDomain}`,
  ];
}

function podNames(names: NatsNames): string[] {
  return Array.from({ length: names.replicas }, (_, i) => `${names.statefulSet}-${i}`).flatMap(
    (pod) => [
      `${pod}.${names.headlessService}.${names.namespace}.svc`,
      `${pod}.${names.headlessService}.${names.namespace}.svc.${names.clusterDomain}`,
    ],
  );
}

const loopbackDns = (on: boolean | undefined): string[] => (on ? ["localhost"] : []);
const loopbackIps = (on: boolean | undefined): string[] => (on ? ["127.0.0.1"] : []);

/** What clients connect to: the Service by every name, each pod directly, and from outside. */
export function natsServerLeaf(names: NatsNames, lifetimeMs: number): LeafSpec {
  const external = names.external ?? [];
  return {
    commonName: `${names.service}.${names.namespace}.svc`,
    dnsNames: [
      ...serviceNames(names.service, names.namespace, names.clusterDomain),
      ...podNames(names),
      ...loopbackDns(names.loopback),
      ...external.filter((name) => isIP(name) === 0),
    ],
    ipAddresses: [...loopbackIps(names.loopback), ...external.filter((name) => isIP(name) !== 0)],
    server: true,
    client: false,
    lifetimeMs,
  };
}

/** Routes verify both ends, so the route certificate serves and authenticates. */
export function natsRouteLeaf(names: NatsNames, lifetimeMs: number): LeafSpec {
  return {
    commonName: `${names.headlessService}.${names.namespace}.svc`,
    dnsNames: [...podNames(names), ...loopbackDns(names.loopback)],
    ipAddresses: loopbackIps(names.loopback),
    server: true,
    client: true,
    lifetimeMs,
  };
}

export function webhookLeaf(
  service: string,
  namespace: string,
  lifetimeMs: number,
  loopback = false,
): LeafSpec {
  return {
    commonName: `${service}.${namespace}.svc`,
    dnsNames: [
      `${service}.${namespace}.svc`,
      `${service}.${namespace}.svc.cluster.local`,
      ...loopbackDns(loopback),
    ],
    ipAddresses: loopbackIps(loopback),
    server: true,
    client: false,
    lifetimeMs,
  };
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

/** One spelling per address: a certificate prints IPv6 in full and in capitals. */
function canonicalIp(ip: string): string {
  return isIP(ip) === 6 ? new URL(`http://[${ip}]`).hostname.slice(1, -1) : ip;
}

function sansOf(cert: X509Certificate): { dns: string[]; ip: string[] } {
  const entries = (cert.subjectAltName ?? "").split(", ").filter((e) => e !== "");
  return {
    dns: entries.filter((e) => e.startsWith("DNS:")).map((e) => e.slice(4)),
    ip: entries.filter((e) => e.startsWith("IP Address:")).map((e) => canonicalIp(e.slice(11))),
  };
}

/** True when `leaf` was signed by the active CA (what a rotation waits for before retiring). */
export function issuedByActive(leaf: KeyAndCertificate | undefined, state: CaState): boolean {
  if (!leaf) return false;
  try {
    const cert = new X509Certificate(leaf.certificatePem);
    const active = new X509Certificate(state.active.certificatePem);
    return cert.checkIssued(active) && cert.verify(active.publicKey);
  } catch {
    return false;
  }
}

/** Why `leaf` must be reissued, or undefined if it is fine. */
export function reissueReason(
  leaf: KeyAndCertificate | undefined,
  spec: LeafSpec,
  state: CaState,
  nowMs: number,
): string | undefined {
  if (!leaf) return "missing";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(leaf.certificatePem);
  } catch {
    return "unreadable";
  }
  if (!issuedByActive(leaf, state)) return "issued by another CA";
  const sans = sansOf(cert);
  if (!sameSet(sans.dns, spec.dnsNames) || !sameSet(sans.ip, spec.ipAddresses.map(canonicalIp)))
    return "names changed";
  if (nowMs >= renewalTime(leaf.certificatePem)) return "due for renewal";
  return undefined;
}

export async function ensureLeaf(
  leaf: KeyAndCertificate | undefined,
  spec: LeafSpec,
  state: CaState,
  nowMs: number,
): Promise<{ leaf: KeyAndCertificate; reason?: string }> {
  const reason = reissueReason(leaf, spec, state, nowMs);
  if (leaf && !reason) return { leaf };
  // A leaf never outlives the CA that signed it: past that its chain no longer verifies.
  const lifetimeMs = Math.min(
    spec.lifetimeMs,
    validity(state.active.certificatePem).notAfter - nowMs,
  );
  const issued = await issueLeaf(state.active, { ...spec, lifetimeMs, now: new Date(nowMs) });
  return reason ? { leaf: issued, reason } : { leaf: issued };
}
