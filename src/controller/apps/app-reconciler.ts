/**
 * One App's reconcile, level-triggered: read the App, the stored accounts and the app
 * Secrets, compute what should be, and change only what differs. Order matters for what a
 * crash leaves behind: keys are saved before an account is pushed (no account on a server
 * without its keys), an account is deleted from the servers before its Secret and keys (a
 * half-done delete is retried, never forgotten), and the finalizer goes last.
 */
import type { V1OwnerReference, V1Secret } from "@kubernetes/client-node";
import type { Account } from "@nats-io/jwt";
import { deleteAppAccount } from "../../accounts/account-deletion.ts";
import { accountRecipe, mintAppAccount, type StoredAccount } from "../../accounts/app-account.ts";
import type { RetireReason } from "../../accounts/retirement.ts";
import { lifetimeIssue, type CredentialPolicy } from "../../accounts/credential-policy.ts";
import type { OperatorIdentity } from "../../accounts/identities.ts";
import { decodeJwt, parseJwt } from "../../accounts/jwt.ts";
import {
  KeyStoreError,
  loadAppKeys,
  restoredAt,
  saveAppKeys,
  type AppKeys,
  type SecretStore,
} from "../../accounts/key-store.ts";
import type { ResolverClient } from "../../accounts/resolver-client.ts";
import { NO_SHARING, sharingOf, type Sharing } from "../../accounts/sharing.ts";
import {
  ResolverRejectedError,
  ResolverTimeoutError,
  InvalidClaimsError,
} from "../../accounts/resolver-client.ts";
import {
  AccountSpecError,
  requestFromLimits,
  validateAccountSpec,
  type AccountRequest,
  type AccountSpec,
} from "../../accounts/spec.ts";
import {
  namespaceOverCeiling,
  specOverCeilings,
  type Ceilings,
  type NamespaceMember,
} from "../../accounts/ceilings.ts";
import {
  APP_API_VERSION,
  APP_KIND,
  appSpecIssues,
  natsRequest,
  type AppSpec,
  type EnvironmentStatus,
  type CredentialsStatus,
  type RotationStatus,
  type SigningKeyStatus,
} from "../../crds/app.ts";
import {
  importGrant,
  importNotice,
  sharedStatus,
  sharingPlan,
  withTokens,
  type SharedStatus,
} from "./sharing-plan.ts";
import {
  credentialWaits,
  credentialsRequest,
  credentialsSettled,
  rotationsAsked,
} from "./credential-schedule.ts";
import { ACCOUNT_EVENTS, type AccountEvent } from "./account-events.ts";
import { apiAnswer, apiErrorSentence } from "../../kube/api-errors.ts";
import { done, requeueAfter, retry, type ReconcileOutcome } from "../../runtime/outcome.ts";
import type { AccountIndex } from "../../accounts/account-index.ts";
import { holdsFinalizer, type AppObject } from "../../contract/app-object.ts";
import {
  appSecret,
  appSecretCurrent,
  appSecretName,
  appSecretUnchanged,
  secretOwner,
  type AppSecretSource,
  type AppUrls,
} from "../../contract/app-secret.ts";
import {
  appStatus,
  degradedReason,
  lacksServers,
  credentialsStatus,
  rotationStatus,
  signingKeyStatus,
  sameStatus,
  type StatusInput,
} from "./app-status.ts";
import type { AppWrites } from "./app-writes.ts";
import { NatsUnavailableError } from "../nats-link.ts";

/**
 * What the App's owner is told, and what happens next: `change` waits for the App to change
 * (its events start the next reconcile), `recheck` looks again after a while (what is in the
 * way is not watched), `retry` is a fault retried with backoff.
 */
export type Remedy = "change" | "recheck" | "retry";

/** A reason the App cannot be fully reconciled that its owner can act on. */
export class AppProblem extends Error {
  override name = "AppProblem";
  readonly reason: string;
  readonly remedy: Remedy;

  constructor(reason: string, message: string, remedy: Remedy, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
    this.remedy = remedy;
  }
}

/** How often an App blocked by someone else's Secret looks again: that Secret is not watched. */
export const CONFLICT_RECHECK_MS = 30_000;

/**
 * How often an import its exporter consents to, but has no token for yet, looks again: the
 * exporter's next reconcile requeues it anyway (see `linked`); this is in case that was lost.
 */
export const PENDING_RECHECK_MS = 30_000;

/**
 * How often an App whose account only a majority of the servers acknowledged pushes it again,
 * until every server has it (a returning server is also noticed at once, see AppLoop).
 */
export const PARTIAL_RECHECK_MS = 15_000;

/**
 * How long accounts restored from a backup wait for their Apps to be applied again: a new
 * cluster's operator starts before its Apps come back.
 */
