/**
 * What the platform team decides about pods credentials: how long a replaced user may keep
 * working after a rotation, how long users are valid (a default, and bounds an App's own
 * choice must keep within), and how old an account's signing key may grow. A user is renewed at
 * 2/3 of its lifetime (app-account.ts), so the shortest lifetime must leave apps the time to
 * pick up the new credentials.
 */

export interface CredentialPolicy {
  /** The longest a replaced pods user keeps working after a rotation. */
  rotationOverlapMs: number;
  lifetime: LifetimePolicy;
  /** An account's scoped signing key is replaced once this old; 0: only when asked. */
  signingKeyMaxAgeSeconds: number;
}

export interface LifetimePolicy {
  /** For Apps that ask for none; 0: users never expire. */
  defaultSeconds: number;
  minSeconds: number;
  /** 0: no bound, and Apps may ask for users that never expire. */
  maxSeconds: number;
}

/**
 * Ten minutes: a third of it, the time between renewal and expiry, still covers the kubelet's
 * refresh of a mounted Secret (about two minutes) with room to spare.
 */
const DEFAULT_LIFETIME_POLICY: LifetimePolicy = {
  defaultSeconds: 0,
  minSeconds: 600,
  maxSeconds: 0,
};

export const DEFAULT_CREDENTIAL_POLICY: CredentialPolicy = {
  // The kubelet refreshes a mounted Secret within about two minutes, and a rolling restart of
  // a large Deployment takes several more.
  rotationOverlapMs: 15 * 60_000,
  lifetime: DEFAULT_LIFETIME_POLICY,
  signingKeyMaxAgeSeconds: 0,
};

/** How a platform team sets each bound: the operator flag and the chart value. */
export const LIFETIME_SETTINGS = {
  defaultSeconds: {
    flag: "--credential-lifetime-seconds",
    value: "operator.credentials.lifetimeSeconds",
  },
  minSeconds: {
    flag: "--credential-lifetime-min-seconds",
    value: "operator.credentials.minLifetimeSeconds",
  },
  maxSeconds: {
    flag: "--credential-lifetime-max-seconds",
    value: "operator.credentials.maxLifetimeSeconds",
  },
} as const;

function bound(which: keyof typeof LIFETIME_SETTINGS, seconds: number): string {
  const { flag, value } = LIFETIME_SETTINGS[which];
  return `${String(seconds)} s (${flag}, chart value ${value})`;
}

/** Why `seconds` is not a lifetime the policy allows, or undefined. */
export function lifetimeIssue(policy: LifetimePolicy, seconds: number): string | undefined {
  if (seconds === 0)
    return policy.maxSeconds > 0
      ? `users that never expire are over the longest lifetime allowed, ${bound("maxSeconds", policy.maxSeconds)}`
      : undefined;
  if (seconds < policy.minSeconds)
    return `${String(seconds)} s is under the shortest lifetime allowed, ${bound("minSeconds", policy.minSeconds)}`;
  if (policy.maxSeconds > 0 && seconds > policy.maxSeconds)
    return `${String(seconds)} s is over the longest lifetime allowed, ${bound("maxSeconds", policy.maxSeconds)}`;
  return undefined;
}
