/**
 * What a new App gets at admission: the finalizer, when it asks for accounts. The controller
 * would otherwise add it with a write of its own before its first account.
 *
 * Whether an App may be stored: refused when it asks for more than the platform team's
 * ceilings allow, or shares subjects in a way the admission policy cannot check, with every
 * breach named. Only a change of the spec is judged: the controller's own
 * updates (its finalizer) and anything else about an App already stored always pass, so a
 * ceiling lowered later never blocks a deletion or a label change.
 */
import { isDeepStrictEqual } from "node:util";
import { namespaceFull, specOverCeilings, type Ceilings } from "../accounts/ceilings.ts";
import type { Operation } from "fast-json-patch";
import { FINALIZER, holdsFinalizer, type AppObject } from "../contract/app-object.ts";
import {
  appSchemaIssues,
  natsEnvironments,
  natsRequest,
  sharingIssues,
  type AppSpec,
} from "../crds/app.ts";
import type { AppCreation, AppReview } from "./admission-review.ts";

/** The JSONPatch that adds the finalizer to an App being created with accounts; none else. */
export function finalizeApp({ app }: AppCreation): Operation[] {
  if (natsEnvironments(app.spec).length === 0 || holdsFinalizer(app)) return [];
  return app.metadata.finalizers
    ? [{ op: "add", path: "/metadata/finalizers/-", value: FINALIZER }]
    : [{ op: "add", path: "/metadata/finalizers", value: [FINALIZER] }];
}

/** The reason to refuse the App, or undefined to allow it. */
export function judgeApp(
  review: AppReview,
  ceilings: Ceilings,
  namespaceApps: () => readonly AppObject[],
): string | undefined {
  const { app, oldApp } = review;
  if (review.operation === "UPDATE" && isDeepStrictEqual(app.spec, oldApp?.spec)) return undefined;
  // The CRD schema and its admission policy refuse a malformed spec with their own messages.
  if (appSchemaIssues(app.spec).length > 0) return undefined;
  const spec = app.spec as AppSpec;
  const sharing = sharingIssues(spec);
  if (sharing.length > 0)
    return `App ${review.namespace}/${app.metadata.name}: ${sharing.map((i) => `spec.${i.path}: ${i.message}`).join("; ")}`;
  const request = natsRequest(spec);
  const issues = specOverCeilings(ceilings, spec.environments, request);
  if (review.operation === "CREATE") {
    const others = namespaceApps().filter(
      (other) => other.metadata.name !== app.metadata.name && !other.metadata.deletionTimestamp,
    ).length;
    const full = namespaceFull(ceilings, others);
    if (full) issues.push(full);
  }
  if (issues.length === 0) return undefined;
  return `App ${review.namespace}/${app.metadata.name} is over the platform's ceilings: ${issues.join("; ")}`;
}
