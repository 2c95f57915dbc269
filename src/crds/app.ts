/**
 * The App custom resource, defined once: the TypeBox schemas below give the TypeScript types,
 * the runtime check the controller applies to what it reads, and (through crd.ts) the CRD the
 * API server validates with. Limits come from accounts/spec.ts, so the CRD cannot accept a
 * value the account minting would refuse.
 *
 * `errorMessage` on a schema is ours, not JSON Schema: the message shown for any value that
 * does not fit that node, by appSpecIssues and in the CRD's CEL rules alike.
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError } from "@sinclair/typebox/value";
import type { V1ObjectMeta } from "@kubernetes/client-node";
import {
  DEFAULT_LIMITS,
  LIMIT_RANGES,
  type AccountRequest,
  type ValidationIssue,
} from "../accounts/spec.ts";
import {
  MAX_SUBJECT_LENGTH,
  RESERVED_PREFIXES,
  exportIssue,
  overlap,
  subjectIssue,
  wildcards,
} from "../accounts/subjects.ts";

export const APP_GROUP = "nats-tenancy.io";
export const APP_VERSION = "v1alpha1";
export const APP_KIND = "App";
export const APP_PLURAL = "apps";
export const APP_SHORT_NAME = "natsapp";
export const APP_API_VERSION = `${APP_GROUP}/${APP_VERSION}` as const;
/** What CustomObjectsApi calls take to address Apps. */
export const APP_RESOURCE = { group: APP_GROUP, version: APP_VERSION, plural: APP_PLURAL } as const;

/** An App's API path, for plain requests. */
export function appPath(namespace: string, name: string): string {
  return `/apis/${APP_API_VERSION}/namespaces/${namespace}/${APP_PLURAL}/${name}`;
}

/** The same labels accounts/spec.ts accepts for an environment. */
const DNS_LABEL_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
export const MAX_ENVIRONMENTS = 32;
/** Ten years. */
const MAX_LIFETIME_SECONDS = 10 * 365 * 86_400;

function limit(key: keyof typeof LIMIT_RANGES, description: string) {
  const range = LIMIT_RANGES[key];
  const bounds = { minimum: range.min, maximum: range.max };
  const errorMessage = `must be an integer from ${range.min} to ${range.max}${
    range.unlimited ? ", or -1 for unlimited" : ""
  }`;
  return range.unlimited
    ? Type.Union([Type.Integer(bounds), Type.Literal(-1)], { description, errorMessage })
    : Type.Integer({ ...bounds, description, errorMessage });
}

export const JetStreamLimitsSchema = Type.Object(
  {
    memory: Type.Optional(limit("jetstream.memory", "Bytes of memory storage; 0 (default): none.")),
    storage: Type.Optional(limit("jetstream.storage", "Bytes of file storage; 0 (default): none.")),
    streams: Type.Optional(limit("jetstream.streams", "Maximum streams; -1 (default): unlimited.")),
    consumers: Type.Optional(
      limit("jetstream.consumers", "Maximum consumers; -1 (default): unlimited."),
    ),
  },
  {
    additionalProperties: false,
    description: "JetStream for the account: on when memory or storage is above 0.",
  },
);

export const MAX_EXPORTS = 32;
export const MAX_IMPORTS = 32;
export const MAX_CONSUMERS = 64;

/**
 * subjects.ts' syntax as a pattern JavaScript and the API server's RE2 both read alike (their
 * `\\s` differ, so the white space is spelled out).
 */
const SUBJECT_PATTERN =
  "^(([^ \\t\\r\\n\\f\\v.*>]+|[*])([.]([^ \\t\\r\\n\\f\\v.*>]+|[*]))*([.]>)?|>)$";

const subject = (description: string) =>
  Type.String({
    minLength: 1,
    maxLength: MAX_SUBJECT_LENGTH,
    pattern: SUBJECT_PATTERN,
    description,
    errorMessage: `must be a NATS subject: tokens separated by '.', '*' for one token, '>' last for the rest, at most ${String(MAX_SUBJECT_LENGTH)} characters`,
  });