export const RESTORED_GRACE_MS = 24 * 3_600_000;

/** The longest a Node.js timer waits (24.8 days); a resync or a restart looks sooner anyway. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * Each environment keeps the limits its stored account has, and its users their lifetime (the
 * spec cannot be applied).
 */
const KEEP_AS_IS = Symbol("keep as is");

/** What the App asks of every environment's account. */
interface Asked {
  limits: AccountRequest;
  lifetimeSeconds: number;
}

/** What the reconciler asks of the NATS servers. */
export type AccountServers = Pick<
  ResolverClient,
  "push" | "delete" | "purgeJetStream" | "userConnections"
>;

export interface ReconcilerDeps {
  identity: () => OperatorIdentity;
  caBundle: () => string;
  /** The URLs written into app Secrets. */
  appUrls: AppUrls;
  store: SecretStore;
  index: AccountIndex;
  /** Throws NatsUnavailableError while there is no connection. */
  servers: () => AccountServers;
  /** Servers running a full resolver: an account is complete once all of them acknowledged. */
  expectedServers: number;
  ceilings: Ceilings;
  credentials: CredentialPolicy;
  /** The Apps of a namespace, from the informer's cache (the Apps-per-namespace ceiling). */
  namespaceApps: (namespace: string) => AppObject[];
  getApp: (namespace: string, name: string) => AppObject | undefined;
  /** From the API server, for an App the cache lacks. */
  readApp: (namespace: string, name: string) => Promise<AppObject | undefined>;
  /** From the informer's cache, which holds only the operator's own app Secrets. */
  getSecret: (namespace: string, name: string) => V1Secret | undefined;
  /** From the API server: any Secret of that name, the operator's or not. */
  readSecret: (namespace: string, name: string) => Promise<V1Secret | undefined>;
  writes: AppWrites;
  /** Hides secrets in texts bound for status and events (error messages quote servers). */
  scrub: (text: string) => string;
  onPush: (operation: "update" | "delete") => void;
  /**
   * An App's accounts were made, changed or deleted: the Apps its sharing names, and those
   * whose sharing names it, look again (an exporter signs for a new importer, an importer
   * takes up a new token or loses its exporter).
   */
  linked: (namespace: string, name: string) => void;
  now: () => number;
}

interface AccountChange {
  environment: string;
  change: AccountEvent;
}

/** One step's result: what it changed, and what stopped it, if anything did. */
interface StepResult {
  changes: AccountChange[];
  problems: AppProblem[];
}

function describe(error: unknown, scrub: (text: string) => string): AppProblem {
  if (error instanceof AppProblem) return error;
  const answer = apiAnswer(error);
  const text = answer
    ? apiErrorSentence(answer)
    : error instanceof Error
      ? error.message
      : String(error);
  const message = scrub(text);
  const problem = (reason: string, remedy: Remedy) =>
    new AppProblem(reason, message, remedy, { cause: error });
  if (error instanceof NatsUnavailableError || error instanceof ResolverTimeoutError)
    return problem("NatsUnavailable", "retry");
  if (error instanceof ResolverRejectedError || error instanceof InvalidClaimsError)
    return problem("NatsRejected", "retry");
  if (error instanceof AccountSpecError) return problem("InvalidSpec", "change");
  if (error instanceof KeyStoreError) return problem("KeyStoreError", "retry");
  return problem("ReconcileError", "retry");
}

/**
 * Of several problems the one that decides what happens next: a fault is retried soonest, then
 * a recheck; status reports the first problem met, whichever it is.
 */
function outcomeOf(problems: AppProblem[]): ReconcileOutcome {
  const fault = problems.find((p) => p.remedy === "retry");
  // The error as thrown, for the log and the errors metric; the problem is in the status.
  if (fault) return retry(fault.cause ?? fault);
  const blocked = problems.find((p) => p.remedy === "recheck");
  if (blocked) return requeueAfter(CONFLICT_RECHECK_MS, `${blocked.reason}: ${blocked.message}`);
  return done;
}

function owner(app: AppObject): V1OwnerReference {
  return {
    apiVersion: APP_API_VERSION,
    kind: APP_KIND,
    name: app.metadata.name,
    uid: app.metadata.uid,
    controller: true,
  };
}

type Validated =
  | { valid: true; wanted: string[]; request: AccountRequest | undefined }
  | { valid: false; message: string };

/**
 * The App as the reconcile acts on it. The API server validates with the CRD's schema, but an
 * App stored before the schema tightened, or with a name NATS cannot carry, still arrives here.
 */
