/**
 * Exports and imports between app accounts, as the account JWTs carry them, enforced by the
 * servers: every export is private (an import needs an activation token the exporting account
 * signed for the importing one), and a consumer whose consent was withdrawn is revoked, so a
 * stale importer JWT pushed again cannot bring its flow back.
 */
import type { Account, Export, Import } from "@nats-io/jwt";
import { keepOrIssue, parseJwt } from "./jwt.ts";
import type { NKey } from "./nkey.ts";
import { overlap } from "./subjects.ts";

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

/**
 * Activations an account no longer signs: a token for `subject` it issued to `account` up to
 * `at` (Unix seconds) is revoked by every export that subject could reach. Kept for good: an
 * export that goes and comes back, or changes its subject, must not revive an old token.
 */
export interface Withdrawal {
  subject: string;
  account: string;
  at: number;
}

export interface SharedClaims {
  exports: Export[];
  imports: Import[];
  activations: Activation[];
  withdrawn: Withdrawal[];
}

function byText<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

const pair = (a: { subject: string; account: string }) => `${a.subject} ${a.account}`;

/**
 * The export and import claims of an account and the activations it signs, keeping every
 * token of `previous` that still says the same. Each activation it no longer signs is
 * withdrawn at `nowMs`, and revoked in every export its subject overlaps except for the
 * accounts that export consents to: the servers check a token against whichever export covers
 * the imported subject, so a revocation on one export alone could be stepped around.
 */
export function sharedClaims(
  sharing: Sharing,
  account: NKey,
  previous: { activations?: Activation[]; withdrawn?: Withdrawal[] } | undefined,
  nowMs: number,
): SharedClaims {
  const held = previous?.activations ?? [];
  const activations: Activation[] = [];
  const grants = [...sharing.exports].sort(byText((e) => e.subject));
  for (const { subject, type, consumers } of grants) {
    for (const consumer of [...new Set(consumers)].sort()) {
      const kept = held.find((a) => a.subject === subject && a.account === consumer);
      const token = keepOrIssue(
        kept?.token,
        { name: subject, sub: consumer, type: "activation", nats: { subject, kind: type } },
        account,
        nowMs,
      );
      activations.push({ subject, account: consumer, token });
    }
  }
  const signed = new Set(activations.map(pair));
  const withdrawn = new Map((previous?.withdrawn ?? []).map((w) => [pair(w), w]));
  for (const gone of held)
    if (!signed.has(pair(gone)))
      withdrawn.set(pair(gone), {
        subject: gone.subject,
        account: gone.account,
        at: Math.floor(nowMs / 1000),
      });
  const exports = grants.map(({ subject, type, consumers }): Export => {
    const revocations: Record<string, number> = {};
    for (const w of withdrawn.values())
      if (overlap(w.subject, subject) && !consumers.includes(w.account))
        revocations[w.account] = Math.max(revocations[w.account] ?? 0, w.at);
    return {
      name: subject,
      subject,
      type,
      token_req: true,
      // One reply per request, as request-reply needs, and no stream of them.
      ...(type === "service" ? { response_type: "Singleton" as const } : {}),
      ...(Object.keys(revocations).length > 0 ? { revocations } : {}),
    };
  });
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
  return {
    exports,
    imports,
    activations,
    withdrawn: [...withdrawn.values()].sort(byText(pair)),
  };
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
