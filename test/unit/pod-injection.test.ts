import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fastJsonPatch from "fast-json-patch";
import { parsePodReview, reviewResponse, ReviewError } from "../../src/webhook/admission-review.ts";
import {
  INJECTED_ANNOTATION,
  VOLUME_NAME,
  decide,
  injectPod,
  type AppView,
  type Pod,
} from "../../src/webhook/pod-injection.ts";

const apps: Record<string, AppView> = {
  "shop/orders": {
    environments: ["prod", "test"],
    secretName: (env) => `orders-${env}-nats`,
  },
  "shop/off": { environments: [], secretName: (env) => `off-${env}-nats` },
};
const lookup = (namespace: string, app: string): AppView | undefined => apps[`${namespace}/${app}`];
const excluded = new Set(["kube-system", "nats-tenancy-system"]);

function pod(labels: Record<string, string> = {}, extra: Partial<Pod["spec"]> = {}): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", labels },
    spec: { containers: [{ name: "app", image: "app:1" }], ...extra },
  };
}
const labelled = (environment = "prod"): Pod =>
  pod({ "nats-tenancy.io/app": "orders", "nats-tenancy.io/environment": environment });

describe("which pods are injected", () => {
  test("a pod naming an App's environment is injected with that environment's Secret", () => {
    assert.deepEqual(decide(labelled(), "shop", excluded, lookup), {
      action: "inject",
      target: { app: "orders", environment: "prod", secretName: "orders-prod-nats" },
    });
  });

  test("every skip and refusal says why", () => {
    const cases: [Pod, string, RegExp, "skip" | "reject"][] = [
      [pod(), "shop", /did not opt in/, "skip"],
      [labelled(), "kube-system", /namespace kube-system is excluded/, "skip"],
      [
        pod({ "nats-tenancy.io/app": "orders" }),
        "shop",
        /no nats-tenancy.io\/environment/,
        "reject",
      ],
      [labelled(), "other", /no App orders in namespace other/, "reject"],
      [
        labelled("staging"),
        "shop",
        /has no NATS environment staging \(it has prod, test\)/,
        "reject",
      ],
      [
        pod({ "nats-tenancy.io/app": "off", "nats-tenancy.io/environment": "prod" }),
        "shop",
        /NATS is off/,
        "reject",
      ],
    ];
    for (const [input, namespace, reason, action] of cases) {
      const decision = decide(input, namespace, excluded, lookup);
      assert.equal(decision.action, action);
      assert.match("reason" in decision ? decision.reason : "", reason);
    }
  });
});

describe("which Secret a pod may get", () => {
  const view = (overrides: Partial<AppView>): ((namespace: string, app: string) => AppView) => {
    return () => ({ environments: ["prod"], secretName: (env) => `a-${env}-nats`, ...overrides });
  };
  const pod = labelled;

  test("an App being deleted gets no new pods", () => {
    const decision = decide(pod(), "shop", excluded, view({ terminating: true }));
    assert.equal(decision.action, "reject");
    assert.equal("code" in decision ? decision.code : "", "AppTerminating");
  });

  test("a Secret another App's environment also names is refused unless this App holds it", () => {
    const contested = view({ contestedBy: () => ({ app: "a-b", environment: "c" }) });
    const decision = decide(pod(), "shop", excluded, contested);
    assert.equal(decision.action, "reject");
    assert.equal("code" in decision ? decision.code : "", "SecretContested");
    assert.match(
      "reason" in decision ? decision.reason : "",
      /Secret shop\/a-prod-nats is also the Secret of App shop\/a-b environment c/,
    );
    assert.equal(
      decide(pod(), "shop", excluded, view({ contestedBy: () => undefined })).action,
      "inject",
    );
  });
});