function validate(app: AppObject): Validated {
  const { namespace, name } = app.metadata;
  const issues = [
    ...appSpecIssues(app.spec).map((i) => `spec${i.path ? `.${i.path}` : ""}: ${i.message}`),
    ...nameIssues(namespace, name),
  ];
  if (issues.length > 0) return { valid: false, message: issues.join("; ") };
  const spec = app.spec as AppSpec;
  const request = natsRequest(spec);
  return { valid: true, wanted: request ? [...spec.environments] : [], request };
}

/** Someone else's Secret where the environment's app Secret belongs, as the problem to report. */
function secretConflict(
  secret: V1Secret,
  app: AppObject,
  environment: string,
): AppProblem | undefined {
  const { namespace, name } = app.metadata;
  const claimedBy = secretOwner(secret);
  if (claimedBy?.app === name && claimedBy.environment === environment) return undefined;
  return new AppProblem(
    "SecretConflict",
    `Secret ${namespace}/${appSecretName(name, environment)} already exists and is not this App's ${environment} Secret` +
      (claimedBy ? ` (it belongs to ${claimedBy.app}/${claimedBy.environment})` : "") +
      "; rename the App or the environment, or delete that Secret",
    "recheck",
  );
}

/** An environment's account as it should be, before its keys are saved and it is pushed. */
interface Minted {
  environment: string;
  app: AppObject;
  identity: OperatorIdentity;
  accountSpec: AccountSpec;
  minted: ReturnType<typeof mintAppAccount>;
  /** No keys were stored for it. */
  created: boolean;
  existingSecret: V1Secret | undefined;
  secretBase: Omit<AppSecretSource, "madeFrom">;
  before: EnvironmentStatus | undefined;
  /** Set when the replaced pods user's overlap ended with this mint. */
  retired: RetireReason | undefined;
  shared: SharedStatus;
}

type Prepared = Minted | { environment: string; recorded: EnvironmentStatus };

/** An environment that could not be prepared. */
interface Failed {
  environment: string;
  problem: AppProblem;
}

/** A published environment, and what changed about its account, if anything did. */
interface Published {
  status: EnvironmentStatus;
  change?: AccountChange;
}

