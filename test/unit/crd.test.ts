import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { LIMIT_RANGES, accountLimits } from "../../src/accounts/spec.ts";
import { appSpecIssues, natsRequest, type AppSpec } from "../../src/crds/app.ts";
import {
  APP_MANIFESTS_HEADER,
  appAdmissionPolicy,
  appCrd,
  appManifests,
  appManifestsYaml,
} from "../../src/crds/crd.ts";
import { APP_CRD_FILE } from "../../src/crds/generate.ts";

const DNS_LABEL_MESSAGE =
  "must be a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit";

/** Every schema node of the CRD with its path, depth first. */
function* nodes(schema: unknown, path: string): Generator<[string, Record<string, unknown>]> {
  const node = schema as Record<string, unknown>;
  yield [path, node];
  const properties = (node["properties"] ?? {}) as Record<string, unknown>;
  for (const [name, child] of Object.entries(properties)) yield* nodes(child, `${path}.${name}`);
  if (node["items"] !== undefined) yield* nodes(node["items"], `${path}[]`);
}

function openApiSchema(): unknown {
  const crd = appCrd() as {
    spec: { versions: { schema: { openAPIV3Schema: unknown } }[] };
  };
  return crd.spec.versions[0]?.schema.openAPIV3Schema;
}

/** The spec with one limit set, for a LIMIT_RANGES key such as "jetstream.memory". */
function withLimit(key: string, value: unknown): unknown {
  const [first, second] = key.split(".") as [string, string | undefined];
  const nats = second === undefined ? { [first]: value } : { [first]: { [second]: value } };
  return { nats, environments: ["prod"] };
}

describe("App CRD generation", () => {
  test("the committed manifests are what the TypeBox definition generates now", () => {
    const committed = readFileSync(APP_CRD_FILE, "utf8");
    assert.ok(
      committed === appManifestsYaml(),
      `${APP_CRD_FILE} is stale: run \`npm run crds\` and commit the result`,
    );
  });

  test("the YAML starts with the do-not-edit header and holds the CRD, policy and binding", () => {
    const text = appManifestsYaml();
    assert.ok(text.startsWith(`# ${APP_MANIFESTS_HEADER}\n`));
    const documents = parseAllDocuments(text);
    assert.deepEqual(
      documents.flatMap((d) => d.errors),
      [],
    );
    assert.deepEqual(
      documents.map((d) => d.toJS() as unknown),
      JSON.parse(JSON.stringify(appManifests())),
    );
    assert.deepEqual(
      appManifests().map((m) => (m as { kind: string }).kind),
      ["CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"],
    );
  });

  test("the schema is structural: one type per node, nothing the API server refuses", () => {
    const refused = ["anyOf", "oneOf", "allOf", "additionalProperties", "uniqueItems", "$id"];
    for (const [path, node] of nodes(openApiSchema(), "")) {
      for (const key of refused) assert.equal(node[key], undefined, `${path} has ${key}`);
      assert.deepEqual(Object.getOwnPropertySymbols(node), [], `${path} has symbol keys`);
      assert.equal(node["errorMessage"], undefined, `${path} has errorMessage`);
      if (node["x-kubernetes-preserve-unknown-fields"] !== true)
        assert.equal(typeof node["type"], "string", `${path} has no type`);
    }
    const spec = [...nodes(openApiSchema(), "")].find(([path]) => path === ".spec")?.[1];
    const properties = spec?.["properties"] as Record<string, Record<string, unknown>>;
    assert.equal(properties["nats"]?.["type"], undefined);
    assert.equal(properties["nats"]?.["x-kubernetes-preserve-unknown-fields"], true);
    assert.equal(properties["environments"]?.["x-kubernetes-list-type"], "set");
  });

  test("the policy's messages are the ones appSpecIssues gives, with the spec. prefix", () => {
    const policy = appAdmissionPolicy() as { spec: { validations: { message: string }[] } };
    const messages = policy.spec.validations.map((v) => v.message);
    for (const key of Object.keys(LIMIT_RANGES)) {
      const [issue] = appSpecIssues(withLimit(key, "x"));
      assert.ok(issue, key);
      const message = `spec.${issue.path} ${issue.message.replace(/; got .*$/, "")}`;
      assert.ok(messages.includes(message), `no policy message "${message}"`);
    }
  });
});

