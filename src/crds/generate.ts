/**
 * Writes the App API for the Helm chart (`npm run crds`): the CRD and the admission policy that
 * checks what the CRD cannot. The chart's templates/crds.yaml renders this file (behind
 * crds.install, with crds.keep), so `helm upgrade` updates them, which helm never does for a
 * crds/ folder. The file is committed so the chart needs none of this code;
 * test/unit/crd.test.ts fails when it is stale.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { appManifestsYaml } from "./crd.ts";

export const APP_CRD_FILE = join(
  import.meta.dirname,
  "../../deploy/helm/nats-tenancy/files/app-api.yaml",
);

if (import.meta.main) {
  mkdirSync(dirname(APP_CRD_FILE), { recursive: true });
  writeFileSync(APP_CRD_FILE, appManifestsYaml());
  process.stdout.write(`wrote ${APP_CRD_FILE}\n`);
}