describe("what a pod gets", () => {
  const target = { app: "orders", environment: "prod", secretName: "orders-prod-nats" };

  test("every container and init container: variables by reference, files from a read-only volume", () => {
    const input = pod({}, { initContainers: [{ name: "migrate", image: "m:1" }] });
    const out = injectPod(input, target);
    for (const container of [...out.spec.containers, ...(out.spec.initContainers ?? [])]) {
      const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e]));
      assert.deepEqual(env.NATS_URL?.valueFrom, {
        secretKeyRef: { name: "orders-prod-nats", key: "NATS_URL" },
      });
      assert.deepEqual(env.NATS_CREDENTIALS?.valueFrom, {
        secretKeyRef: { name: "orders-prod-nats", key: "NATS_CREDENTIALS" },
      });
      assert.equal(env.NATS_CREDENTIALS_FILE?.value, "/bindings/nats/nats.creds");
      assert.equal(env.NATS_CA_FILE?.value, "/bindings/nats/ca.crt");
      assert.equal(env.SERVICE_BINDING_ROOT?.value, "/bindings");
      assert.deepEqual(container.volumeMounts, [
        { name: VOLUME_NAME, mountPath: "/bindings/nats", readOnly: true },
      ]);
    }
    const volume = out.spec.volumes?.find((v) => v.name === VOLUME_NAME) as
      { secret: { secretName: string; items: { key: string }[] } } | undefined;
    assert.ok(volume);
    assert.equal(volume.secret.secretName, "orders-prod-nats");
    assert.deepEqual(
      volume.secret.items.map((i) => i.key),
      ["type", "provider", "url", "nats.creds", "ca.crt"],
    );
    assert.equal(out.metadata?.annotations?.[INJECTED_ANNOTATION], "orders-prod-nats");
    assert.equal(input.spec.containers[0]?.env, undefined, "the input pod was changed");
  });

  test("variables the user set are kept, and SERVICE_BINDING_ROOT moves the files", () => {
    const input = pod(
      {},
      {
        containers: [
          {
            name: "app",
            env: [
              { name: "NATS_URL", value: "nats://mine:4222" },
              { name: "SERVICE_BINDING_ROOT", value: "/etc/bindings/" },
            ],
          },
        ],
      },
    );
    const env = injectPod(input, target).spec.containers[0]?.env ?? [];
    assert.deepEqual(
      env.filter((e) => e.name === "NATS_URL"),
      [{ name: "NATS_URL", value: "nats://mine:4222" }],
    );
    assert.equal(
      env.find((e) => e.name === "NATS_CREDENTIALS_FILE")?.value,
      "/etc/bindings/nats/nats.creds",
    );
  });

  test("injecting an injected pod changes nothing", () => {
    const once = injectPod(labelled(), target);
    assert.deepEqual(injectPod(once, target), once);
  });
});

describe("AdmissionReview", () => {
  const review = (object: unknown, uid = "u-1") => ({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: { uid, kind: { group: "", version: "v1", kind: "Pod" }, namespace: "shop", object },
  });

  test("the response echoes the uid and carries a JSONPatch that yields the injected pod", () => {
    const parsed = parsePodReview(review(labelled(), "abc"));
    const target = { app: "orders", environment: "prod", secretName: "orders-prod-nats" };
    const answer = reviewResponse(parsed, { action: "inject", target });
    assert.equal(answer.response.uid, "abc");
    assert.equal(answer.response.allowed, true);
    assert.equal(answer.response.patchType, "JSONPatch");
    const operations = JSON.parse(
      Buffer.from(answer.response.patch ?? "", "base64").toString(),
    ) as fastJsonPatch.Operation[];
    const patched = fastJsonPatch.applyPatch(structuredClone(labelled()), operations).newDocument;
    assert.deepEqual(patched, injectPod(labelled(), target));
  });

  test("a reinvocation on an injected pod answers with no patch", () => {
    const target = { app: "orders", environment: "prod", secretName: "orders-prod-nats" };
    const parsed = parsePodReview(review(injectPod(labelled(), target)));
    const answer = reviewResponse(parsed, { action: "inject", target });
    assert.equal(answer.response.patch, undefined);
    assert.equal(answer.response.allowed, true);
  });

  test("a refusal is a 403 with the reason; a skip allows without a patch", () => {
    const parsed = parsePodReview(review(pod()));
    const refused = reviewResponse(parsed, {
      action: "reject",
      code: "AppNotFound",
      reason: "no App x",
    });
    assert.deepEqual(refused.response, {
      uid: "u-1",
      allowed: false,
      status: { code: 403, message: "nats-tenancy: no App x" },
    });
    assert.deepEqual(
      reviewResponse(parsed, { action: "skip", code: "NotOptedIn", reason: "r" }).response,
      {
        uid: "u-1",
        allowed: true,
      },
    );
  });

  test("anything but a pod review is a ReviewError naming what is wrong", () => {
    const cases: [unknown, RegExp][] = [
      [[], /not a JSON object/],
      [
        { apiVersion: "admission.k8s.io/v1beta1", kind: "AdmissionReview" },
        /expected an admission.k8s.io\/v1/,
      ],
      [{ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" }, /no request/],
      [
        { ...review(pod()), request: { kind: { kind: "Pod", group: "", version: "v1" } } },
        /no uid/,
      ],
      [
        {
          ...review(pod()),
          request: {
            ...review(pod()).request,
            kind: { group: "apps", version: "v1", kind: "Deployment" },
          },
        },
        /not for a core\/v1 Pod/,
      ],
      [review({ metadata: {} }), /not a Pod with containers/],
    ];
    for (const [body, message] of cases)
      assert.throws(
        () => parsePodReview(body),
        (e: unknown) => e instanceof ReviewError && message.test(e.message),
      );
  });
});