describe("appSpecIssues", () => {
  test("valid specs have none", () => {
    const valid: AppSpec[] = [
      { nats: true, environments: ["prod", "test"] },
      { nats: false, environments: ["prod"] },
      { environments: ["a", "0", "my-env-2", "x".repeat(63)] },
      { nats: {}, environments: ["prod"] },
      {
        nats: {
          connections: -1,
          payload: 1,
          subscriptions: -1,
          jetstream: { memory: 0, storage: 1024 ** 3, streams: -1, consumers: 0 },
        },
        environments: Array.from({ length: 32 }, (_, i) => `env-${String(i)}`),
      },
    ];
    for (const spec of valid) assert.deepEqual(appSpecIssues(spec), [], JSON.stringify(spec));
  });

  test("every limit's range is LIMIT_RANGES'", () => {
    for (const [key, range] of Object.entries(LIMIT_RANGES)) {
      assert.deepEqual(appSpecIssues(withLimit(key, range.min)), [], `${key} ${range.min}`);
      assert.deepEqual(appSpecIssues(withLimit(key, range.max)), [], `${key} ${range.max}`);
      const outside = [range.min - 1, range.max + 1, range.min + 0.5, String(range.min)];
      for (const value of outside) {
        if (range.unlimited && value === -1) continue;
        assert.equal(appSpecIssues(withLimit(key, value)).length, 1, `${key} ${String(value)}`);
      }
      assert.equal(appSpecIssues(withLimit(key, -1)).length, range.unlimited ? 0 : 1, key);
    }
  });

  const invalid: [string, unknown, { path: string; message: string }[]][] = [
    ["a spec that is no object", null, [{ path: "", message: "must be an object" }]],
    ["missing environments", { nats: true }, [{ path: "environments", message: "is required" }]],
    [
      "no environments",
      { environments: [] },
      [{ path: "environments", message: "must have at least 1 item(s)" }],
    ],
    [
      "too many environments",
      { environments: Array.from({ length: 33 }, (_, i) => `e${String(i)}`) },
      [{ path: "environments", message: "must have at most 32 items" }],
    ],
    [
      "environments that are no DNS labels",
      { environments: ["prod", "Prod", "x".repeat(64), "-a", 7] },
      [
        { path: "environments[1]", message: `${DNS_LABEL_MESSAGE}; got "Prod"` },
        { path: "environments[2]", message: `${DNS_LABEL_MESSAGE}; got "${"x".repeat(64)}"` },
        { path: "environments[3]", message: `${DNS_LABEL_MESSAGE}; got "-a"` },
        { path: "environments[4]", message: `${DNS_LABEL_MESSAGE}; got 7` },
      ],
    ],
    [
      "repeated environments",
      { environments: ["prod", "test", "prod", "test", "prod"] },
      [{ path: "environments", message: 'must not repeat "prod", "test"' }],
    ],
    [
      "nats a string",
      { nats: "yes", environments: ["prod"] },
      [{ path: "nats", message: 'must be true, false, or an object of limits; got "yes"' }],
    ],
    [
      "an unknown key in nats and a limit out of range",
      { nats: { conections: 10, connections: 0 }, environments: ["prod"] },
      [
        {
          path: "nats.conections",
          message:
            "is not a known field (known: connections, payload, subscriptions, jetstream, exports, imports)",
        },
        {
          path: "nats.connections",
          message: "must be an integer from 1 to 1000000, or -1 for unlimited; got 0",
        },
      ],
    ],
    [
      "jetstream no object",
      { nats: { jetstream: 5 }, environments: ["prod"] },
      [{ path: "nats.jetstream", message: "must be an object" }],
    ],
    [
      "an unknown key in jetstream",
      { nats: { jetstream: { memroy: 1 } }, environments: ["prod"] },
      [
        {
          path: "nats.jetstream.memroy",
          message: "is not a known field (known: memory, storage, streams, consumers)",
        },
      ],
    ],
    [
      "a payload above the servers' max_payload",
      { nats: { payload: 8 * 1024 * 1024 + 1 }, environments: ["prod"] },
      [{ path: "nats.payload", message: "must be an integer from 1 to 8388608; got 8388609" }],
    ],
  ];
  for (const [what, spec, issues] of invalid) {
    test(`reports ${what}`, () => {
      assert.deepEqual(appSpecIssues(spec), issues);
    });
  }
});

describe("natsRequest", () => {
  test("off when nats is false or absent, default limits when true", () => {
    assert.equal(natsRequest({ nats: false, environments: ["prod"] }), undefined);
    assert.equal(natsRequest({ environments: ["prod"] }), undefined);
    assert.deepEqual(natsRequest({ nats: true, environments: ["prod"] }), {});
  });

  test("an object of limits is the account request, copied", () => {
    const nats = { connections: 5, jetstream: { storage: 1024, streams: 2 } };
    const request = natsRequest({ nats, environments: ["prod"] });
    assert.deepEqual(request, nats);
    assert.notEqual(request, nats);
    assert.notEqual(request.jetstream, nats.jetstream);
    const limits = accountLimits(request);
    assert.equal(limits.conn, 5);
    assert.equal(limits.disk_storage, 1024);
    assert.equal(limits.streams, 2);
  });
});
