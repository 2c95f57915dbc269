/**
 * Talks to the servers' `full` resolvers through the system account: push account JWTs and
 * wait for every expected server, delete accounts, list and look up what each server holds.
 *
 * No request carries headers: nats-server before 2.9.15 drops a CLAIMS.UPDATE that has them.
 */
import {
  RequestError,
  connect,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
} from "@nats-io/transport-node";
import { type OperatorIdentity } from "./identities.ts";
import { decodeJwt, encodeJwt } from "./jwt.ts";
import { isPublicKey } from "./nkey.ts";

export interface ResolverClientOptions {
  servers: string[];
  /** The operator's system user .creds text. */
  creds: string;
  /** How many servers run a full resolver; a push is acknowledged only when all of them answer. */
  expectedServers: number;
  caFile?: string;
  /** CA bundle PEM, for a caller that holds it in memory (the operator: its own CA). */
  ca?: string;
  timeoutMs?: number;
  name?: string;
}

export interface ServerReply {
  server: string;
  code: number;
  message: string;
}

export class ResolverError extends Error {
  override name = "ResolverError";
}

/** A server answered with an error object (bad JWT, untrusted issuer, delete not allowed...). */
export class ResolverRejectedError extends ResolverError {
  override name = "ResolverRejectedError";
  readonly server: string;
  readonly code: number;

  constructor(operation: string, server: string, code: number, description: string) {
    super(`${operation} rejected by ${server}: ${description} (code ${code})`);
    this.server = server;
    this.code = code;
  }
}

/** Fewer servers answered than expected before the deadline. */
export class ResolverTimeoutError extends ResolverError {
  override name = "ResolverTimeoutError";
  readonly answered: string[];

  constructor(operation: string, expected: number, answered: string[]) {
    super(
      `${operation}: ${answered.length} of ${expected} servers answered` +
        (answered.length > 0 ? ` (${answered.join(", ")})` : ""),
    );
    this.answered = answered;
  }
}

/** The JWT failed the checks made before it is sent. */
export class InvalidClaimsError extends ResolverError {
  override name = "InvalidClaimsError";
}

interface ReplyBody {
  server?: { name?: string; id?: string };
  data?: unknown;
  error?: { code?: number; description?: string };
}

const encoder = new TextEncoder();

function rejection(
  operation: string,
  server: string,
  error: { code?: number; description?: string },
): ResolverRejectedError {
  return new ResolverRejectedError(
    operation,
    server,
    error.code ?? 0,
    error.description ?? "unknown error",
  );
}

function serverName(body: ReplyBody): string {
  return body.server?.name ?? body.server?.id ?? "unknown server";
}

export class ResolverClient {
  readonly connection: NatsConnection;
  private readonly expected: number;
  private readonly timeoutMs: number;

  private constructor(connection: NatsConnection, expected: number, timeoutMs: number) {
    this.connection = connection;
    this.expected = expected;
    this.timeoutMs = timeoutMs;
  }

