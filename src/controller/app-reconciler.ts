/**
 * One App's reconcile, level-triggered: read the App, the stored accounts and the app
 * Secrets, compute what should be, and change only what differs. Order matters for what a
 * crash leaves behind: keys are saved before an account is pushed (no account on a server
 * without its keys), an account is deleted from the servers before its Secret and keys (a
 * half-done delete is retried, never forgotten), and the finalizer goes last.
 */
import type { V1OwnerReference, V1Secret } from "@kubernetes/client-node";
import { deleteAppAccount } from "../accounts/account-deletion.ts";
import { mintAppAccount } from "../accounts/app-account.ts";
import type { OperatorIdentity } from "../accounts/identities.ts";
import { parseJwt } from "../accounts/jwt.ts";
import {
  KeyStoreError,
  createAccount,
  forgetAccount,
  loadAccount,
  saveAccount,
  type SecretStore,
} from "../accounts/key-store.ts";
import type { ResolverClient } from "../accounts/resolver-client.ts";
import {
  ResolverRejectedError,
  ResolverTimeoutError,
  InvalidClaimsError,
} from "../accounts/resolver-client.ts";
import { AccountSpecError, validateAccountSpec, type AccountRequest } from "../accounts/spec.ts";
import {
  APP_API_VERSION,
  APP_KIND,
  appSpecIssues,
  natsRequest,
  type AppSpec,
  type EnvironmentStatus,
} from "../crds/app.ts";
import type { AccountIndex } from "./account-index.ts";
import type { AppObject } from "../contract/app-object.ts";
import { appSecret, appSecretCurrent, appSecretName, secretOwner } from "../contract/app-secret.ts";
import { appStatus, degradedReason, sameStatus, type Outcome } from "./app-status.ts";
import { FINALIZER, type AppWrites } from "./app-writes.ts";
import { NatsUnavailableError } from "./nats-link.ts";

/** A reason the App cannot be fully reconciled that its owner can act on. */
export class AppProblem extends Error {
  override name = "AppProblem";
  readonly reason: string;
  /** False when retrying cannot help until the App (or its namespace) changes. */
  readonly retry: boolean;

  constructor(reason: string, message: string, retry: boolean) {
    super(message);
    this.reason = reason;
    this.retry = retry;
  }
}

export interface ReconcilerDeps {
  identity: OperatorIdentity;
  caBundle: () => string;
  /** NATS_URL written into app Secrets. */
  appUrl: string;
  store: SecretStore;
  index: AccountIndex;
  /** Throws NatsUnavailableError while there is no connection. */
  resolver: () => ResolverClient;
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
  now: () => number;
}

export type ReconcileResult = undefined | { requeueAfterMs: number };

interface AccountChange {
  environment: string;
  change: "created" | "updated" | "deleted";
}

const EVENT_REASONS = {
  created: "AccountCreated",
  updated: "AccountUpdated",
  deleted: "AccountDeleted",
} as const;

