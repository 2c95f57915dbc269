import assert from "node:assert/strict";
import { test } from "node:test";
import {
  EXTERNAL_URL_KEY,
  EXTERNAL_WEBSOCKET_URL_KEY,
  appSecret,
  appSecretCurrent,
  appSecretUnchanged,
  type AppSecretInput,
} from "../../src/contract/app-secret.ts";
import { decodeSecretData } from "../../src/kube/read-secret.ts";

const input: AppSecretInput = {
  namespace: "shop",
  app: "orders",
  environment: "prod",
  owner: {
    apiVersion: "nats-tenancy.io/v1",
    kind: "App",
    name: "orders",
    uid: "u1",
    controller: true,
  },
  url: "tls://nats.nats-tenancy-system.svc.cluster.local:4222",
  creds: "creds\n",
  caBundle: "ca\n",
  madeFrom: "account revision 1",
};

test("the external URL: a key of its own only while NATS is exposed; exposing and unexposing each rewrite the Secret", () => {
  const inside = appSecret(input);
  assert.deepEqual(Object.keys(decodeSecretData(inside)).sort(), [
    "NATS_CREDENTIALS",
    "NATS_URL",
    "ca.crt",
    "nats.creds",
    "provider",
    "type",
    "url",
  ]);
  const exposed = { ...input, externalUrl: "tls://10.0.0.5:30422" };
  const outside = appSecret(exposed);
  assert.equal(decodeSecretData(outside)[EXTERNAL_URL_KEY], "tls://10.0.0.5:30422");
  assert.equal(decodeSecretData(outside).NATS_URL, input.url, "pods keep the in-cluster URL");

  assert.equal(appSecretUnchanged(inside, input), true);
  assert.equal(appSecretCurrent(inside, input), true);
  assert.equal(appSecretUnchanged(inside, exposed), false, "exposed: rewritten");
  assert.equal(appSecretCurrent(inside, exposed), false);
  assert.equal(appSecretUnchanged(outside, exposed), true);
  assert.equal(appSecretUnchanged(outside, input), false, "unexposed: rewritten");
  assert.equal(appSecretCurrent(outside, input), false);
  assert.equal(
    appSecretUnchanged(outside, { ...exposed, externalUrl: "tls://10.0.0.5:30423" }),
    false,
    "another port: rewritten",
  );
  const websocket = { ...exposed, externalWebsocketUrl: "wss://10.0.0.5:30443" };
  assert.equal(
    decodeSecretData(appSecret(websocket))[EXTERNAL_WEBSOCKET_URL_KEY],
    "wss://10.0.0.5:30443",
  );
  assert.equal(decodeSecretData(outside)[EXTERNAL_WEBSOCKET_URL_KEY], undefined);
  assert.equal(appSecretUnchanged(outside, websocket), false, "a WebSocket listener: rewritten");
});
