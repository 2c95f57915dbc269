/**
 * `npm test` after lint: provision the toolchain (built once, cached), then run every unit
 * and e2e test with node's test runner.
 */
import { spawn } from "node:child_process";
import { ensureToolchain } from "../src/embedded/toolchain.ts";

const started = Date.now();
await ensureToolchain((line) => {
  process.stdout.write(`${line}\n`);
});
process.stdout.write(`toolchain ready in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

const patterns =
  process.argv.length > 2
    ? process.argv.slice(2)
    : ["test/unit/**/*.test.ts", "test/e2e/**/*.test.ts"];
const child = spawn(
  process.execPath,
  ["--test", "--test-concurrency=2", "--test-timeout=600000", ...patterns],
  { stdio: "inherit" },
);
const forward = (signal: NodeJS.Signals): void => {
  child.kill(signal);
};
process.on("SIGINT", forward);
process.on("SIGTERM", forward);
child.on("exit", (code, signal) => {
  process.stdout.write(`tests finished in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
