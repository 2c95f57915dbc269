/**
 * The Events an App's owner sees when its accounts or credentials change: one per kind of
 * change and reconcile, naming the environments (`envs`).
 */
export const ACCOUNT_EVENTS = {
  created: {
    reason: "AccountCreated",
    type: "Normal",
    message: (envs: string, many: boolean) =>
      `NATS account${many ? "s" : ""} of ${envs} created on the NATS servers`,
  },
  updated: {
    reason: "AccountUpdated",
    type: "Normal",
    message: (envs: string, many: boolean) =>
      `NATS account${many ? "s" : ""} of ${envs} updated on the NATS servers`,
  },
  deleted: {
    reason: "AccountDeleted",
    type: "Normal",
    message: (envs: string, many: boolean) =>
      `NATS account${many ? "s" : ""} of ${envs} deleted on the NATS servers; ${many ? "their Secrets are" : "its Secret is"} removed`,
  },
  rotated: {
    reason: "CredentialsRotated",
    type: "Normal",
    message: (envs: string) =>
      `new credentials for ${envs} are in the Secret; the old ones keep working until no connection uses them (see status.environments[].rotation)`,
  },
  signingKeyRotated: {
    reason: "SigningKeyRotated",
    type: "Normal",
    message: (envs: string) =>
      `new signing key for ${envs}, and new credentials signed by it in the Secret; the old key and the credentials it signed keep working until no connection uses them (see status.environments[].signingKey)`,
  },
  renewed: {
    reason: "CredentialsRenewed",
    type: "Normal",
    message: (envs: string) =>
      `credentials of ${envs} renewed before they expire; the old ones keep working until no connection uses them`,
  },
  unused: {
    reason: "CredentialsRevoked",
    type: "Normal",
    message: (envs: string) =>
      `replaced credentials of ${envs} revoked on the NATS servers: no connection used them any more`,
  },
  "overlap-ended": {
    reason: "CredentialsRevoked",
    type: "Warning",
    message: (envs: string) =>
      `replaced credentials of ${envs} revoked on the NATS servers at the end of the longest overlap allowed; connections still using them were closed`,
  },
} as const satisfies Record<
  string,
  { reason: string; type: string; message: (envs: string, many: boolean) => string }
>;

export type AccountEvent = keyof typeof ACCOUNT_EVENTS;