const dnsLabel = (description: string) =>
  Type.String({
    minLength: 1,
    maxLength: 63,
    pattern: DNS_LABEL_PATTERN,
    description,
    errorMessage: "must be a DNS label",
  });

export const ShareTypeSchema = Type.Union([Type.Literal("stream"), Type.Literal("service")], {
  description:
    "stream: messages published on the subject flow to the importer; service: the importer's requests on it are answered by the exporter.",
  errorMessage: 'must be "stream" or "service"',
});

/** Another App's environment, as an export's consumer or an import's source. */
export const AppReferenceSchema = Type.Object(
  {
    app: dnsLabel("The App's name."),
    namespace: Type.Optional(dnsLabel("Its namespace; default: this App's.")),
    environment: Type.Optional(
      dnsLabel(
        "Its environment; default: the same name as this one's. Another name is honoured only " +
          "when both sides name the environments.",
      ),
    ),
  },
  { additionalProperties: false },
);

export const ExportSchema = Type.Object(
  {
    subject: Type.String({
      ...subject(
        `The subject (wildcards allowed) other apps may import; not in ${RESERVED_PREFIXES.join(", ")}, and starting with a literal token.`,
      ),
      celRules: [
        {
          rule: `!self.matches('^(${RESERVED_PREFIXES.map((p) => p.replace("$", "[$]")).join("|")}|[*]|>)([.]|$)')`,
          message: `must start with a literal token outside ${RESERVED_PREFIXES.join(", ")}`,
        },
      ],
    }),
    type: ShareTypeSchema,
    to: Type.Array(AppReferenceSchema, {
      minItems: 1,
      maxItems: MAX_CONSUMERS,
      description: "The apps that may import it: consent, checked by the NATS servers.",
    }),
  },
  { additionalProperties: false },
);

export const ImportSchema = Type.Object(
  {
    from: AppReferenceSchema,
    subject: subject("The subject imported: the export's, or a part of it."),
    type: ShareTypeSchema,
    localSubject: Type.Optional(
      subject(
        "The subject it appears under in this app, with the same wildcards; default: the same.",
      ),
    ),
  },
  {
    additionalProperties: false,
    celRules: [
      {
        rule:
          "!has(self.localSubject) || type(self.localSubject) != string || type(self.subject) != string || " +
          "self.localSubject.split('.').filter(t, t == '*' || t == '>') == self.subject.split('.').filter(t, t == '*' || t == '>')",
        message: "localSubject must have the same wildcards as subject",
      },
    ],
  },
);

export const NatsLimitsSchema = Type.Object(
  {
    connections: Type.Optional(
      limit(
        "connections",
        `Maximum client connections; default ${DEFAULT_LIMITS.connections}, -1: unlimited.`,
      ),
    ),
    payload: Type.Optional(
      limit("payload", `Maximum message payload in bytes; default ${DEFAULT_LIMITS.payload}.`),
    ),
    subscriptions: Type.Optional(
      limit(
        "subscriptions",
        `Maximum subscriptions; default ${DEFAULT_LIMITS.subscriptions}, -1: unlimited.`,
      ),
    ),
    jetstream: Type.Optional(JetStreamLimitsSchema),
    exports: Type.Optional(
      Type.Array(ExportSchema, {
        maxItems: MAX_EXPORTS,
        celRules: [
          {
            rule: "self.all(a, type(a) != map || !has(a.subject) || self.exists_one(b, type(b) == map && has(b.subject) && b.subject == a.subject))",
            message: "must not repeat a subject",
          },
        ],
        description: "Subjects of each environment's account that other apps may import.",
      }),
    ),
    imports: Type.Optional(
      Type.Array(ImportSchema, {
        maxItems: MAX_IMPORTS,
        description: "Subjects each environment's account imports from other apps' exports.",
      }),
    ),
  },
  { additionalProperties: false },
);