export class AppReconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  /** Reconciles `namespace/name`. Throws only what it did not expect (a retry too). */
  async reconcile(key: string): Promise<ReconcileOutcome> {
    const [namespace = "", name = ""] = key.split("/");
    const stored = this.deps.index.environments(namespace, name);
    // Deleting accounts on the word of a cache would be unforgivable if the cache were wrong:
    // an App it lacks is looked up before its accounts are called orphans.
    const app =
      this.deps.getApp(namespace, name) ??
      (stored.length > 0 ? await this.deps.readApp(namespace, name) : undefined);
    if (!app) {
      const waiting = await this.restoredWaiting(namespace, name, stored);
      if (waiting !== undefined)
        return requeueAfter(waiting, "keys restored from a backup wait for their App");
      // Gone without our finalizer (it never had one, or it was removed by hand): whatever
      // keys remain are orphans.
      const removed = await this.removeEnvironments(namespace, name, stored);
      return outcomeOf(removed.problems);
    }
    if (app.metadata.deletionTimestamp) return this.finalize(app);
    return this.converge(app);
  }

  /**
   * How much longer keys restored from a backup wait for their App to be applied again before
   * they count as orphans; undefined when they do not wait.
   */
  private async restoredWaiting(
    namespace: string,
    name: string,
    stored: string[],
  ): Promise<number | undefined> {
    if (stored.length === 0) return undefined;
    const since = restoredAt(await this.loadKeys(namespace, name));
    if (since === undefined) return undefined;
    const left = since + RESTORED_GRACE_MS - this.deps.now();
    return left > 0 ? left : undefined;
  }

  private async finalize(app: AppObject): Promise<ReconcileOutcome> {
    if (!holdsFinalizer(app)) return done;
    const { namespace, name } = app.metadata;
    const removed = await this.removeEnvironments(
      namespace,
      name,
      this.deps.index.environments(namespace, name),
    );
    const [problem] = removed.problems;
    if (problem) {
      await this.record(app, {
        generation: app.metadata.generation ?? 0,
        environments: app.status?.environments ?? [],
        problem: {
          reason: "DeletionBlocked",
          message: `accounts cannot be deleted yet, so the App stays until they are: ${problem.message}`,
        },
      });
      // Blocked by a fault (NATS away): the App is not for its owner to fix.
      return retry(problem.cause ?? problem);
    }
    await this.deps.writes.setFinalizer(app, false);
    return done;
  }

  /**
   * validate -> check ceilings -> ensure finalizer -> ensure environments -> remove dropped ->
   * announce -> record
   */
  private async converge(app: AppObject): Promise<ReconcileOutcome> {
    const checked = validate(app);
    if (!checked.valid) return this.hold(app, "InvalidSpec", checked.message);
    const { wanted, request } = checked;
    const overCeiling = this.overCeilings(app, wanted, request);
    if (overCeiling) return this.hold(app, "OverCeiling", overCeiling);
    const asked = (app.spec as AppSpec).credentials?.lifetimeSeconds;
    const lifetimeSeconds = asked ?? this.deps.credentials.lifetime.defaultSeconds;
    const badLifetime = lifetimeIssue(this.deps.credentials.lifetime, lifetimeSeconds);
    if (badLifetime)
      return this.hold(
        app,
        "CredentialLifetime",
        `spec.credentials.lifetimeSeconds${asked === undefined ? " (the default)" : ""}: ${badLifetime}`,
      );
    await this.ensureFinalizer(app, wanted);
    const ensured = await this.ensureEnvironments(app, wanted, {
      limits: request ?? {},
      lifetimeSeconds,
    });
    const removed = await this.removeDropped(app, wanted);
    return this.conclude(app, ensured, removed, !request);
  }

  /**
   * The spec cannot be applied as it is: every account stays exactly as it is (its Secret still
   * kept current, so a new CA bundle reaches it), nothing is added or taken away, and the status
   * says why. It waits for the App (or the ceiling) to change.
   */
  private async hold(app: AppObject, reason: string, message: string): Promise<ReconcileOutcome> {
    const { namespace, name } = app.metadata;
    const kept = await this.ensureEnvironments(
      app,
      this.deps.index.environments(namespace, name),
      KEEP_AS_IS,
    );
    const cause = new AppProblem(reason, message, "change");
    return this.conclude(app, { ...kept, problems: [cause, ...kept.problems] });
  }

  /** Announces what changed, records the status, and says what happens next. */
  private async conclude(
    app: AppObject,
    ensured: StepResult & { environments: EnvironmentStatus[] },
    removed: StepResult = { changes: [], problems: [] },
    disabled = false,
  ): Promise<ReconcileOutcome> {
    await this.announce(app, [...ensured.changes, ...removed.changes]);
    const problems = [...ensured.problems, ...removed.problems];
    const [problem] = problems;
    const notice = importNotice(ensured.environments);
    await this.record(app, {
      generation: app.metadata.generation ?? 0,
      environments: ensured.environments,
      expectedServers: this.deps.expectedServers,
      ...(problem ? { problem: { reason: problem.reason, message: problem.message } } : {}),
      ...(notice ? { notice } : {}),
      ...(disabled ? { disabled: true } : {}),
    });
    const outcome = outcomeOf(problems);
    if (outcome.kind !== "done") return outcome;
    return this.nextLook(ensured.environments) ?? outcome;
  }

  /** When the App must be looked at again though nothing changes: the soonest of its waits. */
  private nextLook(environments: EnvironmentStatus[]): ReconcileOutcome | undefined {
    const now = this.deps.now();
    const waits: { ms: number; why: string }[] = [];
    for (const e of environments) {
      waits.push(...credentialWaits(e, now));
      if (e.imports?.some((i) => i.reason === "ImportPending"))
        waits.push({ ms: PENDING_RECHECK_MS, why: `${e.name}: an import waits for its token` });
      if (lacksServers(e, this.deps.expectedServers))
        waits.push({
          ms: PARTIAL_RECHECK_MS,
          why: `${e.name}: not every server acknowledged the account yet`,
        });
    }
    const [soonest] = waits.sort((a, b) => a.ms - b.ms);
    if (!soonest) return undefined;
    // At least a second (times are recorded in whole seconds), at most what a timer can wait.
    return requeueAfter(Math.min(Math.max(1000, soonest.ms), MAX_DELAY_MS), soonest.why);
  }

  /** What in the App is over the platform team's ceilings, as one message; undefined if none. */
  private overCeilings(
    app: AppObject,
    wanted: string[],
    request: AccountRequest | undefined,
  ): string | undefined {
    const { ceilings } = this.deps;
    const issues = specOverCeilings(ceilings, wanted, request);
    // Looks at every App of the namespace: only when there is such a ceiling.
    const crowded =
      request && ceilings.appsPerNamespace !== undefined
        ? namespaceOverCeiling(ceilings, this.namespaceMembers(app), app.metadata.uid)
        : undefined;
    if (crowded) issues.push(crowded);
    return issues.length > 0 ? issues.join("; ") : undefined;
  }

  private namespaceMembers(app: AppObject): NamespaceMember[] {
    const { namespace, uid } = app.metadata;
    return this.deps
      .namespaceApps(namespace)
      .filter((other) => !other.metadata.deletionTimestamp || other.metadata.uid === uid)
      .map((other) => ({
        uid: other.metadata.uid,
        name: other.metadata.name,
        creationTimestamp: new Date(other.metadata.creationTimestamp ?? 0).toISOString(),
        hasAccounts: this.deps.index.environments(namespace, other.metadata.name).length > 0,
      }));
  }

  /** Held while the App has accounts, so deleting the App waits for them to be deleted. */
  private async ensureFinalizer(app: AppObject, wanted: string[]): Promise<void> {
    if (wanted.length > 0 && !holdsFinalizer(app)) await this.deps.writes.setFinalizer(app, true);
  }

  /**
   * Each environment on its own: one that fails does not hold the others hostage. The keys made
   * for any of them are saved together, with one write, before any of them is pushed.
   */
  private async ensureEnvironments(
    app: AppObject,
    wanted: string[],
    asked: Asked | typeof KEEP_AS_IS,
  ): Promise<StepResult & { environments: EnvironmentStatus[] }> {
    const { namespace, name } = app.metadata;
    const result: StepResult & { environments: EnvironmentStatus[] } = {
      environments: [],
      changes: [],
      problems: [],
    };
    // Read once, and only if an environment needs its stored keys.
    let loaded: Promise<AppKeys> | undefined;
    const keys = () => (loaded ??= this.loadKeys(namespace, name));
    const prepared: (Prepared | Failed)[] = [];
    for (const environment of wanted) {
      try {
        prepared.push(await this.prepareEnvironment(app, environment, asked, keys));
      } catch (error) {
        prepared.push({ environment, problem: describe(error, this.deps.scrub) });
      }
    }
    const notSaved = await this.saveMinted(app, keys, prepared);
    // Environments are independent: published together, an App is Ready sooner.
    const outcomes = await Promise.all(
      prepared.map(async (step): Promise<Published | AppProblem> => {
        if ("recorded" in step) return { status: step.recorded };
        if ("problem" in step) return step.problem;
        if (notSaved && step.minted.changed) return notSaved;
        try {
          return await this.publishEnvironment(step);
        } catch (error) {
          return describe(error, this.deps.scrub);
        }
      }),
    );
    for (const [i, outcome] of outcomes.entries()) {
      if (!(outcome instanceof AppProblem)) {
        result.environments.push(outcome.status);
        if (outcome.change) result.changes.push(outcome.change);
        continue;
      }
      result.problems.push(outcome);
      const environment = prepared[i]?.environment ?? "";
      const before = app.status?.environments?.find((e) => e.name === environment);
      result.environments.push({
        ...(before ?? { name: environment, secret: appSecretName(name, environment) }),
        ready: false,
      });
    }
    if (result.changes.length > 0) this.deps.linked(namespace, name);
    return result;
  }

  /**
   * Saves the keys minted for the App's environments with one write; what stopped it, if
   * anything did (each of those environments reports it and is not pushed).
   */
  private async saveMinted(
    app: AppObject,
    keys: () => Promise<AppKeys>,
    prepared: (Prepared | Failed)[],
  ): Promise<AppProblem | undefined> {
    const { namespace, name } = app.metadata;
    const put = new Map<string, StoredAccount>();
    for (const step of prepared)
      if ("minted" in step && step.minted.changed) put.set(step.environment, step.minted.stored);
    if (put.size === 0) return undefined;
    try {
      if (await saveAppKeys(this.deps.store, await keys(), { put })) return undefined;
    } catch (error) {
      return describe(error, this.deps.scrub);
    }
    // Keys the index did not know of (an outgoing leader's last write), or changed since they
    // were read: never replaced; the next run reads and uses them.
    for (const environment of put.keys()) this.deps.index.add(namespace, name, environment);
    return new AppProblem(
      "KeyStoreConflict",
      `${[...put.keys()].join(", ")}: account keys changed while new ones were being made; retrying with them`,
      "retry",
    );
  }

  /** Environments the App no longer lists (all of them with NATS off); then the finalizer goes. */
  private async removeDropped(app: AppObject, wanted: string[]): Promise<StepResult> {
    const { namespace, name } = app.metadata;
    const dropped = this.deps.index
      .environments(namespace, name)
      .filter((e) => !wanted.includes(e));
    const removed = await this.removeEnvironments(namespace, name, dropped);
    if (removed.problems.length === 0 && wanted.length === 0 && holdsFinalizer(app))
      await this.deps.writes.setFinalizer(app, false);
    return removed;
  }

  /**
   * The environment as its status records it, when nothing it was made from changed; else its
   * account as it should be (minted or re-signed from the stored keys, not saved yet).
   */
  private async prepareEnvironment(
    app: AppObject,
    environment: string,
    asked: Asked | typeof KEEP_AS_IS,
    keys: () => Promise<AppKeys>,
  ): Promise<Prepared> {
    const { namespace, name } = app.metadata;
    const { deps } = this;
    const identity = deps.identity();
    const secretName = appSecretName(name, environment);
    const existingSecret = deps.getSecret(namespace, secretName);
    const cachedConflict = existingSecret && secretConflict(existingSecret, app, environment);
    if (cachedConflict) throw cachedConflict;
    const where = { namespace, app: name, environment };
    const secretBase = {
      namespace,
      app: name,
      environment,
      owner: owner(app),
      ...deps.appUrls,
      caBundle: deps.caBundle(),
    };
    // The index lists every stored account (loaded at start, kept by the only writer): a new
    // environment needs no read that would only answer 404.
    const stored = deps.index.environments(namespace, name).includes(environment);
    const before = app.status?.environments?.find((e) => e.name === environment);
    const rotations = rotationsAsked(app.metadata.annotations, environment);
    const plan =
      asked !== KEEP_AS_IS
        ? sharingPlan(app, environment, {
            getApp: deps.getApp,
            account: (ns, a, env) => deps.index.account(ns, a, env),
          })
        : undefined;
    if (
      stored &&
      asked !== KEEP_AS_IS &&
      plan &&
      credentialsSettled(
        before,
        rotations,
        asked.lifetimeSeconds,
        deps.credentials.signingKeyMaxAgeSeconds,
        deps.now(),
      )
    ) {
      // Tokens are no part of the recipe: consent and the exporter's key are. An import still
      // waiting for its token was minted without it, so it differs, and the full path runs.
      const consented = plan.imports.flatMap((i) =>
        i.consent ? [importGrant(i.spec, i.consent, "")] : [],
      );
      const sharing = { exports: plan.exports, imports: consented };
      const spec = { ...where, limits: asked.limits, sharing };
      const recorded = this.recordedAsIs(spec, identity, before, existingSecret, secretBase);
      if (recorded)
        return {
          environment,
          recorded: this.readyAs(app, environment, {
            ...recorded,
            ...sharedStatus(plan.exportStatus, plan.imports),
          }),
        };
    }
    let previous: StoredAccount | undefined;
    if (stored) {
      const held = await keys();
      const damaged = held.damaged.get(environment);
      if (damaged) throw damaged;
      previous = held.accounts.get(environment);
    }
    const limits =
      asked !== KEEP_AS_IS
        ? asked.limits
        : previous
          ? requestFromLimits(decodeJwt<Account>(previous.accountJwt).nats.limits ?? {})
          : undefined;
    if (!limits) throw new KeyStoreError(`${environment}: no stored account to keep`);
    let sharing: Sharing;
    let shared: SharedStatus;
    if (plan) {
      const account = previous ? deps.index.account(namespace, name, environment) : undefined;
      const imports = await withTokens(plan, account, { store: deps.store, getApp: deps.getApp });
      sharing = { exports: plan.exports, imports: imports.grants };
      shared = sharedStatus(plan.exportStatus, imports.planned);
    } else {
      // Kept as it is, imports with the tokens they hold.
      sharing = previous ? sharingOf(previous) : NO_SHARING;
      shared = {
        ...(before?.exports ? { exports: before.exports } : {}),
        ...(before?.imports ? { imports: before.imports } : {}),
      };
    }
    const accountSpec = { ...where, limits, sharing };
    const { request, retired } = await credentialsRequest(
      previous,
      rotations,
      asked !== KEEP_AS_IS ? asked.lifetimeSeconds : undefined,
      {
        policy: deps.credentials,
        nowMs: deps.now(),
        connections: (account, user) => deps.servers().userConnections(account, user),
      },
    );
    return {
      environment,
      app,
      identity,
      accountSpec,
      minted: mintAppAccount(accountSpec, identity, previous, deps.now(), request),
      created: !previous,
      existingSecret,
      secretBase,
      before,
      retired,
      shared,
    };
  }

  /** Every stored account of the App, as the index lists them. */
  private loadKeys(namespace: string, name: string): Promise<AppKeys> {
    return loadAppKeys(
      this.deps.store,
      { namespace, app: name },
      this.deps.index.environments(namespace, name),
    );
  }

  /** Pushes the saved account where the servers lack it, then writes its app Secret. */
  private async publishEnvironment(step: Minted): Promise<Published> {
    const { deps } = this;
    const { environment, app, identity, accountSpec, minted, existingSecret, before } = step;
    const { namespace, name } = app.metadata;
    deps.index.add(namespace, name, environment, minted.publicKey);
    const revision = parseJwt(minted.stored.accountJwt).iat;
    // The status records what the servers acknowledged (a status from before `servers` was
    // recorded: every server); a restart with it current and complete pushes nothing.
    let servers = before?.servers ?? deps.expectedServers;
    let change: AccountChange | undefined;
    if (
      minted.changed ||
      before?.revision !== revision ||
      before.account !== minted.publicKey ||
      servers < deps.expectedServers
    ) {
      servers = (await deps.servers().push(minted.stored.accountJwt, identity)).length;
      deps.onPush("update");
      if (minted.changed) change = { environment, change: changeOf(step) };
    }
    const secretInput = {
      ...step.secretBase,
      creds: minted.creds,
      madeFrom: issuedFrom(accountSpec, identity, minted.publicKey, revision),
    };
    const secretName = appSecretName(name, environment);
    // The cache holds only the operator's labelled Secrets. On a miss a create, never an apply:
    // a forced apply would silently take over someone else's Secret of that name.
    if (!existingSecret) {
      if (!(await deps.writes.createSecret(appSecret(secretInput)))) {
        // Ours but not cached yet, or someone else's.
        const found = await deps.readSecret(namespace, secretName);
        const problem = found && secretConflict(found, app, environment);
        if (problem) throw problem;
        if (!found || !appSecretCurrent(found, secretInput))
          await deps.writes.applySecret(appSecret(secretInput), found);
      }
    } else if (!appSecretCurrent(existingSecret, secretInput)) {
      await deps.writes.applySecret(appSecret(secretInput), existingSecret);
    }
    await this.restartForRotation(app, environment, minted.stored);
    const rotation = rotationStatus(minted.stored, deps.credentials.rotationOverlapMs);
    const signingKey = signingKeyStatus(minted.stored, deps.credentials.signingKeyMaxAgeSeconds);
    const credentials = credentialsStatus(minted.stored);
    const status = this.readyAs(app, environment, {
      account: minted.publicKey,
      revision,
      servers,
      ...(rotation ? { rotation } : {}),
      ...(signingKey ? { signingKey } : {}),
      ...(credentials ? { credentials } : {}),
      ...step.shared,
    });
    return { status, ...(change ? { change } : {}) };
  }

  /**
   * While replaced credentials overlap, restarts the environment's workloads for an App that
   * asked for it, each once per rotation: their pods then start with the new credentials.
   */
  private async restartForRotation(
    app: AppObject,
    environment: string,
    stored: StoredAccount,
  ): Promise<void> {
    const spec = app.spec as Partial<AppSpec> | undefined;
    if (!stored.retiring || spec?.credentials?.restartWorkloads !== true) return;
    const restarted = await this.deps.writes.restartWorkloads(app.metadata.namespace, {
      app: app.metadata.name,
      environment,
      rotation: String(stored.retiring.since),
    });
    if (restarted.length > 0)
      await this.deps.writes.event(app, {
        type: "Normal",
        reason: "WorkloadsRestarted",
        message: `${restarted.join(", ")} restarted for the new credentials of ${environment}`,
      });
  }

  private readyAs(app: AppObject, environment: string, held: HeldAccount): EnvironmentStatus {
    return {
      name: environment,
      secret: appSecretName(app.metadata.name, environment),
      url: this.deps.appUrls.url,
      ready: true,
      ...held,
    };
  }

  /**
   * The account the status records, when nothing the environment was made from has changed
   * since: the status names the account and revision every server acknowledged, and the app
   * Secret's digest says it was written from that account, this recipe, CA bundle and URL, and
   * not edited since. Then the stored keys need not be read: a restart over thousands of Apps
   * reads no account and signs nothing.
   */
  private recordedAsIs(
    spec: AccountSpec,
    identity: OperatorIdentity,
    before: EnvironmentStatus | undefined,
    secret: V1Secret | undefined,
    secretBase: Omit<AppSecretSource, "madeFrom">,
  ): HeldAccount | undefined {
    const { deps } = this;
    if (!before?.ready || !before.account || before.revision === undefined) return undefined;
    if (lacksServers(before, deps.expectedServers)) return undefined;
    // The stored keys decide, not the status: keys of another account (replaced by hand), or
    // an entry the index could not read (incomplete, reported by the full path), go that way.
    if (deps.index.account(spec.namespace, spec.app, spec.environment) !== before.account)
      return undefined;
    const madeFrom = issuedFrom(spec, identity, before.account, before.revision);
    if (!appSecretUnchanged(secret, { ...secretBase, madeFrom })) return undefined;
    return {
      account: before.account,
      revision: before.revision,
      servers: before.servers ?? deps.expectedServers,
      ...(before.rotation ? { rotation: before.rotation } : {}),
      ...(before.signingKey ? { signingKey: before.signingKey } : {}),
      ...(before.credentials ? { credentials: before.credentials } : {}),
    };
  }

  /**
   * Deletes accounts from every server, then their Secrets, then their keys (those of all of
   * them with one write): a failure leaves the keys, so the next run tries again rather than
   * forgetting an account still served.
   */
  private async removeEnvironments(
    namespace: string,
    name: string,
    environments: string[],
  ): Promise<StepResult> {
    const { deps } = this;
    const result: StepResult = { changes: [], problems: [] };
    if (environments.length === 0) return result;
    const fail = (error: unknown) => result.problems.push(describe(error, deps.scrub));
    let keys: AppKeys;
    try {
      keys = await this.loadKeys(namespace, name);
    } catch (error) {
      fail(error);
      return result;
    }
    const gone: string[] = [];
    const deleted: string[] = [];
    for (const environment of environments) {
      try {
        const damaged = keys.damaged.get(environment);
        if (damaged) throw damaged;
        const stored = keys.accounts.get(environment);
        if (stored) {
          await deleteAppAccount(deps.servers(), stored, deps.identity());
          deps.onPush("delete");
          deleted.push(environment);
        }
        const secretName = appSecretName(name, environment);
        const secret = deps.getSecret(namespace, secretName);
        const claimedBy = secretOwner(secret);
        if (secret && claimedBy?.app === name && claimedBy.environment === environment)
          await deps.writes.deleteSecret(namespace, secretName);
        gone.push(environment);
      } catch (error) {
        fail(error);
      }
    }
    if (gone.length === 0) return result;
    try {
      if (!(await saveAppKeys(deps.store, keys, { drop: gone })))
        throw new AppProblem(
          "KeyStoreConflict",
          `${gone.join(", ")}: account keys changed while they were being deleted; retrying`,
          "retry",
        );
      for (const environment of gone) deps.index.remove(namespace, name, environment);
      for (const environment of deleted) result.changes.push({ environment, change: "deleted" });
      if (deleted.length > 0) deps.linked(namespace, name);
    } catch (error) {
      fail(error);
    }
    return result;
  }

  /**
   * One Event per kind of change and reconcile, naming the environments: an App's first
   * reconcile creates all its accounts, and an Event each would be as many API writes.
   */
  private async announce(app: AppObject, changes: AccountChange[]): Promise<void> {
    for (const [change, event] of Object.entries(ACCOUNT_EVENTS)) {
      const environments = changes.filter((c) => c.change === change).map((c) => c.environment);
      if (environments.length === 0) continue;
      await this.deps.writes.event(app, {
        type: event.type,
        reason: event.reason,
        message: event.message(environments.join(", "), environments.length > 1),
      });
    }
  }

  private async record(app: AppObject, outcome: StatusInput): Promise<void> {
    const status = appStatus(app.status, outcome, this.deps.now());
    if (sameStatus(app.status, status)) return;
    await this.deps.writes.applyStatus(app, status);
    const was = degradedReason(app.status);
    const now = degradedReason(status);
    const degraded = outcome.problem ?? outcome.notice;
    if (now && now !== was && degraded) {
      await this.deps.writes.event(app, {
        type: "Warning",
        reason: degraded.reason,
        message: degraded.message,
      });
    }
  }
}

