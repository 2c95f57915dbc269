import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import {
  KubeconfigError,
  defaultKubeconfigPaths,
  inClusterAccess,
  kubeconfigEndpoint,
} from "../../src/kube/kubeconfig-access.ts";

const dir = mkdtempSync(join(tmpdir(), "kubeconfig-test-"));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

describe("kubeconfig files as the operator reads them", () => {
  test("the current context's cluster and client certificate, inline data decoded", () => {
    const path = file(
      "inline",
      [
        "apiVersion: v1",
        "kind: Config",
        "current-context: main",
        "contexts:",
        "- name: other",
        "  context: { cluster: far, user: nobody }",
        "- name: main",
        "  context: { cluster: near, user: admin }",
        "clusters:",
        "- name: near",
        "  cluster:",
        "    server: https://127.0.0.1:6443/",
        `    certificate-authority-data: ${b64("CA PEM")}`,
        "    tls-server-name: api.local",
        "users:",
        "- name: admin",
        "  user:",
        `    client-certificate-data: ${b64("CERT PEM")}`,
        `    client-key-data: ${b64("KEY PEM")}`,
      ].join("\n"),
    );
    const endpoint = kubeconfigEndpoint([path]);
    assert.deepEqual(endpoint, {
      server: "https://127.0.0.1:6443/",
      ca: { data: "CA PEM" },
      cert: { data: "CERT PEM" },
      key: { data: "KEY PEM" },
      token: undefined,
      insecureSkipTlsVerify: false,
      tlsServerName: "api.local",
    });
  });

  test("files are taken relative to the kubeconfig that names them; a token is sent as it is", () => {
    const path = file(
      "relative",
      [
        "current-context: c",
        "contexts: [{ name: c, context: { cluster: k, user: u } }]",
        "clusters: [{ name: k, cluster: { server: 'https://k:443', certificate-authority: ca.crt } }]",
        "users: [{ name: u, user: { token: abc.def } }]",
      ].join("\n"),
    );
    const endpoint = kubeconfigEndpoint([path]);
    assert.deepEqual(endpoint?.ca, { file: join(dir, "ca.crt") });
    assert.deepEqual(endpoint.token, { data: "abc.def" });
  });

  test("merged as kubectl merges: the first file to name an entry or the current context wins", () => {
    const first = file(
      "first",
      [
        "current-context: b",
        "clusters: [{ name: k, cluster: { server: 'https://first:1' } }]",
        "users: [{ name: u, user: { tokenFile: /run/token } }]",
      ].join("\n"),
    );
    const second = file(
      "second",
      [
        "current-context: a",
        "contexts: [{ name: b, context: { cluster: k, user: u } }]",
        "clusters: [{ name: k, cluster: { server: 'https://second:2' } }]",
      ].join("\n"),
    );
    const endpoint = kubeconfigEndpoint([first, join(dir, "absent"), second]);
    assert.equal(endpoint?.server, "https://first:1");
    assert.deepEqual(endpoint.token, { file: "/run/token" });
  });

  test("exec plugins, auth providers and proxies are left to client-node", () => {
    for (const [user, cluster] of [
      ["{ exec: { command: aws, apiVersion: client.authentication.k8s.io/v1 } }", ""],
      ["{ auth-provider: { name: oidc } }", ""],
      ["{ token: t }", ", proxy-url: 'http://proxy:3128'"],
    ] as const) {
      const path = file(
        "needs-client-node",
        [
          "current-context: c",
          "contexts: [{ name: c, context: { cluster: k, user: u } }]",
          `clusters: [{ name: k, cluster: { server: 'https://k:443'${cluster} } }]`,
          `users: [{ name: u, user: ${user} }]`,
        ].join("\n"),
      );
      assert.equal(kubeconfigEndpoint([path]), undefined, user);
    }
  });

  test("a kubeconfig that leads nowhere is refused with what is missing", () => {
    const cases: [string, RegExp][] = [
      ["clusters: []", /no current context/],
      ["current-context: x", /current context x is not defined/],
      ["current-context: x\ncontexts: [{ name: x, context: { cluster: k } }]", /names no defined/],
      ["{ not yaml", /not valid YAML/],
      [
        "current-context: x\ncontexts: [{ name: x, context: { cluster: k } }]\n" +
          "clusters: [{ name: k, cluster: { server: 'http://127.0.0.1:8080' } }]",
        /is not https/,
      ],
    ];
    for (const [text, message] of cases)
      assert.throws(() => kubeconfigEndpoint([file("bad", text)]), message);
    assert.throws(() => kubeconfigEndpoint([join(dir, "missing")]), KubeconfigError);
  });

  test("KUBECONFIG's list is read as kubectl reads it, else ~/.kube/config", () => {
    assert.deepEqual(defaultKubeconfigPaths({ KUBECONFIG: "/a:/b::" }), ["/a", "/b"]);
    assert.match(defaultKubeconfigPaths({}).join(), /\.kube\/config$/);
  });

  test("in a pod: the service's address (IPv6 in brackets) and the account's token", async () => {
    const account = mkdtempSync(join(dir, "sa-"));
    writeFileSync(join(account, "token"), "first\n");
    writeFileSync(join(account, "ca.crt"), "");
    const access = inClusterAccess(
      { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" },
      account,
    );
    assert.equal(access.server, "https://[fd00::1]:443");
    assert.equal((await access.authorize()).headers.authorization, "Bearer first");
    // The kubelet rotates the projected token: it is read again once the last reading is old.
    writeFileSync(join(account, "token"), "second\n");
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal((await access.authorize()).headers.authorization, "Bearer second");
    await access.close();
    assert.throws(() => inClusterAccess({}, account), /KUBERNETES_SERVICE_HOST/);
  });
});
