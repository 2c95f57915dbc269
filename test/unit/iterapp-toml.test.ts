import assert from "node:assert/strict";
import { test } from "node:test";
import { IterappError, iterappApp } from "../../src/crds/iterapp-toml.ts";

const base = { file: "iterapp.toml", app: "lolipop", namespace: "apps" };

function spec(text: string, environments?: string[]) {
  return iterappApp({ ...base, text, ...(environments ? { environments } : {}) }).spec;
}

function problems(text: string, environments?: string[]): string[] {
  try {
    iterappApp({ ...base, text, ...(environments ? { environments } : {}) });
  } catch (error) {
    assert.ok(error instanceof IterappError, String(error));
    return error.message.split("\n");
  }
  assert.fail("accepted");
}

test("nats = true, false, absent, and an empty [nats] table", () => {
  assert.deepEqual(spec("port = 3000\nnats = true\n"), {
    nats: true,
    environments: ["prod", "test"],
  });
  assert.deepEqual(spec("nats = false\n"), { nats: false, environments: ["prod", "test"] });
  assert.deepEqual(spec('readiness_path = "/health"\n'), {
    nats: false,
    environments: ["prod", "test"],
  });
  assert.deepEqual(spec("[nats]\n"), { nats: true, environments: ["prod", "test"] });
  const app = iterappApp({ ...base, text: "nats = true\n" });
  assert.deepEqual(app.metadata, { name: "lolipop", namespace: "apps" });
  assert.equal(app.kind, "App");
});

test("[nats] keys are the App's limits, JetStream in [nats.jetstream]", () => {
  assert.deepEqual(
    spec(
      "[nats]\nconnections = 2\npayload = 1024\n\n[nats.jetstream]\nstorage = 1048576\nstreams = 3\n",
    ),
    {
      nats: { connections: 2, payload: 1024, jetstream: { storage: 1048576, streams: 3 } },
      environments: ["prod", "test"],
    },
  );
  assert.deepEqual(spec("nats = { subscriptions = -1 }\n").nats, { subscriptions: -1 });
});

test("environments: prod and test, plus default_environment; [nats] environments, then the flag, replace them", () => {
  assert.deepEqual(spec('default_environment = "snap3"\nnats = true\n').environments, [
    "prod",
    "test",
    "snap3",
  ]);
  assert.deepEqual(spec('default_environment = "prod"\nnats = true\n').environments, [
    "prod",
    "test",
  ]);
  assert.deepEqual(spec('[nats]\nenvironments = ["prod", "snap1"]\n'), {
    nats: true,
    environments: ["prod", "snap1"],
  });
  assert.deepEqual(spec('[nats]\nenvironments = ["prod"]\n', ["snap0"]).environments, ["snap0"]);
});

test("bad input names the file, line, column and key, every problem at once", () => {
  assert.deepEqual(problems("nats = \n"), [
    "iterapp.toml:2:1: (file): not valid TOML: Unspecified values are invalid",
  ]);
  assert.deepEqual(problems('port = 1\nnats = "yes"\n'), [
    'iterapp.toml:2:8: nats: must be true, false, or a [nats] table of limits; got "yes"',
  ]);
  assert.deepEqual(
    problems('[nats]\nconections = 2\nconnections = 0\nenvironments = ["prod", "Snap_1"]\n'),
    [
      "iterapp.toml:2:1: nats.conections: is not a known field (known: connections, payload, subscriptions, jetstream, exports, imports)",
      "iterapp.toml:3:15: nats.connections: must be an integer from 1 to 1000000, or -1 for unlimited; got 0",
      `iterapp.toml:4:25: nats.environments[1]: must be a DNS label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit; got "Snap_1"`,
    ],
  );
  assert.deepEqual(problems("[nats.jetstream]\nmemory = -5\n"), [
    "iterapp.toml:2:10: nats.jetstream.memory: must be an integer from 0 to 1099511627776; got -5",
  ]);
  assert.match(
    problems('default_environment = "Prod!"\nnats = true\n').join(),
    /^iterapp\.toml:1:23: default_environment: must be a DNS label/,
  );
  assert.match(
    problems("nats = true\n", ["ok", "NOT"]).join(),
    /^--environments\[1\]: must be a DNS label/,
  );
});

test("exports and imports as arrays of tables under [nats]", () => {
  const text = [
    "[nats]",
    "[[nats.exports]]",
    'subject = "orders.>"',
    'type = "stream"',
    'to = [{ app = "billing" }]',
    "[[nats.imports]]",
    'from = { app = "billing", environment = "prod" }',
    'subject = "quote"',
    'type = "service"',
    "",
  ].join("\n");
  assert.deepEqual(spec(text), {
    nats: {
      exports: [{ subject: "orders.>", type: "stream", to: [{ app: "billing" }] }],
      imports: [
        { from: { app: "billing", environment: "prod" }, subject: "quote", type: "service" },
      ],
    },
    environments: ["prod", "test"],
  });
  assert.deepEqual(problems(text.replace('"service"', '"servic"')), [
    'nats.imports[0].type: must be "stream" or "service"; got "servic"',
  ]);
});
