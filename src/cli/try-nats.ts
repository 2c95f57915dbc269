/**
 * A NATS round trip with the variables pods get (NATS_URL, NATS_CREDENTIALS_FILE or
 * NATS_CREDENTIALS, NATS_CA_FILE): what `npm start` tells a newcomer to run, the way an app
 * connects, and the chart's `helm test` (`--request-reply`: it answers its own request).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connect, credsAuthenticator } from "@nats-io/transport-node";

const { values, positionals } = parseArgs({
  options: { "request-reply": { type: "boolean" } },
  allowPositionals: true,
});
const url = process.env.NATS_URL;
const credsFile = process.env.NATS_CREDENTIALS_FILE;
const creds = credsFile ? readFileSync(credsFile, "utf8") : process.env.NATS_CREDENTIALS;
const caFile = process.env.NATS_CA_FILE;
if (!url || !creds) {
  process.stderr.write("set NATS_URL and NATS_CREDENTIALS_FILE (or NATS_CREDENTIALS)\n");
  process.exit(2);
}
const nc = await connect({
  servers: url.split(","),
  authenticator: credsAuthenticator(new TextEncoder().encode(creds)),
  ...(caFile ? { tls: { caFile } } : {}),
});
const subject = positionals[0] ?? "hello";
if (values["request-reply"]) {
  const responder = nc.subscribe(subject, {
    max: 1,
    callback: (_error, msg) => {
      msg.respond(`reply to ${msg.string()}`);
    },
  });
  const reply = await nc.request(subject, `request from ${process.pid}`, { timeout: 5000 });
  process.stdout.write(`request-reply on ${subject}: ${reply.string()}\n`);
  responder.unsubscribe();
} else {
  const sub = nc.subscribe(subject, { max: 1 });
  nc.publish(subject, `hello from ${process.pid}`);
  for await (const msg of sub) {
    process.stdout.write(`received on ${msg.subject}: ${msg.string()}\n`);
  }
}
await nc.close();
