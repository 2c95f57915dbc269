import assert from "node:assert/strict";
import { request } from "node:https";
import { X509Certificate } from "node:crypto";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import {
  DAY_MS,
  DEFAULT_CA_POLICY,
  caBundle,
  stepCa,
  type CaState,
} from "../../src/ca/authority.ts";
import { ensureLeaf, webhookLeaf } from "../../src/ca/leaves.ts";
import {
  MUTATE_APPS_PATH,
  MUTATE_PODS_PATH,
  VALIDATE_APPS_PATH,
} from "../../src/contract/webhook-registration.ts";
import { finalizeApp, judgeApp } from "../../src/webhook/app-admission.ts";
import {
  MAX_REVIEW_BYTES,
  startWebhookServer,
  type WebhookServer,
} from "../../src/webhook/webhook-server.ts";

interface Answer {
  status: number;
  body: string;
  serial: string;
}

function post(
  port: number,
  ca: string,
  body: string | Buffer,
  contentType = "application/json",
  path = MUTATE_PODS_PATH,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        ca,
        agent: false,
        headers: { "content-type": contentType, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const peer = res.socket as unknown as { getPeerX509Certificate: () => X509Certificate };
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            serial: peer.getPeerX509Certificate().serialNumber,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const review = {
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "7c2d",
    kind: { group: "", version: "v1", kind: "Pod" },
    namespace: "shop",
    object: { metadata: { name: "p" }, spec: { containers: [{ name: "app" }] } },
  },
};

describe("webhook server", () => {
  let state: CaState;
  let server: WebhookServer;
  let ca: string;
  const leaf = (now: number) =>
    ensureLeaf(
      undefined,
      webhookLeaf("nats-tenancy-webhook", "ops", 30 * DAY_MS, true),
      state,
      now,
    );

  before(async () => {
    state = (await stepCa(undefined, DEFAULT_CA_POLICY, Date.now(), false)).state;
    ca = caBundle(state);
    server = await startWebhookServer({
      host: "127.0.0.1",
      port: 0,
      certificate: (await leaf(Date.now())).leaf,
      decide: () => ({ action: "skip", code: "NotOptedIn", reason: "test" }),
      judgeApp: (review) =>
        judgeApp(review, { appsPerNamespace: 1, limits: { connections: 10 } }, () => [
          { metadata: { name: "first", namespace: "shop", uid: "u1" } },
        ]),
      mutateApp: finalizeApp,
      logger: pino({ level: "silent" }),
    });
  });
  after(async () => {
    await server.close();
  });

  test("a pod review is answered with the request's uid", async () => {
    const answer = await post(server.port, ca, JSON.stringify(review));
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.body), {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: { uid: "7c2d", allowed: true },
    });
  });

  test("bad input is a 400 with a clear message, and the server goes on", async () => {
    const cases: [string | Buffer, string, RegExp][] = [
      ["{not json", "application/json", /JSON/i],
      [JSON.stringify(review), "text/plain", /content type must be application\/json/],
      [Buffer.alloc(MAX_REVIEW_BYTES + 1, 32), "application/json", /larger than/],
      [JSON.stringify({ ...review, kind: "Other" }), "application/json", /expected an admission/],
      [
        JSON.stringify({ ...review, request: { ...review.request, uid: "" } }),
        "application/json",
        /no uid/,
      ],
    ];
    for (const [body, type, message] of cases) {
      const answer = await post(server.port, ca, body, type);
      assert.equal(answer.status, 400, answer.body);
      assert.match((JSON.parse(answer.body) as { error: string }).error, message);
    }
    assert.equal((await post(server.port, ca, JSON.stringify(review))).status, 200);
  });

  test("an App over a ceiling is refused naming it; a change that leaves the spec alone passes", async () => {
    const app = (name: string, spec: unknown) => ({
      apiVersion: "nats-tenancy.io/v1alpha1",
      kind: "App",
      metadata: { name, namespace: "shop", uid: `uid-${name}` },
      spec,
    });
    const appReview = (operation: string, object: unknown, oldObject?: unknown) =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid: "a1",
          kind: { group: "nats-tenancy.io", version: "v1alpha1", kind: "App" },
          namespace: "shop",
          operation,
          object,
          ...(oldObject ? { oldObject } : {}),
        },
      });
    const answer = async (body: string) => {
      const reply = await post(server.port, ca, body, "application/json", VALIDATE_APPS_PATH);
      assert.equal(reply.status, 200, reply.body);
      return (
        JSON.parse(reply.body) as { response: { allowed: boolean; status?: { message: string } } }
      ).response;
    };
    const over = app("second", { nats: { connections: 20 }, environments: ["prod"] });
    const refused = await answer(appReview("CREATE", over));
    assert.equal(refused.allowed, false);
    assert.match(
      refused.status?.message ?? "",
      /^nats-tenancy: App shop\/second is over the platform's ceilings: spec\.nats\.connections is 20, over the ceiling of 10 \(--max-connections, chart value ceilings\.connections\); the namespace already has 1 App, the ceiling of 1 \(--max-apps-per-namespace/,
    );
    const first = app("first", { nats: { connections: 20 }, environments: ["prod"] });
    const labelled = { ...first, metadata: { ...first.metadata, labels: { team: "a" } } };
    assert.equal((await answer(appReview("UPDATE", labelled, first))).allowed, true);
    const within = { ...first, spec: { nats: { connections: 5 }, environments: ["prod"] } };
    assert.equal((await answer(appReview("UPDATE", within, first))).allowed, true);
    assert.equal((await answer(appReview("UPDATE", first, within))).allowed, false);
    const notAnApp = await post(
      server.port,
      ca,
      JSON.stringify(review),
      "application/json",
      VALIDATE_APPS_PATH,
    );
    assert.equal(notAnApp.status, 400);
  });

  test("a new App with accounts gets the finalizer at admission, before it has a uid; others get nothing", async () => {
    const creation = (metadata: object, spec: unknown, operation = "CREATE") =>
      JSON.stringify({
        apiVersion: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        request: {
          uid: "m1",
          kind: { group: "nats-tenancy.io", version: "v1alpha1", kind: "App" },
          namespace: "shop",
          operation,
          object: { apiVersion: "nats-tenancy.io/v1alpha1", kind: "App", metadata, spec },
        },
      });
    const patchOf = async (body: string): Promise<unknown> => {
      const reply = await post(server.port, ca, body, "application/json", MUTATE_APPS_PATH);
      assert.equal(reply.status, 200, reply.body);
      const { response } = JSON.parse(reply.body) as {
        response: { uid: string; allowed: boolean; patchType?: string; patch?: string };
      };
      assert.equal(response.uid, "m1");
      assert.equal(response.allowed, true);
      if (!response.patch) return undefined;
      assert.equal(response.patchType, "JSONPatch");
      return JSON.parse(Buffer.from(response.patch, "base64").toString());
    };
    const wants = { nats: true, environments: ["prod", "test"] };
    assert.deepEqual(await patchOf(creation({ generateName: "orders-" }, wants)), [
      { op: "add", path: "/metadata/finalizers", value: ["nats-tenancy.io/accounts"] },
    ]);
    assert.deepEqual(
      await patchOf(creation({ name: "orders", finalizers: ["example.com/hold"] }, wants)),
      [{ op: "add", path: "/metadata/finalizers/-", value: "nats-tenancy.io/accounts" }],
    );
    for (const [metadata, spec] of [
      [{ name: "a", finalizers: ["nats-tenancy.io/accounts"] }, wants],
      [{ name: "b" }, { nats: false, environments: ["prod"] }],
      [{ name: "c" }, { nats: true, environments: [] }],
      [{ name: "d" }, { nats: "yes", environments: ["prod"] }],
    ] as const)
      assert.equal(await patchOf(creation(metadata, spec)), undefined, metadata.name);
    for (const [body, message] of [
      [creation({ name: "e" }, wants, "UPDATE"), /UPDATE is not mutated here/],
      [creation({ name: "f", finalizers: "x" }, wants), /finalizers is not a list of strings/],
      [JSON.stringify(review), /not for a nats-tenancy.io App/],
    ] as const) {
      const reply = await post(server.port, ca, body, "application/json", MUTATE_APPS_PATH);
      assert.equal(reply.status, 400, reply.body);
      assert.match(reply.body, message);
    }
  });

  test("a renewed certificate is served to new connections without a restart", async () => {
    const before = (await post(server.port, ca, JSON.stringify(review))).serial;
    const renewed = (await leaf(Date.now())).leaf;
    server.setCertificate(renewed);
    const after = (await post(server.port, ca, JSON.stringify(review))).serial;
    assert.notEqual(after, before);
    assert.equal(after, new X509Certificate(renewed.certificatePem).serialNumber);
  });
});