export const AppSpecSchema = Type.Object({
  nats: Type.Optional(
    Type.Union([Type.Boolean(), NatsLimitsSchema], {
      description:
        "true gives every environment a NATS account with default limits; an object of limits " +
        "does too, with those limits; false or absent: no accounts.",
      errorMessage: "must be true, false, or an object of limits",
    }),
  ),
  environments: Type.Array(
    Type.String({
      minLength: 1,
      maxLength: 63,
      pattern: DNS_LABEL_PATTERN,
      errorMessage:
        "must be a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
    }),
    {
      minItems: 1,
      maxItems: MAX_ENVIRONMENTS,
      uniqueItems: true,
      "x-kubernetes-list-type": "set",
      description:
        "The app's environments (prod, test, ...): each gets its own account and Secret.",
    },
  ),
  credentials: Type.Optional(
    Type.Object(
      {
        lifetimeSeconds: Type.Optional(
          Type.Integer({
            minimum: 0,
            maximum: MAX_LIFETIME_SECONDS,
            description:
              "How long the pods' credentials are valid; they are renewed at 2/3 of it. 0: they " +
              "never expire. Within the platform's bounds; default: the platform's.",
            errorMessage: `must be an integer from 0 to ${String(MAX_LIFETIME_SECONDS)}`,
          }),
        ),
        restartWorkloads: Type.Optional(
          Type.Boolean({
            description:
              "On every rotation or renewal, restart the Deployments, StatefulSets and " +
              "DaemonSets whose pod template carries the App's labels, as kubectl rollout " +
              "restart does: for pods that read NATS_CREDENTIALS from their environment.",
            errorMessage: "must be true or false",
          }),
        ),
      },
      { additionalProperties: false, description: "The pods' credentials." },
    ),
  ),
});

export const ConditionSchema = Type.Object({
  type: Type.String({ minLength: 1, maxLength: 316 }),
  status: Type.Union([Type.Literal("True"), Type.Literal("False"), Type.Literal("Unknown")]),
  reason: Type.String({ maxLength: 1024 }),
  message: Type.String({ maxLength: 32768 }),
  lastTransitionTime: Type.String({ format: "date-time" }),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
});

export const RotationStatusSchema = Type.Object(
  {
    requested: Type.Optional(
      Type.String({
        description: "The rotate-credentials annotation value the current credentials answer.",
      }),
    ),
    state: Type.Union([Type.Literal("Overlapping"), Type.Literal("Done")], {
      description:
        "Overlapping: the replaced credentials still work, until no connection uses them or revokeBy; Done: they are revoked.",
    }),
    oldUser: Type.Optional(
      Type.String({ description: "Public key of the replaced pods user, while it overlaps." }),
    ),
    since: Type.Optional(
      Type.String({ format: "date-time", description: "When the credentials were replaced." }),
    ),
    revokeBy: Type.Optional(
      Type.String({
        format: "date-time",
        description: "When the replaced credentials are revoked at the latest.",
      }),
    ),
  },
  { description: "The last credential rotation (asked for, or a renewal)." },
);

export const SigningKeyStatusSchema = Type.Object(
  {
    key: Type.String({ description: "Public key of the account's signing key for pods users." }),
    requested: Type.Optional(
      Type.String({
        description: "The rotate-signing-key annotation value the current key answers.",
      }),
    ),
    since: Type.Optional(
      Type.String({ format: "date-time", description: "When the current key was made." }),
    ),
    rotateAt: Type.Optional(
      Type.String({
        format: "date-time",
        description: "When the platform's schedule replaces the key.",
      }),
    ),
    oldKey: Type.Optional(
      Type.String({
        description:
          "The replaced key, while the credentials it signed overlap (see rotation); it then leaves the account.",
      }),
    ),
  },
  {
    description:
      "The account's signing key, once a rotation of it was asked for or a schedule replaces it.",
  },
);

