/**
 * Child processes (etcd, kube-apiserver, nats-server) that must never outlive their owner:
 * not on a failed test, not on Ctrl-C, not even when the owner is SIGKILLed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, rmSync } from "node:fs";

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

// setpriv sets PR_SET_PDEATHSIG before exec: the kernel kills the child when this process
// dies, however it dies. Node has no binding for prctl, and exit handlers do not run on SIGKILL.
const SETPRIV = "/usr/bin/setpriv";
const live = new Set<ManagedProcess>();

export class ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly exited: Promise<Exit>;
  private readonly child: ChildProcess;
  private exit: Exit | undefined;

  private constructor(options: StartOptions) {
    this.name = options.name;
    this.logFile = options.logFile;
    const fd = openSync(options.logFile, "a");
    const [command, args] = existsSync(SETPRIV)
      ? [SETPRIV, ["--pdeathsig", "KILL", "--", options.command, ...options.args]]
      : [options.command, options.args];
    try {
      this.child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ["ignore", fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
      this.child.once("error", (error) => {
        this.exit = { code: null, signal: null };
        live.delete(this);
        process.stderr.write(`${this.name}: failed to start: ${error.message}\n`);
        resolve(this.exit);
      });
    });
    live.add(this);
    installExitHooks();
  }

  static start(options: StartOptions): ManagedProcess {
    return new ManagedProcess(options);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Sends a signal without waiting (e.g. SIGHUP to make nats-server reload). */
  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 5000): Promise<Exit> {
    if (!this.running) return this.exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Immediate SIGKILL, for crash tests. */
  async kill(): Promise<Exit> {
    if (this.running) this.child.kill("SIGKILL");
    return this.exited;
  }

  /** The last `lines` lines of the process's log. */
  tail(lines = 40): string {
    if (!existsSync(this.logFile)) return "";
    const text = readFileSync(this.logFile, "utf8").trimEnd().split("\n");
    return text.slice(-lines).join("\n");
  }

  describeExit(): string {
    if (!this.exit) return "running";
    return this.exit.signal
      ? `killed by ${this.exit.signal}`
      : `exited with code ${this.exit.code}`;
  }
}

/**
 * Whether `pid` is a running process. A zombie is not: it has exited and only waits for its
 * parent (or init, slow to reap on some machines) to collect it.
 */
/**
 * Runs a short command to completion; resolves to its output (stdout and stderr together),
 * rejects with the end of it when the command fails.
 */
export function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    let output = "";
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolve(output);
      else
        reject(
          new Error(
            `${command} ${args.slice(0, 6).join(" ")} failed (${signal ?? `exit ${String(code)}`}):\n${output.slice(-4000)}`,
          ),
        );
    });
  });
}

export function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The last `lines` lines of each process's log, headed by its name, state and log path. */
export function logTails(processes: ManagedProcess[], lines = 40): string {
  return processes
    .map((p) => `--- ${p.name} (${p.describeExit()}), ${p.logFile}\n${p.tail(lines)}`)
    .join("\n");
}

let hooksInstalled = false;
const cleanups = new Set<() => void>();

/**
 * Runs `cleanup` (synchronous: it may run in an 'exit' handler) when this process exits or is
 * interrupted, after its servers are killed; clean-ups run in the reverse order of their
 * registration. Returns a function that cancels it.
 */
export function cleanUpOnExit(cleanup: () => void): () => void {
  cleanups.add(cleanup);
  installExitHooks();
  return () => cleanups.delete(cleanup);
}

/** Removes `dir` when this process exits or is interrupted, after its servers are killed. */
export function removeOnExit(dir: string): () => void {
  return cleanUpOnExit(() => {
    rmSync(dir, { recursive: true, force: true });
  });
}

function cleanUpNow(): void {
  for (const p of live) p.signal("SIGKILL");
  // Last registered, first run: what was set up later may depend on what was set up earlier
  // (a node's clean-up must finish before the host lock taken for it is released).
  for (const cleanup of [...cleanups].reverse()) {
    try {
      cleanup();
    } catch (error) {
      process.stderr.write(
        `clean-up failed: ${error instanceof Error ? error.message : String(error)}\n`,
      );
    }
  }
  cleanups.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' does not fire when a signal ends the process, hence the signal handlers, which
  // clean up and then die of the same signal so the parent sees the usual status.
  process.once("exit", cleanUpNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      // Reap the servers before dying, so none lingers even as a zombie; a second signal
      // finds no handler and ends this process at once.
      void Promise.all([...live].map((p) => p.kill())).finally(() => {
        cleanUpNow();
        process.kill(process.pid, signal);
      });
    });
  }
}