function describe(error: unknown, scrub: (text: string) => string): AppProblem {
  if (error instanceof AppProblem) return error;
  const message = scrub(error instanceof Error ? error.message : String(error));
  if (error instanceof NatsUnavailableError || error instanceof ResolverTimeoutError)
    return new AppProblem("NatsUnavailable", message, true);
  if (error instanceof ResolverRejectedError || error instanceof InvalidClaimsError)
    return new AppProblem("NatsRejected", message, true);
  if (error instanceof AccountSpecError) return new AppProblem("InvalidSpec", message, false);
  if (error instanceof KeyStoreError) return new AppProblem("KeyStoreError", message, true);
  return new AppProblem("ReconcileError", message, true);
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

export class AppReconciler {
  private readonly deps: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.deps = deps;
  }

  /** Reconciles `namespace/name`; throws to be retried with backoff. */
  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace = "", name = ""] = key.split("/");
    const stored = this.deps.index.environments(namespace, name);
    // Deleting accounts on the word of a cache would be unforgivable if the cache were wrong:
    // an App it lacks is looked up before its accounts are called orphans.
    const app =
      this.deps.getApp(namespace, name) ??
      (stored.length > 0 ? await this.deps.readApp(namespace, name) : undefined);
    if (!app) {
      // Gone without our finalizer (it never had one, or it was removed by hand): whatever
      // keys remain are orphans.
      await this.removeEnvironments(namespace, name, stored);
      return undefined;
    }
    if (app.metadata.deletionTimestamp) return this.finalize(app);
    return this.converge(app);
  }

  private async finalize(app: AppObject): Promise<ReconcileResult> {
    if (!(app.metadata.finalizers ?? []).includes(FINALIZER)) return undefined;
    const { namespace, name } = app.metadata;
    try {
      await this.removeEnvironments(namespace, name, this.deps.index.environments(namespace, name));
    } catch (error) {
      const problem = describe(error, this.deps.scrub);
      await this.record(app, {
        generation: app.metadata.generation ?? 0,
        environments: app.status?.environments ?? [],
        problem: {
          reason: "DeletionBlocked",
          message: `accounts cannot be deleted yet, so the App stays until they are: ${problem.message}`,
        },
      });
      throw error;
    }
    await this.deps.writes.setFinalizer(app, false);
    return undefined;
  }

  private async converge(app: AppObject): Promise<ReconcileResult> {
    const { namespace, name } = app.metadata;
    const generation = app.metadata.generation ?? 0;
    const issues = [
      ...appSpecIssues(app.spec).map((i) => `spec${i.path ? `.${i.path}` : ""}: ${i.message}`),
      ...nameIssues(namespace, name),
    ];
    if (issues.length > 0) {
      // Nothing that already works is touched: the previous environments keep their accounts.
      await this.record(app, {
        generation,
        environments: app.status?.environments ?? [],
        problem: { reason: "InvalidSpec", message: issues.join("; ") },
      });
      return undefined;
    }
    const spec = app.spec as AppSpec;
    const request = natsRequest(spec);
    const wanted = request ? [...spec.environments] : [];
    const stored = this.deps.index.environments(namespace, name);
    const hasFinalizer = (app.metadata.finalizers ?? []).includes(FINALIZER);
    if (wanted.length > 0 && !hasFinalizer) await this.deps.writes.setFinalizer(app, true);

    const environments: EnvironmentStatus[] = [];
    const changes: AccountChange[] = [];
    let failure: unknown;
    for (const environment of wanted) {
      try {
        environments.push(await this.ensureEnvironment(app, environment, request, changes));
      } catch (error) {
        failure ??= error;
        const before = app.status?.environments?.find((e) => e.name === environment);
        environments.push({
          ...(before ?? { name: environment, secret: appSecretName(name, environment) }),
          ready: false,
        });
      }
    }
    const dropped = stored.filter((e) => !wanted.includes(e));
    try {
      await this.removeEnvironments(namespace, name, dropped, changes);
    } catch (error) {
      failure ??= error;
    }
    await this.announce(app, changes);
    if (!failure && wanted.length === 0 && hasFinalizer)
      await this.deps.writes.setFinalizer(app, false);

    const problem = failure === undefined ? undefined : describe(failure, this.deps.scrub);
    await this.record(app, {
      generation,
      environments,
      ...(problem ? { problem: { reason: problem.reason, message: problem.message } } : {}),
      ...(request ? {} : { disabled: true }),
    });
    if (problem?.retry) throw failure;
    return undefined;
  }

  private async ensureEnvironment(
    app: AppObject,
    environment: string,
    request: AccountRequest | undefined,
    changes: AccountChange[],
  ): Promise<EnvironmentStatus> {
    const { namespace, name } = app.metadata;
    const { deps } = this;
    const secretName = appSecretName(name, environment);
    const conflict = (secret: V1Secret): AppProblem | undefined => {
      const claimedBy = secretOwner(secret);
      if (claimedBy?.app === name && claimedBy.environment === environment) return undefined;
      return new AppProblem(
        "SecretConflict",
        `Secret ${namespace}/${secretName} already exists and is not this App's ${environment} Secret` +
          (claimedBy ? ` (it belongs to ${claimedBy.app}/${claimedBy.environment})` : "") +
          "; rename the App or the environment, or delete that Secret",
        // Retried with backoff: the Secret in the way is not watched, so its removal sends no event.
        true,
      );
    };
    const existingSecret = deps.getSecret(namespace, secretName);
    const cachedConflict = existingSecret && conflict(existingSecret);
    if (cachedConflict) throw cachedConflict;
    const accountSpec = {
      namespace,
      app: name,
      environment,
      ...(request ? { limits: request } : {}),
    };
    // The index lists every stored account (loaded at start, kept by the only writer): a new
    // environment needs no read that would only answer 404.
    const previous = deps.index.environments(namespace, name).includes(environment)
      ? await loadAccount(deps.store, accountSpec)
      : undefined;
    const minted = mintAppAccount(accountSpec, deps.identity, previous, deps.now());
    if (minted.changed) {
      if (previous) await saveAccount(deps.store, accountSpec, minted.stored);
      else if (!(await createAccount(deps.store, accountSpec, minted.stored))) {
        // Keys the index did not know of (an outgoing leader's last write): never replace
        // them; the next run loads and uses them.
        deps.index.add(namespace, name, environment);
        throw new AppProblem(
          "KeyStoreConflict",
          `${environment}: account keys appeared while new ones were being made; retrying with them`,
          true,
        );
      }
      deps.index.add(namespace, name, environment);
    }
    const revision = parseJwt(minted.stored.accountJwt).iat;
    const before = app.status?.environments?.find((e) => e.name === environment);
    // The status records what every server acknowledged; a restart with it current pushes nothing.
    if (minted.changed || before?.revision !== revision || before.account !== minted.publicKey) {
      await deps.resolver().push(minted.stored.accountJwt, deps.identity);
      deps.onPush("update");
      if (minted.changed) changes.push({ environment, change: previous ? "updated" : "created" });
    }
    const secretInput = {
      namespace,
      app: name,
      environment,
      owner: owner(app),
      url: deps.appUrl,
      creds: minted.creds,
      caBundle: deps.caBundle(),
    };
    // The cache holds only the operator's labelled Secrets. On a miss a create, never an apply:
    // a forced apply would silently take over someone else's Secret of that name.
    if (!existingSecret) {
      if (!(await deps.writes.createSecret(appSecret(secretInput)))) {
        // Ours but not cached yet, or someone else's.
        const found = await deps.readSecret(namespace, secretName);
        const problem = found && conflict(found);
        if (problem) throw problem;
        if (!found || !appSecretCurrent(found, secretInput))
          await deps.writes.applySecret(appSecret(secretInput));
      }
    } else if (!appSecretCurrent(existingSecret, secretInput)) {
      await deps.writes.applySecret(appSecret(secretInput));
    }
    return {
      name: environment,
      account: minted.publicKey,
      secret: secretName,
      url: deps.appUrl,
      ready: true,
      revision,
    };
  }

  /** Deletes accounts from every server, then their Secrets, then their keys. */
  private async removeEnvironments(
    namespace: string,
    name: string,
    environments: string[],
    changes?: AccountChange[],
  ): Promise<void> {
    const { deps } = this;
    for (const environment of environments) {
      const spec = { namespace, app: name, environment };
      const stored = await loadAccount(deps.store, spec);
      if (stored) {
        await deleteAppAccount(deps.resolver(), stored, deps.identity);
        deps.onPush("delete");
      }
      const secretName = appSecretName(name, environment);
      const secret = deps.getSecret(namespace, secretName);
      const claimedBy = secretOwner(secret);
      if (secret && claimedBy?.app === name && claimedBy.environment === environment)
        await deps.writes.deleteSecret(namespace, secretName);
      await forgetAccount(deps.store, spec);
      deps.index.remove(namespace, name, environment);
      if (stored) changes?.push({ environment, change: "deleted" });
    }
  }

  /**
   * One Event per kind of change and reconcile, naming the environments: an App's first
   * reconcile creates all its accounts, and an Event each would be as many API writes.
   */
  private async announce(app: AppObject, changes: AccountChange[]): Promise<void> {
    for (const change of ["created", "updated", "deleted"] as const) {
      const environments = changes.filter((c) => c.change === change).map((c) => c.environment);
      if (environments.length === 0) continue;
      const plural = environments.length > 1 ? "s" : "";
      await this.deps.writes.event(app, {
        type: "Normal",
        reason: EVENT_REASONS[change],
        message:
          `NATS account${plural} of ${environments.join(", ")} ${change} on every server` +
          (change === "deleted"
            ? `; ${plural ? "their Secrets are" : "its Secret is"} removed`
            : ""),
      });
    }
  }

  private async record(app: AppObject, outcome: Outcome): Promise<void> {
    const status = appStatus(app.status, outcome, this.deps.now());
    if (sameStatus(app.status, status)) return;
    await this.deps.writes.applyStatus(app, status);
    const was = degradedReason(app.status);
    const now = degradedReason(status);
    if (now && now !== was && outcome.problem) {
      await this.deps.writes.event(app, {
        type: "Warning",
        reason: outcome.problem.reason,
        message: outcome.problem.message,
      });
    }
  }
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
