/**
 * The App an Iterapp-style `iterapp.toml` means. Only `nats` and `default_environment` are read;
 * the rest of the file belongs to the platform that deploys it.
 *
 * - `nats = true` / `nats = false`, or a `[nats]` table: an empty table means on, its keys are
 *   the App's limits with the CRD's names and ranges, JetStream in `[nats.jetstream]`.
 * - Environments: Iterapp's `prod` and `test`, plus `default_environment` when set; an
 *   `environments = [...]` key in `[nats]` replaces them, and the caller's own list (a flag)
 *   replaces both.
 *
 * Every problem is reported with the file's line and column and the key, all at once, checked
 * by the same schema the CRD is generated from.
 */
import { ParseError, getStaticTOMLValue, parseTOML, type AST } from "toml-eslint-parser";
import { APP_API_VERSION, APP_KIND, appSpecIssues, type AppSpec } from "./app.ts";

export const ITERAPP_DEFAULT_ENVIRONMENTS = ["prod", "test"] as const;

export interface IterappIssue {
  /** Absent for what did not come from the file (a flag). */
  line?: number;
  column?: number;
  /** The key as written in the file, dotted (`nats.jetstream.memory`). */
  key: string;
  message: string;
}

export class IterappError extends Error {
  override name = "IterappError";
  readonly issues: IterappIssue[];

  constructor(file: string, issues: IterappIssue[]) {
    super(
      issues
        .map(
          (i) =>
            `${i.line === undefined ? "" : `${file}:${String(i.line)}:${String(i.column)}: `}${i.key}: ${i.message}`,
        )
        .join("\n"),
    );
    this.issues = issues;
  }
}

export interface IterappApp {
  apiVersion: typeof APP_API_VERSION;
  kind: typeof APP_KIND;
  metadata: { name: string; namespace: string };
  spec: AppSpec;
}

export interface IterappInput {
  /** The file's text. */
  text: string;
  /** Its name, for messages. */
  file: string;
  app: string;
  namespace: string;
  /** The caller's environments (a flag): they replace whatever the file says. */
  environments?: string[];
}

interface Position {
  line: number;
  column: number;
}

/** Where each dotted key was written (`nats`, `nats.connections`, `nats.environments[1]`). */
function positions(program: AST.TOMLProgram): Map<string, Position> {
  const found = new Map<string, Position>();
  const at = (node: AST.TOMLNode): Position => ({
    line: node.loc.start.line,
    // 1-based, as editors count.
    column: node.loc.start.column + 1,
  });
  const name = (key: AST.TOMLKey): string[] =>
    key.keys.map((k) => (k.type === "TOMLBare" ? k.name : k.value));
  // `key` is where the key is written, `key=` where its value is.
  const visit = (path: string, value: AST.TOMLContentNode): void => {
    found.set(`${path}=`, at(value));
    if (value.type === "TOMLInlineTable") for (const entry of value.body) visitEntry(path, entry);
    if (value.type === "TOMLArray")
      value.elements.forEach((element, index) => {
        visit(`${path}[${String(index)}]`, element);
      });
  };
  const visitEntry = (prefix: string, entry: AST.TOMLKeyValue): void => {
    const path = [...(prefix ? [prefix] : []), ...name(entry.key)].join(".");
    found.set(path, at(entry.key));
    visit(path, entry.value);
  };
  for (const item of program.body[0].body) {
    if (item.type === "TOMLKeyValue") visitEntry("", item);
    else {
      const path = item.resolvedKey.join(".");
      if (!found.has(path)) found.set(path, at(item.key));
      for (const entry of item.body) visitEntry(path, entry);
    }
  }
  return found;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The App `iterapp.toml` means; throws IterappError naming every problem. */
export function iterappApp(input: IterappInput): IterappApp {
  let program: AST.TOMLProgram;
  try {
    program = parseTOML(input.text);
  } catch (error) {
    if (!(error instanceof ParseError)) throw error;
    throw new IterappError(input.file, [
      {
        line: error.lineNumber,
        column: error.column + 1,
        key: "(file)",
        message: `not valid TOML: ${error.message.replace(/ \(\d+:\d+\)$/, "")}`,
      },
    ]);
  }
  const document = getStaticTOMLValue(program) as Record<string, unknown>;
  const where = positions(program);
  const issues: IterappIssue[] = [];
  const report = (key: string, message: string, at: "key" | "value" = "value"): void => {
    const position =
      (at === "value" ? where.get(`${key}=`) : undefined) ??
      where.get(key) ??
      where.get(key.replace(/\[\d+\]$/, ""));
    issues.push({ ...position, key, message });
  };

  const raw = document.nats;
  let nats: AppSpec["nats"] = false;
  let fileEnvironments: unknown;
  if (typeof raw === "boolean") nats = raw;
  else if (isTable(raw)) {
    const { environments, ...limits } = raw;
    fileEnvironments = environments;
    nats = Object.keys(limits).length === 0 ? true : limits;
  } else if (raw !== undefined) {
    report("nats", `must be true, false, or a [nats] table of limits; got ${JSON.stringify(raw)}`);
  }

  const defaultEnvironment = document.default_environment;
  if (defaultEnvironment !== undefined && typeof defaultEnvironment !== "string")
    report("default_environment", "must be a string");
  let environments: unknown;
  let environmentsKey: string;
  if (input.environments) {
    environments = input.environments;
    environmentsKey = "--environments";
  } else if (fileEnvironments !== undefined) {
    environments = fileEnvironments;
    environmentsKey = "nats.environments";
  } else {
    const extra = typeof defaultEnvironment === "string" ? [defaultEnvironment] : [];
    environments = [...new Set([...ITERAPP_DEFAULT_ENVIRONMENTS, ...extra])];
    environmentsKey = extra.length > 0 ? "default_environment" : "environments";
  }

  const spec = { nats, environments } as AppSpec;
  if (issues.length === 0) {
    for (const issue of appSpecIssues(spec)) {
      const key = issue.path.startsWith("environments")
        ? environmentsKey === "default_environment"
          ? "default_environment"
          : issue.path.replace(/^environments/, environmentsKey)
        : issue.path;
      report(
        key,
        issue.message,
        issue.message.startsWith("is not a known field") ? "key" : "value",
      );
    }
  }
  if (issues.length > 0) throw new IterappError(input.file, issues);
  return {
    apiVersion: APP_API_VERSION,
    kind: APP_KIND,
    metadata: { name: input.app, namespace: input.namespace },
    spec,
  };
}
