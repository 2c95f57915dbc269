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
    assert.equal(options.settings.appUrl, options.settings.natsUrls[0]);
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
    ];
    for (const [argv, message] of cases)
      assert.throws(
        () => parseOptions(argv, {}),
        (e: unknown) => e instanceof OptionsError && message.test(e.message),
      );
  });

  test("usage lists every flag with its environment variable", () => {
    const text = usage();
    assert.match(text, /--namespace \[NATS_TENANCY_NAMESPACE\]/);
    assert.match(text, /--resync-seconds \[NATS_TENANCY_RESYNC_SECONDS\]/);
  });
});
