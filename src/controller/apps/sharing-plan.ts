/**
 * What an App environment's account shares, decided from the Apps as the cache holds them and
 * the accounts the index knows: which accounts its exports consent to, and for each import
 * whether its exporter consents. Activation tokens are not read here: this is what the fast
 * path compares, and it reads no keys.
 */
import type { StoredAccount } from "../../accounts/app-account.ts";
import { loadAccount, type SecretStore } from "../../accounts/key-store.ts";
import type { ExportGrant, ImportGrant } from "../../accounts/sharing.ts";
import { accountName } from "../../accounts/spec.ts";
import { covers } from "../../accounts/subjects.ts";
import {
  appSpecIssues,
  natsRequest,
  natsSharing,
  resolveReference,
  type AppSpec,
  type EnvironmentStatus,
  type ExportStatus,
  type ImportSpec,
  type ImportStatus,
} from "../../crds/app.ts";
import { appKey } from "../../accounts/account-index.ts";
import type { AppObject } from "../../contract/app-object.ts";
import { degradedReason } from "./app-status.ts";

export interface SharingLookups {
  getApp: (namespace: string, name: string) => AppObject | undefined;
  /** The account's public key, when it exists. */
  account: (namespace: string, app: string, environment: string) => string | undefined;
}

interface AccountRef {
  namespace: string;
  app: string;
  environment: string;
}

export type ImportRefusalReason = "ImportNotAllowed" | "ImportUnavailable" | "ImportPending";

/**
 * An import as planned: consented (with its exporter's account and export), refused, or
 * `held`, when its exporter's spec cannot be applied (the exporter's account, whose signed
 * activations then decide).
 */
export interface PlannedImport {
  spec: ImportSpec;
  from: AccountRef;
  consent?: Consent;
  refusal?: { reason: ImportRefusalReason; message: string };
  held?: string;
}

/** The exporter's account and the export that consents. */
export interface Consent {
  account: string;
  exportSubject: string;
}

export interface SharingPlan {
  exports: ExportGrant[];
  exportStatus: ExportStatus[];
  imports: PlannedImport[];
}

/** The App environment's exports, each with the existing accounts its `to` names. */
function plannedExports(
  app: AppObject,
  environment: string,
  lookups: SharingLookups,
): { grants: ExportGrant[]; status: ExportStatus[] } {
  const { namespace } = app.metadata;
  const grants: ExportGrant[] = [];
  const status: ExportStatus[] = [];
  for (const e of natsSharing(app.spec as AppSpec).exports) {
    const consumers: string[] = [];
    const importers: string[] = [];
    for (const to of e.to) {
      const ref = resolveReference(to, namespace, environment);
      const account = lookups.account(ref.namespace, ref.app, ref.environment);
      if (account === undefined || consumers.includes(account)) continue;
      consumers.push(account);
      importers.push(accountName(ref));
    }
    grants.push({ subject: e.subject, type: e.type, consumers });
    status.push({ subject: e.subject, type: e.type, importers: importers.sort() });
  }
  return { grants, status };
}

function same(a: AccountRef, b: AccountRef): boolean {
  return a.namespace === b.namespace && a.app === b.app && a.environment === b.environment;
}

/**
 * Whether the exporter consents to this import, and if not, why. The why is detailed only
 * within a namespace: an App may name any other, and must not learn from its own status what
 * another namespace's Apps export, or that they exist.
 */
function plannedImport(spec: ImportSpec, me: AccountRef, lookups: SharingLookups): PlannedImport {
  const from = resolveReference(spec.from, me.namespace, me.environment);
  const name = accountName(from);
  const neighbour = from.namespace === me.namespace;
  const refuse = (reason: ImportRefusalReason, message: string): PlannedImport => ({
    spec,
    from,
    refusal: neighbour
      ? { reason, message }
      : {
          reason: "ImportNotAllowed",
          message: `${name} does not export ${spec.subject} (${spec.type}) to ${accountName(me)}`,
        },
  });
  const exporter = lookups.getApp(from.namespace, from.app);
  const account = lookups.account(from.namespace, from.app, from.environment);
  if (!exporter || exporter.metadata.deletionTimestamp || account === undefined)
    return refuse(
      "ImportUnavailable",
      `${name} has no NATS account to import ${spec.subject} from`,
    );
  // An exporter whose spec cannot be applied keeps its account as it is: so does the import.
  if (appSpecIssues(exporter.spec).length > 0) return { spec, from, held: account };
  const offered = exporter.spec as AppSpec;
  if (!natsRequest(offered) || !offered.environments.includes(from.environment))
    return refuse(
      "ImportUnavailable",
      `${name} has no NATS account to import ${spec.subject} from`,
    );
  const covering = natsSharing(offered).exports.filter(
    (e) => e.type === spec.type && covers(e.subject, spec.subject),
  );
  if (covering.length === 0)
    return refuse("ImportNotAllowed", `${name} exports no ${spec.type} covering ${spec.subject}`);
  const consenting = covering.find((e) =>
    e.to.some((to) => same(resolveReference(to, from.namespace, from.environment), me)),
  );
  if (!consenting)
    return refuse(
      "ImportNotAllowed",
      `${name} does not consent: its ${spec.type} export ${covering.map((e) => e.subject).join(", ")} does not name ${accountName(me)} in its 'to'`,
    );
  return { spec, from, consent: { account, exportSubject: consenting.subject } };
}

