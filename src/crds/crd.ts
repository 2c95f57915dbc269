/**
 * The App CustomResourceDefinition, derived from the TypeBox schemas in app.ts. The API server
 * wants a structural schema: every node has one type, and anyOf may only restate what the
 * types already allow. A union of differing types (nats: boolean or object of limits) is
 * therefore emitted as an untyped node that keeps whatever is sent.
 *
 * The CRD cannot check such a node itself: the API server gives an untyped node no CEL type, so
 * rules on it are refused ("unable to convert structural schema to CEL declarations") and rules
 * on its parent cannot name it ("undefined field"). Its checks are CEL rules generated from the
 * same TypeBox definition, run by a ValidatingAdmissionPolicy, where objects are dynamic.
 */
import { Kind, type TSchema } from "@sinclair/typebox";
import { stringify } from "yaml";
import {
  APP_GROUP,
  APP_KIND,
  APP_PLURAL,
  APP_SHORT_NAME,
  APP_VERSION,
  AppSchema,
  errorMessageOf,
} from "./app.ts";

type JsonSchema = Record<string, unknown>;

interface CelRule {
  expression: string;
  message: string;
  messageExpression?: string;
}

/** A node the CRD can only keep as sent; the admission policy checks it. */
interface UntypedNode {
  path: string[];
  schema: TSchema;
}

export const APP_CRD_NAME = `${APP_PLURAL}.${APP_GROUP}`;
export const APP_POLICY_NAME = APP_CRD_NAME;

/** Keys that mean the same to TypeBox and to the API server; anything else is dropped. */
const PORTABLE_KEYS = [
  "description",
  "format",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
] as const;

const CEL_TYPES: Record<string, string> = {
  Boolean: "bool",
  Integer: "int",
  Number: "double",
  String: "string",
  Object: "map",
  Array: "list",
};

const CEL_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
// CEL's reserved words cannot follow a '.' unescaped.
const CEL_RESERVED = new Set([
  "as",
  "break",
  "const",
  "continue",
  "else",
  "false",
  "for",
  "function",
  "if",
  "import",
  "in",
  "let",
  "loop",
  "package",
  "namespace",
  "null",
  "return",
  "true",
  "var",
  "void",
  "while",
]);

function kindOf(schema: TSchema): string {
  return schema[Kind];
}

function variantsOf(schema: TSchema): TSchema[] {
  const anyOf: unknown = schema["anyOf"];
  return Array.isArray(anyOf) ? (anyOf as TSchema[]) : [];
}

function propertiesOf(schema: TSchema): [string, TSchema][] {
  const properties = schema["properties"] as Record<string, TSchema> | undefined;
  return Object.entries(properties ?? {});
}

function requiredOf(schema: TSchema): string[] {
  const required: unknown = schema["required"];
  return Array.isArray(required) ? (required as string[]) : [];
}

function portable(schema: TSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const key of PORTABLE_KEYS) if (schema[key] !== undefined) out[key] = schema[key];
  for (const [key, value] of Object.entries(schema))
    if (key.startsWith("x-kubernetes-")) out[key] = value;
  return out;
}

function literalValue(schema: TSchema): unknown {
  return schema["const"];
}

