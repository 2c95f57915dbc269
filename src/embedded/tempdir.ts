/**
 * Working directories for embedded servers: named after the owning process, removed when it
 * exits or is interrupted, and swept on a later start if it was SIGKILLed.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeOnExit } from "./process.ts";

const PREFIX = "nats-tenancy-";
function sweepDeadOwners(): void {
  for (const name of readdirSync(tmpdir())) {
    const owner = /^nats-tenancy-[a-z]+-(\d+)-/.exec(name)?.[1];
    if (owner && Number(owner) !== process.pid && !existsSync(`/proc/${owner}`)) {
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

/** A new directory that lives as long as this process. `purpose` is lower-case letters. */
export function ownedTempDir(purpose: string): { dir: string; release: () => void } {
  sweepDeadOwners();
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${purpose}-${process.pid}-`));
  const forget = removeOnExit(dir);
  return {
    dir,
    release: () => {
      forget();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
