/**
 * Exports and imports between app accounts, as the account JWTs carry them, enforced by the
 * servers: every export is private (an import needs an activation token the exporting account
 * signed for the importing one), and a consumer whose consent was withdrawn is revoked in the
 * export, so a stale importer JWT pushed again cannot bring its flow back.
 */
import type { Account, Export, Import } from "@nats-io/jwt";
import { keepOrIssue, parseJwt } from "./jwt.ts";
import type { NKey } from "./nkey.ts";

export type ShareType = "stream" | "service";

/** An export, with the accounts its owner consents to. */
export interface ExportGrant {
  subject: string;
  type: ShareType;
  /** Public keys of the accounts that may import it. */
  consumers: string[];
}

/** An import whose exporter consented, with the activation that exporter signed. */
export interface ImportGrant {
  /** The subject imported, within the export's. */
  subject: string;
  type: ShareType;
  /** Where it appears in the importing account; absent: under the same subject. */
  localSubject?: string;
  /** The exporting account's public key. */
  account: string;
  /** The export's subject, which the token is signed for. */
  exportSubject: string;
  /** The activation token the exporting account signed for the importing one. */
  token: string;
}

/** What an account shares: part of what its JWT is made from. */
export interface Sharing {
  exports: ExportGrant[];
  imports: ImportGrant[];
}

export const NO_SHARING: Sharing = { exports: [], imports: [] };

/** An activation token an exporting account signed, kept to revoke it when consent ends. */
export interface Activation {
  /** The export's subject. */
  subject: string;
  /** The importing account. */
  account: string;
  token: string;
}

export interface SharedClaims {
  exports: Export[];
  imports: Import[];
  activations: Activation[];
}

function byText<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

/**
 * The export and import claims of an account and the activations it signs, keeping every
 * token of `previous` that still says the same, and revoking (at `nowMs`) each account that
 * held an activation of an export and holds none any more. A consumer consented again loses
 * its revocation: its consent is back.
 */
export function sharedClaims(
  sharing: Sharing,
  account: NKey,
  previous: { accountJwt: string; activations?: Activation[] } | undefined,
  nowMs: number,
): SharedClaims {
  const before = previous ? (parseJwt<Account>(previous.accountJwt).nats.exports ?? []) : [];
  const held = previous?.activations ?? [];
  const activations: Activation[] = [];
  const exports: Export[] = [];
  for (const grant of [...sharing.exports].sort(byText((e) => e.subject))) {
    const { subject, type } = grant;
    const consumers = [...new Set(grant.consumers)].sort();
    for (const consumer of consumers) {
      const kept = held.find((a) => a.subject === subject && a.account === consumer);
      const token = keepOrIssue(
        kept?.token,
        { name: subject, sub: consumer, type: "activation", nats: { subject, kind: type } },
        account,
        nowMs,
      );
      activations.push({ subject, account: consumer, token });
    }
    const revoked = before.find((e) => e.subject === subject && e.type === type)?.revocations;
    const revocations = new Map(
      Object.entries(revoked ?? {}).filter(([key]) => !consumers.includes(key)),
    );
    for (const gone of held)
      if (
        gone.subject === subject &&
        !consumers.includes(gone.account) &&
        !revocations.has(gone.account)
      )
        revocations.set(gone.account, Math.floor(nowMs / 1000));
    exports.push({
      name: subject,
      subject,
      type,
      token_req: true,
      // One reply per request, as request-reply needs, and no stream of them.
      ...(type === "service" ? { response_type: "Singleton" as const } : {}),
      ...(revocations.size > 0 ? { revocations: Object.fromEntries(revocations) } : {}),
    });
  }
  const imports = [...sharing.imports]
    .sort(byText((i) => `${i.account} ${i.subject}`))
    .map((grant): Import => ({
      name: grant.subject,
      subject: grant.subject,
      account: grant.account,
      token: grant.token,
      type: grant.type,
      ...(grant.localSubject !== undefined ? { local_subject: grant.localSubject } : {}),
    }));
  return { exports, imports, activations };
}

/**
 * What an account shares as its JWT says (sharedClaims' inverse): what keeps the account as
 * it is when its App's spec cannot be applied.
 */
export function sharingOf(stored: { accountJwt: string; activations?: Activation[] }): Sharing {
  const claims = parseJwt<Account>(stored.accountJwt).nats;
  const held = stored.activations ?? [];
  return {
    exports: (claims.exports ?? []).map((e) => ({
      subject: e.subject,
      type: e.type,
      consumers: held.filter((a) => a.subject === e.subject).map((a) => a.account),
    })),
    imports: (claims.imports ?? []).map((i) => ({
      subject: i.subject,
      type: i.type,
      ...(i.local_subject !== undefined ? { localSubject: i.local_subject } : {}),
      account: i.account,
      exportSubject:
        (i.token ? parseJwt<{ subject: string }>(i.token).nats.subject : undefined) ?? i.subject,
      token: i.token ?? "",
    })),
  };
}
