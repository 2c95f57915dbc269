/**
 * The operator's pino logger. Secrets must never reach the log, so two layers guard it:
 * `redact` blanks fields whose names say they hold secrets, and a scrubbing step replaces
 * anything that looks like an nkey seed, a JWT, a .creds block or a PEM private key in every
 * string it writes (messages, fields, child bindings, errors' messages and stacks), whatever
 * the field is called.
 */
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

const REDACTED = "[REDACTED]";

const SECRET_PATTERNS: readonly RegExp[] = [
  // Whole blocks first: a .creds file holds a JWT and a seed, a PEM key has no other marker.
  /-----BEGIN NATS USER JWT-----[\s\S]*?------END USER NKEY SEED------/g,
  // An unterminated key (a truncated message) is redacted to the end of the text.
  /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
  // nkey seeds: S, the key's role, then base32 (58 characters in all).
  /S[OAUNCXP][A-Z2-7]{56}/g,
  // JWTs: a base64url JSON header ({" encodes to eyJ), payload and (possibly empty) signature.
  /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g,
];

const SECRET_FIELDS = [
  "creds",
  "seed",
  "jwt",
  "data",
  "stringData",
  "NATS_CREDENTIALS",
  "accountJwt",
  "userJwt",
  "operatorJwt",
  "privateKey",
  "privateKeyPem",
  "signingKey",
  "password",
  "token",
  "authorization",
];

/** `text` with every nkey seed, JWT, .creds block and PEM private key replaced by [REDACTED]. */
export function scrubSecrets(text: string): string {
  return SECRET_PATTERNS.reduce((scrubbed, pattern) => scrubbed.replace(pattern, REDACTED), text);
}

/**
 * A copy of `value` safe to log: strings scrubbed, errors in pino's serialized shape (so their
 * message and stack are written, and scrubbed, wherever they sit), raw bytes left out.
 */
function scrubValue(value: unknown, ancestors: Set<object>): unknown {
  if (typeof value === "string") return scrubSecrets(value);
  if (typeof value !== "object" || value === null) return value;
  // Seeds are Uint8Arrays in @nats-io/nkeys; bytes would be written as a list of numbers.
  if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (ancestors.has(value)) return "[Circular]";
  if (value instanceof Error) return scrubValue(pino.stdSerializers.err(value), ancestors);
  if ("toJSON" in value && typeof value.toJSON === "function") {
    return scrubValue((value.toJSON as () => unknown)(), ancestors);
  }
  ancestors.add(value);
  const scrubbed = Array.isArray(value)
    ? value.map((item: unknown) => scrubValue(item, ancestors))
    : Object.fromEntries(
        Object.entries(value).map(([key, item]) => [key, scrubValue(item, ancestors)]),
      );
  ancestors.delete(value);
  return scrubbed;
}

function scrubObject(object: object): Record<string, unknown> {
  return scrubValue(object, new Set()) as Record<string, unknown>;
}

export interface LoggerOptions {
  /** pino level name; "info" when omitted. */
  level?: string;
  /** Where lines go; stdout when omitted. */
  destination?: DestinationStream;
  name?: string;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const logger = pino(
    {
      level: options.level ?? "info",
      name: options.name,
      redact: {
        paths: SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]),
        censor: REDACTED,
      },
      formatters: { log: scrubObject },
      serializers: {
        // Errors reach it already scrubbed and serialized by formatters.log; pino's default err
        // serializer would serialize them again, as type "Object".
        err: (value: unknown) => scrubValue(value, new Set()),
        // Every message passes here, including the one pino takes from a logged error.
        msg: (value: unknown) => scrubValue(value, new Set()),
      },
    },
    options.destination ?? pino.destination(1),
  );
  // pino applies no formatter to a child's bindings; children inherit this override.
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with each logger's own this
  const child = logger.child;
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, scrubObject(bindings), childOptions);
  } as Logger["child"];
  return logger;
}
