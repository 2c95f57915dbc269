import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiException } from "@kubernetes/client-node";
import { apiErrorSentence } from "../../src/kube/api-errors.ts";

test("an API error becomes the Status's own sentence, without the body's JSON or the headers", () => {
  const status = {
    kind: "Status",
    apiVersion: "v1",
    status: "Failure",
    message: 'secrets "web-prod-nats" is forbidden: sealed namespaces take no Secrets',
    reason: "Forbidden",
    code: 403,
  };
  for (const body of [status, JSON.stringify(status)]) {
    const sentence = apiErrorSentence(
      new ApiException(403, "Unknown API Status Code!", body, { "audit-id": "x" }),
    );
    assert.equal(
      sentence,
      'the Kubernetes API answered 403 Forbidden: secrets "web-prod-nats" is forbidden: sealed namespaces take no Secrets',
    );
  }
  assert.equal(
    apiErrorSentence(new ApiException(502, "Bad Gateway", "<html>proxy</html>", {})),
    "the Kubernetes API answered 502",
  );
});
