import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);

test("without Go, provisioning fails with a message that says what to install", async () => {
  const cache = mkdtempSync(join(tmpdir(), "nats-tenancy-toolchain-test-"));
  try {
    // An empty cache forces a build; a PATH without Go makes it impossible.
    const script =
      'import("./src/embedded/toolchain.ts").then((m) => m.ensureToolchain(() => {})).catch((e) => { console.log(e.name + ": " + e.message); process.exit(3); });';
    const result = await run(process.execPath, ["--input-type=module", "-e", script], {
      env: { PATH: cache, NATS_TENANCY_CACHE: cache, HOME: cache },
    }).then(
      () => ({ code: 0, stdout: "" }),
      (error: unknown) => error as { code: number; stdout: string },
    );
    assert.equal(result.code, 3);
    assert.match(
      result.stdout,
      /ToolchainError: Go 1\.26 or newer is needed .* 'go' was not found on PATH\. Install Go/,
    );
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
