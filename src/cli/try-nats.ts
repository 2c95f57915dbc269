/**
 * A NATS round trip with the variables pods get (NATS_URL, NATS_CREDENTIALS_FILE or
 * NATS_CREDENTIALS, NATS_CA_FILE): what `npm start` tells a newcomer to run, and the way an
 * app connects.
 */
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator } from "@nats-io/transport-node";

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
const subject = process.argv[2] ?? "hello";
const sub = nc.subscribe(subject, { max: 1 });
nc.publish(subject, `hello from ${process.pid}`);
for await (const msg of sub) {
  process.stdout.write(`received on ${msg.subject}: ${msg.string()}\n`);
}
await nc.close();
