/**
 * Ceilings the platform team sets for every tenant: the most an App may ask for per
 * environment (each account limit), how many environments an App may have, how many Apps a
 * namespace may hold. The same checks refuse an App at admission and report one stored before
 * the ceiling was set (Degraded, OverCeiling), and each message names the ceiling as the
 * platform team set it, so the app team knows whom to ask.
 */
import type { LIMIT_RANGES } from "./spec.ts";
import { accountLimits, type AccountRequest } from "./spec.ts";

export type LimitName = keyof typeof LIMIT_RANGES;

export interface Ceilings {
  environmentsPerApp?: number;
  appsPerNamespace?: number;
  /** Per environment, the highest value of each limit; -1 (unlimited) is over any of them. */
  limits: Partial<Record<LimitName, number>>;
}

export const NO_CEILINGS: Ceilings = { limits: {} };

export function anyCeiling(ceilings: Ceilings): boolean {
  return (
    ceilings.environmentsPerApp !== undefined ||
    ceilings.appsPerNamespace !== undefined ||
    Object.keys(ceilings.limits).length > 0
  );
}

/** How a platform team sets a ceiling: the operator flag and the chart value. */
export interface CeilingName {
  flag: string;
  value: string;
}

export function ceilingName(
  ceiling: LimitName | "environmentsPerApp" | "appsPerNamespace",
): CeilingName {
  switch (ceiling) {
    case "environmentsPerApp":
      return { flag: "--max-environments-per-app", value: "ceilings.environmentsPerApp" };
    case "appsPerNamespace":
      return { flag: "--max-apps-per-namespace", value: "ceilings.appsPerNamespace" };
    default:
      return {
        flag: `--max-${ceiling.replace(".", "-")}`,
        value: `ceilings.${ceiling}`,
      };
  }
}

function apps(count: number): string {
  return `${String(count)} App${count === 1 ? "" : "s"}`;
}

function theCeiling(name: CeilingName, ceiling: number): string {
  return `the ceiling of ${String(ceiling)} (${name.flag}, chart value ${name.value})`;
}

function over(name: CeilingName, ceiling: number): string {
  return `over ${theCeiling(name, ceiling)}`;
}

/**
 * The effective value of each limit, defaults applied, as the account would get it (streams and
 * consumers are 0 there without JetStream, so their ceilings only bite with it on).
 */
function effectiveLimits(request: AccountRequest): Record<LimitName, number | undefined> {
  const limits = accountLimits(request);
  return {
    connections: limits.conn,
    payload: limits.payload,
    subscriptions: limits.subs,
    "jetstream.memory": limits.mem_storage,
    "jetstream.storage": limits.disk_storage,
    "jetstream.streams": limits.streams,
    "jetstream.consumers": limits.consumer,
  };
}

function asked(request: AccountRequest, name: LimitName): boolean {
  const [group, key] = name.split(".") as [string, string | undefined];
  if (key === undefined) return (request as Record<string, unknown>)[group] !== undefined;
  return (request.jetstream as Record<string, unknown> | undefined)?.[key] !== undefined;
}

/**
 * What in an App's spec is over a ceiling, as sentences naming the spec field and the ceiling;
 * empty when it fits. `request` undefined: NATS is off, nothing to limit.
 */
export function specOverCeilings(
  ceilings: Ceilings,
  environments: readonly string[],
  request: AccountRequest | undefined,
): string[] {
  const issues: string[] = [];
  const maxEnvironments = ceilings.environmentsPerApp;
  if (request && maxEnvironments !== undefined && environments.length > maxEnvironments)
    issues.push(
      `spec.environments has ${String(environments.length)}, ${over(ceilingName("environmentsPerApp"), maxEnvironments)}`,
    );
  if (!request) return issues;
  const effective = effectiveLimits(request);
  for (const [name, ceiling] of Object.entries(ceilings.limits) as [LimitName, number][]) {
    const value = effective[name];
    if (value === undefined || (value !== -1 && value <= ceiling)) continue;
    const shown = value === -1 ? "unlimited" : String(value);
    const source = asked(request, name) ? "" : " (the default)";
    issues.push(`spec.nats.${name} is ${shown}${source}, ${over(ceilingName(name), ceiling)}`);
  }
  return issues;
}

/** An App's place among its namespace's Apps for the per-namespace ceiling. */
export interface NamespaceMember {
  uid: string;
  name: string;
  creationTimestamp: string;
  /** It has accounts already: working, so it keeps its place before any newcomer. */
  hasAccounts: boolean;
}

/**
 * Why `uid` is over the Apps-per-namespace ceiling, or undefined. Apps that already have
 * accounts come first, then the rest by age, so a ceiling lowered below the Apps already working
 * never takes anything away, and among new ones the oldest win.
 */
export function namespaceOverCeiling(
  ceilings: Ceilings,
  members: readonly NamespaceMember[],
  uid: string,
): string | undefined {
  const ceiling = ceilings.appsPerNamespace;
  if (ceiling === undefined) return undefined;
  const ordered = [...members].sort(
    (a, b) =>
      Number(b.hasAccounts) - Number(a.hasAccounts) ||
      a.creationTimestamp.localeCompare(b.creationTimestamp) ||
      a.name.localeCompare(b.name),
  );
  const rank = ordered.findIndex((m) => m.uid === uid);
  const member = ordered[rank];
  if (!member || member.hasAccounts || rank < ceiling) return undefined;
  return `the namespace has ${apps(members.length)}, ${over(ceilingName("appsPerNamespace"), ceiling)}`;
}

/** At admission: why one more App does not fit in a namespace that holds `existing` already. */
export function namespaceFull(ceilings: Ceilings, existing: number): string | undefined {
  const ceiling = ceilings.appsPerNamespace;
  if (ceiling === undefined || existing < ceiling) return undefined;
  return `the namespace already has ${apps(existing)}, ${theCeiling(ceilingName("appsPerNamespace"), ceiling)}`;
}