/** A ready environment's account, as the servers acknowledged it. */
interface HeldAccount extends SharedStatus {
  account: string;
  revision: number;
  servers: number;
  rotation?: RotationStatus;
  signingKey?: SigningKeyStatus;
  credentials?: CredentialsStatus;
}

/** What a mint that changed the account did, as it is announced. */
function changeOf(step: Minted): AccountChange["change"] {
  if (step.created) return "created";
  if (step.minted.rotated === "renewal") return "renewed";
  if (step.minted.rotated === "signing-key") return "signingKeyRotated";
  if (step.minted.rotated) return "rotated";
  if (step.retired && step.minted.revoked.length > 0) return step.retired;
  return "updated";
}

/** What an app Secret's creds were made from, besides the account's keys. */
function issuedFrom(
  spec: AccountSpec,
  identity: OperatorIdentity,
  account: string,
  revision: number,
): string {
  return JSON.stringify([accountRecipe(spec, identity), account, revision]);
}

function nameIssues(namespace: string, name: string): string[] {
  try {
    // Any environment name will do: the App's own names are what is checked here.
    validateAccountSpec({ namespace, app: name, environment: "x" });
    return [];
  } catch (error) {
    if (error instanceof AccountSpecError)
      return error.issues.map(
        (i) => `metadata.${i.path === "app" ? "name" : i.path}: ${i.message}`,
      );
    throw error;
  }
}
