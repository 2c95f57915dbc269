import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OptionsError, parseOptions, usage } from "../../src/cli/options.ts";

describe("operator options", () => {
  test("defaults fit the chart's names: the NATS Service in the operator's namespace", () => {
    const options = parseOptions([], {});
    assert.equal(options.settings.namespace, "nats-tenancy-system");
    assert.deepEqual(options.settings.natsUrls, [
      "tls://nats.nats-tenancy-system.svc.cluster.local:4222",
    ]);
    assert.equal(options.settings.appUrls.url, options.settings.natsUrls[0]);
    assert.equal(options.settings.expectedServers, 3);
    assert.equal(options.settings.resyncMs, 300_000);
    assert.equal(options.logLevel, "info");
    assert.equal(options.healthPort, 8080);
  });

  test("a flag wins over its environment variable, which wins over the default", () => {
    const env = { NATS_TENANCY_NAMESPACE: "from-env", NATS_TENANCY_RESYNC_SECONDS: "60" };
    assert.equal(parseOptions([], env).settings.namespace, "from-env");
    assert.equal(parseOptions([], env).settings.resyncMs, 60_000);
    const flagged = parseOptions(["--namespace=ops", "--nats-url=tls://a:1, tls://b:2"], env);
    assert.equal(flagged.settings.namespace, "ops");
    assert.deepEqual(flagged.settings.natsUrls, ["tls://a:1", "tls://b:2"]);
  });

  test("bad values and unknown flags are refused with a message naming them", () => {
    const cases: [string[], RegExp][] = [
      [["--resync-seconds=0"], /--resync-seconds: "0" is not an integer from 1/],
      [["--concurrency=many"], /--concurrency: "many"/],
      [["--health-address=8080"], /--health-address: "8080" is not host:port/],
      [["--log-level=loud"], /--log-level: "loud" is not one of/],
      [["--no-such-flag"], /no-such-flag/],
      [["--role=both"], /--role: "both" is not one of all, controller, webhook/],
      [["--webhook-registration=chart"], /--webhook-registration: "chart"/],
      [["--certificate-lifetime-seconds=10"], /from 60/],
      [["--ca-lifetime-seconds=3600"], /--ca-lifetime-seconds must exceed/],
    ];
    for (const [argv, message] of cases)
      assert.throws(
        () => parseOptions(argv, {}),
        (e: unknown) => e instanceof OptionsError && message.test(e.message),
      );
  });

  test("credential lifetimes: the default must be one an App could ask for", () => {
    assert.deepEqual(
      parseOptions(["--credential-lifetime-seconds=3600", "--rotation-overlap-seconds=60"]).settings
        .credentials,
      {
        rotationOverlapMs: 60_000,
        lifetime: { defaultSeconds: 3600, minSeconds: 600, maxSeconds: 0 },
        signingKeyMaxAgeSeconds: 0,
      },
    );
    assert.equal(
      parseOptions(["--signing-key-max-age-seconds=86400"]).settings.credentials
        .signingKeyMaxAgeSeconds,
      86_400,
    );
    const refusals: [string[], RegExp][] = [
      [
        ["--credential-lifetime-seconds=300"],
        /300 s is under the shortest lifetime allowed, 600 s/,
      ],
      [["--credential-lifetime-max-seconds=86400"], /never expire are over the longest lifetime/],
      [
        ["--credential-lifetime-seconds=3600", "--credential-lifetime-max-seconds=300"],
        /--credential-lifetime-max-seconds must be 0 or at least --credential-lifetime-min-seconds/,
      ],
      [["--credential-lifetime-min-seconds=30"], /not an integer from 60/],
      [
        ["--signing-key-max-age-seconds=600", "--rotation-overlap-seconds=900"],
        /--signing-key-max-age-seconds: 0, or longer than --rotation-overlap-seconds/,
      ],
    ];
    for (const [args, message] of refusals)
      assert.throws(
        () => parseOptions(args, {}),
        (e: unknown) => e instanceof OptionsError && message.test(e.message),
        args.join(" "),
      );
  });

  test("external names: one spelling each, into the server certificate's names; the external URL must be verifiable by one of them", () => {
    const options = parseOptions(
      [
        "--external-names= NATS.Example.test,10.244.0.1,nats.example.test",
        "--external-url=tls://10.244.0.1:30422",
      ],
      {},
    );
    assert.deepEqual(options.settings.natsNames.external, ["nats.example.test", "10.244.0.1"]);
    assert.deepEqual(options.settings.appUrls, {
      url: "tls://nats.nats-tenancy-system.svc.cluster.local:4222",
      externalUrl: "tls://10.244.0.1:30422",
    });
    const unexposed = parseOptions([], {
      NATS_TENANCY_EXTERNAL_NAMES: "",
      NATS_TENANCY_EXTERNAL_URL: "",
    });
    assert.equal(unexposed.settings.natsNames.external, undefined);
    assert.deepEqual(Object.keys(unexposed.settings.appUrls), ["url"]);
    const refused: [string[], RegExp][] = [
      [
        ["--external-names=nats_example.test"],
        /--external-names: nats_example.test is neither a host name nor an address/,
      ],
      [
        ["--external-names=a.test", "--external-url=tls://b.test:4222"],
        /--external-url: b.test is not in --external-names/,
      ],
      [["--external-url=tls://b.test:4222"], /b.test is not in --external-names/],
      [["--external-names=a.test", "--external-url=https://a.test"], /is not tls:\/\/HOST:PORT/],
      [
        ["--external-names=a.test", "--external-websocket-url=tls://a.test:443"],
        /--external-websocket-url: tls:\/\/a.test:443 is not wss:\/\/HOST:PORT/,
      ],
      [
        ["--external-names=a.test", "--external-websocket-url=wss://b.test:443"],
        /--external-websocket-url: b.test is not in --external-names/,
      ],
      [
        ["--external-names=a.test", "--external-url=a.test:4222"],
        /is not tls:\/\/HOST:PORT|is not a URL/,
      ],
    ];
    for (const [argv, message] of refused)
      assert.throws(
        () => parseOptions(argv, {}),
        (e: unknown) => e instanceof OptionsError && message.test(e.message),
        argv.join(" "),
      );
  });

  test("usage lists every flag with its environment variable", () => {
    const text = usage();
    assert.match(text, /--namespace \[NATS_TENANCY_NAMESPACE\]/);
    assert.match(text, /--resync-seconds \[NATS_TENANCY_RESYNC_SECONDS\]/);
  });

  test("roles as the chart runs them: the controller keeps the webhook's registration but serves none; the webhook serves", () => {
    const chart = {
      NATS_TENANCY_WEBHOOK_REGISTRATION: "ca-bundle",
      NATS_TENANCY_WEBHOOK_EXCLUDED_NAMESPACES: "kube-system, monitoring",
    };
    const controller = parseOptions([], { ...chart, NATS_TENANCY_ROLE: "controller" });
    assert.equal(controller.role, "controller");
    assert.equal(controller.webhook, undefined);
    assert.equal(controller.settings.webhook?.registration, "ca-bundle");
    assert.deepEqual(controller.settings.webhook.excludedNamespaces, ["kube-system", "monitoring"]);
    const webhook = parseOptions([], { ...chart, NATS_TENANCY_ROLE: "webhook" });
    assert.deepEqual(webhook.webhook, { host: "0.0.0.0", port: 8443 });
    assert.equal(parseOptions([], {}).role, "all");
    assert.equal(parseOptions([], {}).settings.webhook?.registration, "operator");
  });

  test("certificate lifetimes, and the servers reloaded at their pods' names when asked (the chart does)", () => {
    const options = parseOptions(
      ["--certificate-lifetime-seconds=120", "--namespace=ops", "--server-reload=on"],
      {},
    );
    assert.equal(options.settings.leafLifetimeMs, 120_000);
    assert.equal(options.settings.caPolicy.caLifetimeMs, 3 * 365 * 86_400_000);
    assert.deepEqual(options.settings.serverReload?.endpoint("nats-1"), {
      host: "nats-1.nats-headless.ops.svc.cluster.local",
      port: 4222,
    });
    assert.equal(parseOptions([], {}).settings.serverReload, undefined);
  });
});
