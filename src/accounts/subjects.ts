/**
 * NATS subjects as apps share them: their syntax, and the two relations consent rests on (one
 * subject covering another, two subjects reaching a common subject).
 */

/** Dot-separated tokens; `*` is a whole token, `>` a whole last token. ASCII white space only,
 * as the CRD's pattern (RE2) reads it. */
const TOKEN = /^[^ \t\r\n\f\v.*>]+$/;

/** Subject spaces the servers and clients own: never exported. */
export const RESERVED_PREFIXES = ["$SYS", "$JS", "_INBOX"] as const;

export const MAX_SUBJECT_LENGTH = 256;

/** Why `subject` is not a valid subject (wildcards allowed); undefined when it is. */
export function subjectIssue(subject: string): string | undefined {
  if (subject.length === 0) return "must not be empty";
  if (subject.length > MAX_SUBJECT_LENGTH)
    return `must be at most ${String(MAX_SUBJECT_LENGTH)} characters`;
  const tokens = subject.split(".");
  for (const [i, token] of tokens.entries()) {
    if (token === "*") continue;
    if (token === ">") {
      if (i !== tokens.length - 1) return "may have '>' only as its last token";
      continue;
    }
    if (!TOKEN.test(token))
      return "must be tokens separated by '.', each non-empty, without spaces, '*' or '>' inside a token";
  }
  return undefined;
}

/**
 * Why `subject` may not be exported: it could reach a subject of the servers' own spaces (a
 * first token that is a wildcard reaches them all).
 */
export function exportIssue(subject: string): string | undefined {
  const first = subject.split(".")[0] ?? "";
  if (first === "*" || first === ">") return "must start with a literal token";
  if ((RESERVED_PREFIXES as readonly string[]).includes(first))
    return `must not be in ${RESERVED_PREFIXES.join(", ")}`;
  return undefined;
}

/** True when every subject `inner` matches, `outer` matches too. */
export function covers(outer: string, inner: string): boolean {
  const o = outer.split(".");
  const i = inner.split(".");
  for (let k = 0; k < o.length; k++) {
    const token = o[k];
    if (token === ">") return k < i.length;
    const other = i[k];
    if (other === undefined || other === ">") return false;
    if (token !== "*" && (other === "*" || token !== other)) return false;
  }
  return o.length === i.length;
}

/** True when some subject matches both. */
export function overlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let k = 0; k < Math.max(x.length, y.length); k++) {
    const s = x[k];
    const t = y[k];
    if (s === ">" || t === ">") return s !== undefined && t !== undefined;
    if (s === undefined || t === undefined) return false;
    if (s !== "*" && t !== "*" && s !== t) return false;
  }
  return true;
}

/** The wildcard tokens of a subject, in order: a local subject must keep the same ones. */
export function wildcards(subject: string): string[] {
  return subject.split(".").filter((token) => token === "*" || token === ">");
}