  static async connect(options: ResolverClientOptions): Promise<ResolverClient> {
    const connection = await connect({
      servers: options.servers,
      name: options.name ?? "nats-tenancy-operator",
      authenticator: credsAuthenticator(encoder.encode(options.creds)),
      ...(options.caFile ? { tls: { caFile: options.caFile } } : {}),
      ...(options.ca ? { tls: { ca: options.ca } } : {}),
      maxReconnectAttempts: -1,
      timeout: options.timeoutMs ?? 5000,
    });
    return new ResolverClient(connection, options.expectedServers, options.timeoutMs ?? 5000);
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  /** Sends one request and collects what arrives, up to one answer per expected server. */
  private async gather(subject: string, payload: string, maxWait: number): Promise<Msg[]> {
    const messages: Msg[] = [];
    const iterator = await this.connection.requestMany(subject, payload, {
      strategy: "count",
      maxMessages: this.expected,
      maxWait,
    });
    // A no-responders status, and a 2.10+ lookup of an unknown account, arrive empty.
    for await (const msg of iterator) if (msg.data.length > 0) messages.push(msg);
    return messages;
  }

  /** Sends one request and collects an answer from each of the expected servers. */
  private async ask(operation: string, subject: string, payload: string): Promise<ReplyBody[]> {
    const replies = (await this.gather(subject, payload, this.timeoutMs)).map((m) =>
      m.json<ReplyBody>(),
    );
    const servers = new Set(replies.map(serverName));
    if (servers.size < this.expected)
      throw new ResolverTimeoutError(operation, this.expected, [...servers]);
    for (const body of replies)
      if (body.error) throw rejection(operation, serverName(body), body.error);
    return replies;
  }

  private static acknowledgements(replies: ReplyBody[]): ServerReply[] {
    return replies.map((body) => {
      const data = (body.data ?? {}) as { code?: number; message?: string };
      return { server: serverName(body), code: data.code ?? 200, message: data.message ?? "" };
    });
  }

  /**
   * Pushes an account JWT and resolves once every expected server stored it. The server saves
   * a JWT from an untrusted issuer or an expired one and only fails at connect, so both are
   * refused here first.
   */
  async push(
    accountJwt: string,
    operator: Pick<OperatorIdentity, "operator" | "signing">,
  ): Promise<ServerReply[]> {
    let claims;
    try {
      claims = decodeJwt<{ type?: string }>(accountJwt);
    } catch (error) {
      throw new InvalidClaimsError(`not a valid JWT: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (claims.nats.type !== "account" || !isPublicKey(claims.sub, "account"))
      throw new InvalidClaimsError(
        `not an account JWT (${String(claims.nats.type)} for ${claims.sub})`,
      );
    const trusted = [operator.operator.publicKey, operator.signing.publicKey];
    if (!trusted.includes(claims.iss))
      throw new InvalidClaimsError(`account ${claims.sub} is issued by an untrusted key`);
    if (claims.exp !== undefined && claims.exp * 1000 <= Date.now())
      throw new InvalidClaimsError(`account ${claims.sub} has expired`);
    return ResolverClient.acknowledgements(
      await this.ask(`push of ${claims.sub}`, "$SYS.REQ.CLAIMS.UPDATE", accountJwt),
    );
  }

  /** Deletes accounts from every server (needs `allow_delete` in the resolver configuration). */
  async delete(
    accounts: string[],
    operator: Pick<OperatorIdentity, "signing">,
  ): Promise<ServerReply[]> {
    // The server takes a delete request only from an operator key, issued to itself.
    const request = encodeJwt(
      {
        name: "delete accounts",
        sub: operator.signing.publicKey,
        type: "generic",
        nats: { accounts },
      },
      operator.signing,
      Math.floor(Date.now() / 1000),
    );
    return ResolverClient.acknowledgements(
      await this.ask(`delete of ${accounts.join(", ")}`, "$SYS.REQ.CLAIMS.DELETE", request),
    );
  }

  /**
   * The account JWTs the servers answer a lookup with (one per server that holds it). A server
   * without the account answers nothing on 2.9 and an empty message on later versions.
   */
  async lookup(account: string): Promise<string[]> {
    const messages = await this.gather(
      `$SYS.REQ.ACCOUNT.${account}.CLAIMS.LOOKUP`,
      "",
      Math.min(this.timeoutMs, 2000),
    );
    return messages.map((m) => m.string().trim()).filter((text) => text.split(".").length === 3);
  }

  /** The account public keys each server's resolver holds. */
  async list(): Promise<Map<string, string[]>> {
    const replies = await this.ask("list", "$SYS.REQ.CLAIMS.LIST", "");
    const result = new Map<string, string[]>();
    for (const body of replies) {
      result.set(serverName(body), Array.isArray(body.data) ? (body.data as string[]) : []);
    }
    return result;
  }

  /** Removes an account's JetStream data on every server (the resolver delete leaves it on disk). */
  async purgeJetStream(account: string): Promise<void> {
    let msg;
    try {
      msg = await this.connection.request(`$JS.API.ACCOUNT.PURGE.${account}`, "", {
        timeout: this.timeoutMs,
      });
    } catch (error) {
      // No responders: JetStream is not enabled on these servers, so there is nothing to purge.
      if (error instanceof RequestError && error.isNoResponders()) return;
      throw new ResolverError(`jetstream purge of ${account} failed`, { cause: error });
    }
    const body = msg.json<{
      initiated?: boolean;
      error?: { code?: number; description?: string };
    }>();
    // 404: the account never used JetStream here.
    if (body.error && body.error.code !== 404)
      throw rejection("jetstream purge", "jetstream", body.error);
  }
}