export const ExportStatusSchema = Type.Object({
  subject: Type.String(),
  type: ShareTypeSchema,
  importers: Type.Array(Type.String(), {
    description:
      "The accounts (namespace/app/environment) holding an activation for it: those its consent names that exist.",
  }),
});

export const ImportStatusSchema = Type.Object({
  from: Type.String({ description: "namespace/app/environment of the exporter." }),
  subject: Type.String(),
  type: ShareTypeSchema,
  localSubject: Type.Optional(Type.String()),
  active: Type.Boolean({ description: "The servers let it flow." }),
  reason: Type.Optional(
    Type.String({
      description:
        "Why it is not active: ImportNotAllowed, ImportUnavailable, or ImportPending (consented, its token not signed yet).",
    }),
  ),
  message: Type.Optional(Type.String()),
});

export const EnvironmentStatusSchema = Type.Object({
  name: Type.String(),
  /** Absent until the account is first minted. */
  account: Type.Optional(Type.String({ description: "The NATS account's public key." })),
  secret: Type.String({ description: "The Secret holding the environment's credentials." }),
  url: Type.Optional(Type.String({ description: "NATS_URL given to the app." })),
  ready: Type.Boolean(),
  revision: Type.Optional(
    Type.Integer({
      description: "iat of the account JWT last acknowledged by a majority of the servers.",
    }),
  ),
  servers: Type.Optional(
    Type.Integer({
      minimum: 0,
      description:
        "How many NATS servers acknowledged that revision. A majority is enough to be ready; " +
        "a server that was away gets it when it returns.",
    }),
  ),
  rotation: Type.Optional(RotationStatusSchema),
  signingKey: Type.Optional(SigningKeyStatusSchema),
  exports: Type.Optional(Type.Array(ExportStatusSchema)),
  imports: Type.Optional(Type.Array(ImportStatusSchema)),
  credentials: Type.Optional(
    Type.Object(
      {
        lifetimeSeconds: Type.Integer({ minimum: 1 }),
        expires: Type.String({ format: "date-time" }),
        renewAt: Type.String({
          format: "date-time",
          description: "When new credentials replace these (2/3 of their lifetime).",
        }),
      },
      { description: "When the current credentials expire; absent: never." },
    ),
  ),
});

export const AppStatusSchema = Type.Object({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(
    Type.Array(ConditionSchema, {
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
    }),
  ),
  environments: Type.Optional(
    Type.Array(EnvironmentStatusSchema, {
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["name"],
    }),
  ),
});

export const AppSchema = Type.Object(
  {
    apiVersion: Type.String(),
    kind: Type.String(),
    // The API server allows no schema for metadata beyond its type.
    metadata: Type.Unsafe<V1ObjectMeta>({ type: "object" }),
    spec: AppSpecSchema,
    status: Type.Optional(AppStatusSchema),
  },
  { description: "An app whose environments each get their own NATS account." },
);

export type JetStreamLimits = Static<typeof JetStreamLimitsSchema>;
export type NatsLimits = Static<typeof NatsLimitsSchema>;
export type AppSpec = Static<typeof AppSpecSchema>;
export type Condition = Static<typeof ConditionSchema>;
export type EnvironmentStatus = Static<typeof EnvironmentStatusSchema>;
export type RotationStatus = Static<typeof RotationStatusSchema>;
export type CredentialsStatus = NonNullable<EnvironmentStatus["credentials"]>;
export type SigningKeyStatus = Static<typeof SigningKeyStatusSchema>;
export type AppStatus = Static<typeof AppStatusSchema>;
export type ExportSpec = Static<typeof ExportSchema>;
export type ImportSpec = Static<typeof ImportSchema>;
export type AppReference = Static<typeof AppReferenceSchema>;
export type ExportStatus = Static<typeof ExportStatusSchema>;
export type ImportStatus = Static<typeof ImportStatusSchema>;
export type App = Static<typeof AppSchema>;