function celString(value: string): string {
  return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/**
 * A field of the map `x`, and whether it is present. A reserved word cannot follow a '.'; a
 * map (objects are maps here) can still be indexed by it.
 */
function celField(x: string, key: string): { value: string; present: string } {
  if (CEL_IDENTIFIER.test(key) && !CEL_RESERVED.has(key))
    return { value: `${x}.${key}`, present: `has(${x}.${key})` };
  return { value: `${x}[${celString(key)}]`, present: `(${celString(key)} in ${x})` };
}

function celName(key: string): string {
  if (!CEL_IDENTIFIER.test(key) || CEL_RESERVED.has(key))
    throw new Error(`${key}: not usable as a CEL field name`);
  return key;
}

/** A CEL type check and the value conditions, any of which must hold, for a scalar schema. */
function scalarChecks(schema: TSchema, x: string, path: string): { type: string; any: string[] } {
  const kind = kindOf(schema);
  if (kind === "Union") {
    const parts = variantsOf(schema).map((variant) => scalarChecks(variant, x, path));
    const types = new Set(parts.map((part) => part.type));
    const [type] = types;
    if (types.size !== 1 || type === undefined)
      throw new Error(`${path}: a union of scalars needs a single type`);
    return { type, any: parts.flatMap((part) => part.any) };
  }
  if (kind === "Literal") {
    const value = literalValue(schema);
    if (typeof value === "string") return { type: "string", any: [`${x} == ${celString(value)}`] };
    if (typeof value === "boolean") return { type: "bool", any: [`${x} == ${String(value)}`] };
    if (typeof value === "number" && Number.isSafeInteger(value))
      return { type: "int", any: [`${x} == ${String(value)}`] };
    throw new Error(`${path}: no CEL literal for ${String(value)}`);
  }
  const type = CEL_TYPES[kind];
  if (type === undefined || kind === "Object" || kind === "Array")
    throw new Error(`${path}: no CEL check for a ${kind} here`);
  const bounds: string[] = [];
  if (typeof schema["minimum"] === "number") bounds.push(`${x} >= ${String(schema["minimum"])}`);
  if (typeof schema["maximum"] === "number") bounds.push(`${x} <= ${String(schema["maximum"])}`);
  if (typeof schema["minLength"] === "number")
    bounds.push(`size(${x}) >= ${String(schema["minLength"])}`);
  if (typeof schema["maxLength"] === "number")
    bounds.push(`size(${x}) <= ${String(schema["maxLength"])}`);
  if (typeof schema["pattern"] === "string")
    bounds.push(`${x}.matches(${celString(schema["pattern"])})`);
  return { type, any: [bounds.length > 0 ? bounds.join(" && ") : "true"] };
}

/** A CEL condition true when `x` fits a scalar schema. */
function scalarCondition(schema: TSchema, x: string, path: string): string {
  const { type, any } = scalarChecks(schema, x, path);
  const typeCheck = `type(${x}) == ${type}`;
  if (any.includes("true")) return typeCheck;
  if (any.length === 1) return `${typeCheck} && ${any.join("")}`;
  return `${typeCheck} && (${any.map((v) => `(${v})`).join(" || ")})`;
}

function typeCondition(schema: TSchema, x: string, path: string): string {
  const types = (kindOf(schema) === "Union" ? variantsOf(schema) : [schema]).map((variant) => {
    const celType = CEL_TYPES[kindOf(variant)];
    if (celType === undefined) throw new Error(`${path}: no CEL type for ${kindOf(variant)}`);
    return `type(${x}) == ${celType}`;
  });
  return [...new Set(types)].join(" || ");
}

/** CEL rules of a schema node's own (`celRules`, written with `self`), for the value `x`. */
function ownRules(schema: TSchema, x: string, path: string): CelRule[] {
  const own: unknown = schema["celRules"];
  if (!Array.isArray(own)) return [];
  return (own as { rule: string; message: string }[]).map((r) => ({
    expression: r.rule.replaceAll(/\bself\b/g, x),
    message: `${path} ${r.message}`,
  }));
}

/**
 * Rules checking that `x` (a map once every guard holds) fits an object schema: known keys
 * only, and each field in turn. A guard that fails makes the rule pass, since another rule
 * already reports that a value is absent or no map. Items of a list are checked by the same
 * rules inside `all()`, one variable per list depth.
 */
function objectRules(
  schema: TSchema,
  x: string,
  path: string,
  guards: string[],
  depth = 0,
): CelRule[] {
  const when = (condition: string): string => `!(${guards.join(" && ")}) || ${condition}`;
  const properties = propertiesOf(schema);
  const names = properties.map(([name]) => name);
  const rules: CelRule[] = [];
  if (schema["additionalProperties"] === false) {
    const known = `[${names.map(celString).join(", ")}]`;
    const message = `${path} may only have the fields ${names.join(", ")}`;
    rules.push({
      expression: when(`${x}.all(k, k in ${known})`),
      message,
      messageExpression: `${celString(`${message}, not `)} + ${x}.filter(k, !(k in ${known})).join(', ')`,
    });
  }
  for (const name of requiredOf(schema)) {
    rules.push({
      expression: when(celField(x, name).present),
      message: `${path}.${name} is required`,
    });
  }
  for (const rule of ownRules(schema, x, path))
    rules.push({ ...rule, expression: when(rule.expression) });
  for (const [name, property] of properties) {
    const { value: field, present } = celField(x, name);
    const fieldPath = `${path}.${name}`;
    if (kindOf(property) === "Object") {
      rules.push({
        expression: when(`!${present} || type(${field}) == map`),
        message: `${fieldPath} ${errorMessageOf(property) ?? "must be an object"}`,
      });
      rules.push(
        ...objectRules(
          property,
          field,
          fieldPath,
          [...guards, present, `type(${field}) == map`],
          depth,
        ),
      );
    } else if (kindOf(property) === "Array") {
      rules.push(...listRules(property, { value: field, present }, fieldPath, guards, depth));
    } else {
      rules.push({
        expression: when(`!${present} || (${scalarCondition(property, field, fieldPath)})`),
        message: `${fieldPath} ${errorMessageOf(property) ?? "is invalid"}`,
      });
      for (const rule of ownRules(property, field, fieldPath))
        rules.push({
          ...rule,
          expression: when(
            `!${present} || !(${scalarCondition(property, field, fieldPath)}) || ${rule.expression}`,
          ),
        });
    }
  }
  return rules;
}

/** Rules for the list field `field`: its type, size, own rules, and each item's rules. */
function listRules(
  schema: TSchema,
  { value: field, present }: { value: string; present: string },
  path: string,
  guards: string[],
  depth: number,
): CelRule[] {
  const listGuards = [...guards, present, `type(${field}) == list`];
  const whenList = (condition: string): string => `!(${listGuards.join(" && ")}) || ${condition}`;
  const rules: CelRule[] = [
    {
      expression: `!(${guards.join(" && ")}) || !${present} || type(${field}) == list`,
      message: `${path} must be a list`,
    },
  ];
  if (typeof schema["minItems"] === "number")
    rules.push({
      expression: whenList(`size(${field}) >= ${String(schema["minItems"])}`),
      message: `${path} must have at least ${String(schema["minItems"])} item(s)`,
    });
  if (typeof schema["maxItems"] === "number")
    rules.push({
      expression: whenList(`size(${field}) <= ${String(schema["maxItems"])}`),
      message: `${path} must have at most ${String(schema["maxItems"])} items`,
    });
  for (const rule of ownRules(schema, field, path))
    rules.push({ ...rule, expression: whenList(rule.expression) });
  const item = schema["items"] as TSchema;
  const v = `i${String(depth)}`;
  const itemPath = `${path}[]`;
  if (kindOf(item) === "Object") {
    rules.push({
      expression: whenList(`${field}.all(${v}, type(${v}) == map)`),
      message: `${itemPath} ${errorMessageOf(item) ?? "must be an object"}`,
    });
    // An item's variable is bound inside all() only: no message can be computed from it.
    for (const rule of objectRules(item, v, itemPath, [`type(${v}) == map`], depth + 1))
      rules.push({
        expression: whenList(`${field}.all(${v}, ${rule.expression})`),
        message: rule.message,
      });
  } else {
    rules.push({
      expression: whenList(`${field}.all(${v}, ${scalarCondition(item, v, itemPath)})`),
      message: `${itemPath} ${errorMessageOf(item) ?? "is invalid"}`,
    });
  }
  return rules;
}

function structural(schema: TSchema, path: string[], untyped: UntypedNode[]): JsonSchema {
  const kind = kindOf(schema);
  const where = path.join(".") || "(root)";
  switch (kind) {
    case "Object": {
      const properties: Record<string, JsonSchema> = {};
      for (const [name, property] of propertiesOf(schema))
        properties[name] = structural(property, [...path, name], untyped);
      const required = requiredOf(schema);
      return {
        type: "object",
        ...portable(schema),
        properties,
        ...(required.length > 0 ? { required } : {}),
      };
    }
    case "Array":
      return {
        type: "array",
        ...portable(schema),
        // Untyped nodes inside lists would need per-item policy rules; none exist yet.
        items: structural(schema["items"] as TSchema, [...path, "[]"], []),
      };
    case "String":
      return { type: "string", ...portable(schema) };
    case "Integer":
      return { type: "integer", format: "int64", ...portable(schema) };
    case "Number":
      return { type: "number", ...portable(schema) };
    case "Boolean":
      return { type: "boolean", ...portable(schema) };
    case "Unsafe": {
      const type: unknown = schema["type"];
      if (typeof type !== "string") throw new Error(`${where}: an Unsafe schema needs a type`);
      return { type, ...portable(schema) };
    }
    case "Union": {
      const variants = variantsOf(schema);
      const values = variants.map(literalValue);
      const types = new Set(values.map((v) => typeof v));
      const [type] = types;
      if (variants.every((v) => kindOf(v) === "Literal") && types.size === 1 && type) {
        return { type, ...portable(schema), enum: values };
      }
      if (path.includes("[]")) throw new Error(`${where}: a union of types inside a list`);
      untyped.push({ path, schema });
      const description = typeof schema.description === "string" ? `${schema.description} ` : "";
      return {
        ...portable(schema),
        description: `${description}Checked by the ValidatingAdmissionPolicy ${APP_POLICY_NAME}.`,
        "x-kubernetes-preserve-unknown-fields": true,
      };
    }
    default:
      throw new Error(`${where}: a ${kind} has no structural schema`);
  }
}

function appSchema(): { schema: JsonSchema; untyped: UntypedNode[] } {
  const untyped: UntypedNode[] = [];
  const schema = structural(AppSchema, [], untyped);
  return { schema, untyped };
}

/** The CRD as the API server takes it (apiextensions.k8s.io/v1). */
export function appCrd(): object {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: APP_CRD_NAME },
    spec: {
      group: APP_GROUP,
      scope: "Namespaced",
      names: {
        plural: APP_PLURAL,
        singular: APP_KIND.toLowerCase(),
        kind: APP_KIND,
        listKind: `${APP_KIND}List`,
        shortNames: [APP_SHORT_NAME],
        categories: ["nats-tenancy"],
      },
      versions: [
        {
          name: APP_VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: appSchema().schema },
          subresources: { status: {} },
          additionalPrinterColumns: [
            {
              name: "Ready",
              type: "string",
              jsonPath: '.status.conditions[?(@.type=="Ready")].status',
            },
            {
              name: "Reason",
              type: "string",
              jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
              priority: 1,
            },
            { name: "Environments", type: "string", jsonPath: ".spec.environments" },
            // -o wide: where apps connect, without decoding a Secret (the same for every
            // environment). No Secrets column: a column shows only a list's first item, and the
            // names follow <app>-<environment>-nats anyway.
            { name: "URL", type: "string", jsonPath: ".status.environments[0].url", priority: 1 },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
        },
      ],
    },
  };
}

