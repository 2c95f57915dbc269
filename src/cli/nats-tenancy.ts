/**
 * The `nats-tenancy` tool (also `kubectl nats-tenancy`): for app teams, the App their
 * iterapp.toml means; for everyone, what an app connects to. It talks to the API server as the
 * caller, like kubectl, and starts nothing (the operator is `npm start`).
 * Exit codes: 0 done, 1 failed, 2 asked wrongly.
 */
import { IterappError } from "../crds/iterapp-toml.ts";
import { apiAnswer, apiErrorSentence } from "../kube/api-errors.ts";
import { CommandError, UsageError, parse, type Command, type Output } from "./commands/command.ts";
import { env, info, list } from "./commands/info.ts";
import { iterapp } from "./commands/iterapp.ts";
import { rotate } from "./commands/rotate.ts";
import { backup, restore } from "./commands/backup.ts";
import { rotateOperatorKey } from "./commands/operator-key.ts";

const COMMANDS: Record<string, Command> = {
  iterapp,
  info,
  list,
  env,
  rotate,
  backup,
  restore,
  "rotate-operator-key": rotateOperatorKey,
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    "usage: nats-tenancy COMMAND [flags]   (or: kubectl nats-tenancy COMMAND [flags])",
    "",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    "nats-tenancy COMMAND --help tells more.",
    "",
  ].join("\n");
}

export async function main(argv: string[], output: Output): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? output.err : output.out)(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    output.err(`nats-tenancy: unknown command ${name}\n${usage()}`);
    return 2;
  }
  try {
    const { values, positionals } = parse(command, args);
    if (values.help === true) {
      output.out(`usage: ${command.usage}`);
      return 0;
    }
    await command.run(values, positionals, output);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      output.err(`nats-tenancy ${name}: ${error.message}\nusage: ${command.usage}`);
      return 2;
    }
    const answer = apiAnswer(error);
    const message = answer
      ? apiErrorSentence(answer)
      : error instanceof CommandError || error instanceof IterappError
        ? error.message
        : error instanceof Error
          ? error.message
          : String(error);
    output.err(`nats-tenancy ${name}: ${message}\n`);
    return 1;
  }
}

/** The process's arguments and streams: what bin/nats-tenancy and the kubectl plugin run. */
export async function runAsProcess(): Promise<void> {
  process.exitCode = await main(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  });
}