/** The `errorMessage` of a schema node, if it has one. */
export function errorMessageOf(schema: TSchema): string | undefined {
  const message: unknown = schema["errorMessage"];
  return typeof message === "string" ? message : undefined;
}

/** "/nats/jetstream/memory" -> "nats.jetstream.memory", "/environments/1" -> "environments[1]" */
function dottedPath(pointer: string): string {
  let path = "";
  for (const raw of pointer.split("/").slice(1)) {
    const segment = raw.replaceAll("~1", "/").replaceAll("~0", "~");
    path += /^\d+$/.test(segment) ? `[${segment}]` : path ? `.${segment}` : segment;
  }
  return path;
}

function shown(value: unknown): string {
  return typeof value === "string" || typeof value === "number" || typeof value === "boolean"
    ? `; got ${JSON.stringify(value)}`
    : "";
}

function knownKeys(schema: TSchema): string[] {
  const properties: unknown = schema["properties"];
  return typeof properties === "object" && properties !== null ? Object.keys(properties) : [];
}

const REQUIRED = "is required";

function* issuesOf(errors: Iterable<ValueError>): Generator<ValidationIssue> {
  for (const error of errors) {
    const path = dottedPath(error.path);
    switch (error.type) {
      case ValueErrorType.Union: {
        // A variant whose errors all lie deeper matched the value's shape: its errors say
        // what is wrong (nats: {conections: 1} fails on the key, not on being no boolean).
        const variants = error.errors.map((iterator) => [...iterator]);
        const matched = variants.filter((v) => v.every((e) => e.path !== error.path));
        if (matched.length === 1 && matched[0]) yield* issuesOf(matched[0]);
        else
          yield {
            path,
            message: (errorMessageOf(error.schema) ?? "is invalid") + shown(error.value),
          };
        break;
      }
      case ValueErrorType.ObjectRequiredProperty:
        yield { path, message: REQUIRED };
        break;
      case ValueErrorType.ObjectAdditionalProperties:
        yield {
          path,
          message: `is not a known field (known: ${knownKeys(error.schema).join(", ")})`,
        };
        break;
      case ValueErrorType.ArrayMinItems:
        yield { path, message: `must have at least ${String(error.schema["minItems"])} item(s)` };
        break;
      case ValueErrorType.ArrayMaxItems:
        yield { path, message: `must have at most ${String(error.schema["maxItems"])} items` };
        break;
      case ValueErrorType.ArrayUniqueItems: {
        const items = Array.isArray(error.value) ? (error.value as unknown[]) : [];
        const repeated = new Set(items.filter((item, i) => items.indexOf(item) !== i));
        yield {
          path,
          message: `must not repeat ${[...repeated].map((r) => JSON.stringify(r)).join(", ")}`,
        };
        break;
      }
      case ValueErrorType.Object:
        yield { path, message: "must be an object" };
        break;
      case ValueErrorType.Array:
        yield { path, message: "must be a list" };
        break;
      default:
        yield {
          path,
          message: (errorMessageOf(error.schema) ?? error.message) + shown(error.value),
        };
    }
  }
}

/**
 * Everything wrong with a spec, against the same schema the CRD is generated from; empty when
 * it is valid. Objects stored before the schema tightened (or written with validation off) can
 * still be wrong, so the controller checks before acting.
 */
export function appSpecIssues(spec: unknown): ValidationIssue[] {
  const issues = appSchemaIssues(spec);
  return issues.length > 0 ? issues : sharingIssues(spec as AppSpec);
}