/**
 * Checks the CRD's untyped nodes on create, and on update when the spec changes: a stored
 * object that no longer fits can still have its metadata (finalizers) and status written.
 */
export function appAdmissionPolicy(): object {
  const variables: { name: string; expression: string }[] = [];
  const validations: CelRule[] = [];
  for (const { path, schema } of appSchema().untyped) {
    const name = path.map(celName).join("_");
    const v = `variables.${name}`;
    const x = `${v}.value()`;
    const where = path.join(".");
    variables.push({ name, expression: `object.${path.map((p) => `?${p}`).join(".")}` });
    validations.push({
      expression: `!${v}.hasValue() || ${typeCondition(schema, x, where)}`,
      message: `${where} ${errorMessageOf(schema) ?? "has the wrong type"}`,
    });
    const objects = variantsOf(schema).filter((variant) => kindOf(variant) === "Object");
    if (objects.length > 1) throw new Error(`${where}: a union of several objects`);
    for (const object of objects)
      validations.push(...objectRules(object, x, where, [`${v}.hasValue()`, `type(${x}) == map`]));
  }
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicy",
    metadata: { name: APP_POLICY_NAME },
    spec: {
      failurePolicy: "Fail",
      matchConstraints: {
        resourceRules: [
          {
            apiGroups: [APP_GROUP],
            apiVersions: [APP_VERSION],
            operations: ["CREATE", "UPDATE"],
            resources: [APP_PLURAL],
          },
        ],
      },
      matchConditions: [
        {
          name: "spec-written",
          expression: "request.operation != 'UPDATE' || object.spec != oldObject.spec",
        },
      ],
      variables,
      validations,
    },
  };
}

export function appAdmissionPolicyBinding(): object {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingAdmissionPolicyBinding",
    metadata: { name: APP_POLICY_NAME },
    spec: { policyName: APP_POLICY_NAME, validationActions: ["Deny"] },
  };
}

/** Everything the App API needs installed: the CRD, then the policy checking its untyped nodes. */
export function appManifests(): object[] {
  return [appCrd(), appAdmissionPolicy(), appAdmissionPolicyBinding()];
}

export const APP_MANIFESTS_HEADER = "generated by npm run crds; do not edit";

/** appManifests() as committed under deploy/: YAML documents after a do-not-edit header. */
export function appManifestsYaml(): string {
  const documents = appManifests().map((manifest) => stringify(manifest, { lineWidth: 0 }));
  return `# ${APP_MANIFESTS_HEADER}\n${documents.join("---\n")}`;
}