export function sharingPlan(
  app: AppObject,
  environment: string,
  lookups: SharingLookups,
): SharingPlan {
  const me = { namespace: app.metadata.namespace, app: app.metadata.name, environment };
  const { grants, status } = plannedExports(app, environment, lookups);
  return {
    exports: grants,
    exportStatus: status,
    imports: natsSharing(app.spec as AppSpec).imports.map((spec) =>
      plannedImport(spec, me, lookups),
    ),
  };
}

/** A consented import as its account JWT carries it, with the token its exporter signed. */
export function importGrant(spec: ImportSpec, consent: Consent, token: string): ImportGrant {
  return {
    subject: spec.subject,
    type: spec.type,
    ...(spec.localSubject !== undefined ? { localSubject: spec.localSubject } : {}),
    account: consent.account,
    exportSubject: consent.exportSubject,
    token,
  };
}

/** An import's status line. */
export function importStatus(planned: PlannedImport): ImportStatus {
  const { spec, refusal } = planned;
  return {
    from: accountName(planned.from),
    subject: spec.subject,
    type: spec.type,
    ...(spec.localSubject !== undefined ? { localSubject: spec.localSubject } : {}),
    active: !refusal,
    ...(refusal ? { reason: refusal.reason, message: refusal.message } : {}),
  };
}

/** The Apps an App's sharing names (its exporters and its consumers), by key. */
export function sharingReferences(app: AppObject): Set<string> {
  const keys = new Set<string>();
  const spec = app.spec as Partial<AppSpec> | undefined;
  const nats = spec?.nats;
  if (typeof nats !== "object" || (!nats.exports && !nats.imports)) return keys;
  if (appSpecIssues(spec).length > 0) return keys;
  const { namespace } = app.metadata;
  const { exports, imports } = natsSharing(spec as AppSpec);
  for (const e of exports)
    for (const to of e.to) keys.add(appKey(to.namespace ?? namespace, to.app));
  for (const i of imports) keys.add(appKey(i.from.namespace ?? namespace, i.from.app));
  return keys;
}

/** An environment's exports and imports as its status lists them. */
export interface SharedStatus {
  exports?: ExportStatus[];
  imports?: ImportStatus[];
}

export function sharedStatus(exports: ExportStatus[], imports: PlannedImport[]): SharedStatus {
  return {
    ...(exports.length > 0 ? { exports } : {}),
    ...(imports.length > 0 ? { imports: imports.map(importStatus) } : {}),
  };
}

/**
 * The imports that do not flow, as one notice: the App is Degraded for them, and stays Ready
 * (everything else of its accounts works).
 */
export function importNotice(
  environments: EnvironmentStatus[],
): { reason: string; message: string } | undefined {
  const refused = environments.flatMap((e) =>
    (e.imports ?? []).filter((i) => !i.active).map((i) => ({ environment: e.name, ...i })),
  );
  const [first] = refused;
  if (!first?.reason) return undefined;
  return {
    reason: first.reason,
    message: refused
      .map((i) => `${i.environment}: import of ${i.subject} from ${i.from}: ${i.message ?? ""}`)
      .join("; "),
  };
}

/**
 * The consented imports with the activation tokens their exporters signed for `account`.
 * An exporter that has not signed one yet (it has not looked since consenting, or since this
 * account was made) leaves the import pending: it signs when it next runs, and then this App
 * looks again (see `linked`). An exporter held as it is decides by the tokens it holds.
 */
export async function withTokens(
  plan: SharingPlan,
  account: string | undefined,
  deps: { store: SecretStore; getApp: SharingLookups["getApp"] },
): Promise<{ grants: ImportGrant[]; planned: PlannedImport[] }> {
  const exporters = new Map<string, Promise<StoredAccount | undefined>>();
  const signedFor = async (from: PlannedImport["from"], fits: (subject: string) => boolean) => {
    const key = accountName(from);
    const exporter = exporters.get(key) ?? loadAccount(deps.store, from);
    exporters.set(key, exporter);
    if (account === undefined) return undefined;
    return (await exporter)?.activations?.find((a) => a.account === account && fits(a.subject));
  };
  const grants: ImportGrant[] = [];
  const planned: PlannedImport[] = [];
  for (const item of plan.imports) {
    const { spec, from, held } = item;
    const consent: Consent | undefined =
      item.consent ??
      (held !== undefined
        ? await signedFor(from, (subject) => covers(subject, spec.subject)).then(
            (a) => a && { account: held, exportSubject: a.subject },
          )
        : undefined);
    const activation =
      consent && (await signedFor(from, (subject) => subject === consent.exportSubject));
    if (consent && activation) {
      grants.push(importGrant(spec, consent, activation.token));
      planned.push({ spec, from, consent });
    } else {
      planned.push({ spec, from, refusal: item.refusal ?? unsigned(item, deps.getApp) });
    }
  }
  return { grants, planned };
}

/** Why an import the exporter consents to (or held) has no token. */
function unsigned(
  { spec, from, held }: PlannedImport,
  getApp: SharingLookups["getApp"],
): NonNullable<PlannedImport["refusal"]> {
  const name = accountName(from);
  if (held !== undefined)
    return {
      reason: "ImportNotAllowed",
      message: `${name} does not export ${spec.subject} (${spec.type}) to this account`,
    };
  const exporter = getApp(from.namespace, from.app);
  const reason = degradedReason(exporter?.status);
  return {
    reason: "ImportPending",
    message: `${name} consents; waiting for it to sign the activation${reason ? ` (that App is Degraded: ${reason})` : ""}`,
  };
}