/** What is wrong with a spec against the schema alone: what the API server itself refuses. */
export function appSchemaIssues(spec: unknown): ValidationIssue[] {
  const issues = [...issuesOf(Value.Errors(AppSpecSchema, spec))];
  // A missing value is also checked as the value undefined: "is required" says it all.
  const missing = new Set(issues.filter((i) => i.message === REQUIRED).map((i) => i.path));
  const seen = new Set<string>();
  return issues.filter((issue) => {
    // A string breaking both pattern and length reports the same message twice.
    const key = `${issue.path}\n${issue.message}`;
    if (seen.has(key) || (missing.has(issue.path) && issue.message !== REQUIRED)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * What the schema cannot say about exports and imports: subjects the servers own, the same
 * subject twice, an import's local subject that changes its wildcards or reaches where another
 * import or one of the app's own exports is. The admission policy checks all but the overlaps
 * (CEL cannot compare wildcard subjects), which the webhook refuses.
 */
export function sharingIssues(spec: AppSpec): ValidationIssue[] {
  const { exports = [], imports = [] } = typeof spec.nats === "object" ? spec.nats : {};
  const issues: ValidationIssue[] = [];
  for (const [i, e] of exports.entries()) {
    const path = `nats.exports[${String(i)}].subject`;
    const wrong = subjectIssue(e.subject) ?? exportIssue(e.subject);
    if (wrong) issues.push({ path, message: `${wrong}; got ${JSON.stringify(e.subject)}` });
    const first = exports.findIndex((other) => other.subject === e.subject);
    if (first < i)
      issues.push({ path, message: `repeats nats.exports[${String(first)}]'s ${e.subject}` });
  }
  for (const [i, imp] of imports.entries()) {
    const path = `nats.imports[${String(i)}]`;
    const local = imp.localSubject ?? imp.subject;
    if (
      imp.localSubject !== undefined &&
      wildcards(imp.localSubject).join(".") !== wildcards(imp.subject).join(".")
    )
      issues.push({
        path: `${path}.localSubject`,
        message: `must have the same wildcards as subject ${imp.subject}; got ${imp.localSubject}`,
      });
    for (const [j, other] of imports.slice(0, i).entries()) {
      if (overlap(local, other.localSubject ?? other.subject))
        issues.push({
          path,
          message: `${local} overlaps nats.imports[${String(j)}]'s ${other.localSubject ?? other.subject}`,
        });
    }
    for (const exported of new Set(exports.map((e) => e.subject)))
      if (overlap(local, exported))
        issues.push({ path, message: `${local} overlaps this app's own export ${exported}` });
  }
  return issues;
}

/** The account limits the spec asks for; undefined when NATS is off for the app. */
export function natsRequest(spec: AppSpec): AccountRequest | undefined {
  const { nats } = spec;
  if (nats === undefined || nats === false) return undefined;
  if (nats === true) return {};
  const { jetstream, exports: _exports, imports: _imports, ...limits } = nats;
  return jetstream ? { ...limits, jetstream: { ...jetstream } } : limits;
}

/** What the spec exports and imports: none when NATS is on as `true` (or off). */
export function natsSharing(spec: AppSpec): { exports: ExportSpec[]; imports: ImportSpec[] } {
  const nats = typeof spec.nats === "object" ? spec.nats : {};
  return { exports: nats.exports ?? [], imports: nats.imports ?? [] };
}

/** An export's consumers and an import's source, with the defaults filled in. */
export function resolveReference(
  reference: AppReference,
  namespace: string,
  environment: string,
): { namespace: string; app: string; environment: string } {
  return {
    namespace: reference.namespace ?? namespace,
    app: reference.app,
    environment: reference.environment ?? environment,
  };
}

/**
 * The environments a spec has accounts for: none when NATS is off or the spec is malformed.
 * Sharing that cannot be applied leaves the accounts (held as they are), so pods still get them.
 */
export function natsEnvironments(spec: unknown): string[] {
  if (appSchemaIssues(spec).length > 0) return [];
  const valid = spec as AppSpec;
  return natsRequest(valid) ? [...valid.environments] : [];
}
