/**
 * Talks to the servers' `full` resolvers through the system account: push account JWTs,
 * delete accounts, list and look up what each server holds.
 *
 * A push or delete counts once a majority of the servers acknowledged it: one server down
 * (a rolling restart is exactly that) must not stop tenants from being served. The caller
 * learns which servers acknowledged and brings the rest up to date when they return.
 *
 * No request carries headers: nats-server before 2.9.15 drops a CLAIMS.UPDATE that has them.
 */
import {
  RequestError,
  connect,
  createInbox,
  credsAuthenticator,
  type NatsConnection,
} from "@nats-io/transport-node";
import { trustedSigningKeys, type OperatorIdentity } from "./identities.ts";
import { decodeJwt, encodeJwt } from "./jwt.ts";
import { isPublicKey } from "./nkey.ts";

export interface ResolverClientOptions {
  servers: string[];
  /** The operator's system user .creds text. */
  creds: string;
  /** How many servers run a full resolver; a push counts once a majority of them answered. */
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

/** Fewer servers answered than needed before the deadline. */
export class ResolverTimeoutError extends ResolverError {
  override name = "ResolverTimeoutError";
  readonly answered: string[];

  constructor(operation: string, expected: number, needed: number, answered: string[]) {
    super(
      `${operation}: ${answered.length} of ${expected} servers answered` +
        (answered.length > 0 ? ` (${answered.join(", ")})` : "") +
        `, ${needed} needed`,
    );
    this.answered = answered;
  }
}

/** More than half: what a push or delete needs to count. */
export function majorityOf(servers: number): number {
  return Math.floor(servers / 2) + 1;
}

/**
 * How long a push waits for the remaining servers once a majority answered: servers that are
 * up answer within milliseconds of each other, and one that is down must not cost every push
 * the whole timeout.
 */
const STRAGGLER_MS = 750;

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

  /**
   * Sends one request and collects answers until every expected server answered, or (with
   * `quorum`) a quorum answered and stragglers had STRAGGLER_MS more, or `maxWait` passed.
   */
  private collect(
    subject: string,
    payload: string,
    maxWait: number,
    quorum?: number,
  ): Promise<string[]> {
    // The non-empty answers; `answered` also counts empty ones (a lookup of an account a
    // server lacks), which still mean that server has answered.
    const texts: string[] = [];
    let answered = 0;
    return new Promise((resolve, reject) => {
      let straggler: NodeJS.Timeout | undefined;
      const finish = (): void => {
        clearTimeout(deadline);
        clearTimeout(straggler);
        subscription.unsubscribe();
        resolve(texts);
      };
      const subscription = this.connection.subscribe(createInbox(), {
        callback: (error, msg) => {
          if (error) {
            finish();
            return;
          }
          answered++;
          if (msg.data.length > 0) texts.push(msg.string());
          if (answered >= this.expected) finish();
          else if (quorum !== undefined && texts.length >= quorum)
            straggler ??= setTimeout(finish, STRAGGLER_MS);
        },
      });
      const deadline = setTimeout(finish, maxWait);
      try {
        this.connection.publish(subject, payload, { reply: subscription.getSubject() });
      } catch (error) {
        finish();
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Sends one request and returns once `needed` servers answered, none with an error. */
  private async ask(
    operation: string,
    subject: string,
    payload: string,
    needed: number,
    quorum?: number,
  ): Promise<ReplyBody[]> {
    const texts = await this.collect(subject, payload, this.timeoutMs, quorum);
    const replies = texts.map((text) => JSON.parse(text) as ReplyBody);
    if (replies.length < needed)
      throw new ResolverTimeoutError(operation, this.expected, needed, replies.map(serverName));
    for (const body of replies)
      if (body.error) throw rejection(operation, serverName(body), body.error);
    return replies;
  }

  /** A push or delete: done once a majority stored it. */
  private acknowledged(operation: string, subject: string, payload: string): Promise<ReplyBody[]> {
    const majority = majorityOf(this.expected);
    return this.ask(operation, subject, payload, majority, majority);
  }

  private static acknowledgements(replies: ReplyBody[]): ServerReply[] {
    return replies.map((body) => {
      const data = (body.data ?? {}) as { code?: number; message?: string };
      return { server: serverName(body), code: data.code ?? 200, message: data.message ?? "" };
    });
  }

  /**
   * Pushes an account JWT and resolves, with the servers that stored it, once a majority did
   * (see STRAGGLER_MS for the rest). The server saves
   * a JWT from an untrusted issuer or an expired one and only fails at connect, so both are
   * refused here first.
   */
  async push(
    accountJwt: string,
    operator: Pick<OperatorIdentity, "operator" | "signing" | "nextSigning" | "retiringSigning">,
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
    // A retiring key's accounts are still served (drift repair) until each is signed anew.
    const trusted = [operator.operator.publicKey, ...trustedSigningKeys(operator)];
    if (!trusted.includes(claims.iss))
      throw new InvalidClaimsError(`account ${claims.sub} is issued by an untrusted key`);
    if (claims.exp !== undefined && claims.exp * 1000 <= Date.now())
      throw new InvalidClaimsError(`account ${claims.sub} has expired`);
    return ResolverClient.acknowledgements(
      await this.acknowledged(`push of ${claims.sub}`, "$SYS.REQ.CLAIMS.UPDATE", accountJwt),
    );
  }

  /**
   * Deletes accounts, resolving with the servers that deleted them once a majority did (needs
   * `allow_delete` in the resolver configuration).
   */
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
      await this.acknowledged(
        `delete of ${accounts.join(", ")}`,
        "$SYS.REQ.CLAIMS.DELETE",
        request,
      ),
    );
  }

  /**
   * The account JWTs the servers answer a lookup with (one per server that holds it). A server
   * without the account answers nothing on 2.9 and an empty message on later versions.
   */
  async lookup(account: string): Promise<string[]> {
    const texts = await this.collect(
      `$SYS.REQ.ACCOUNT.${account}.CLAIMS.LOOKUP`,
      "",
      Math.min(this.timeoutMs, 2000),
    );
    // Answered with the raw JWT, not a JSON body.
    return texts.map((text) => text.trim()).filter((text) => text.split(".").length === 3);
  }

  /**
   * The account public keys each server's resolver holds, from every server that answered
   * before the timeout (the servers that are down are simply absent).
   */
  async list(): Promise<Map<string, string[]>> {
    const replies = await this.ask("list", "$SYS.REQ.CLAIMS.LIST", "", 1);
    const result = new Map<string, string[]>();
    for (const body of replies) {
      result.set(serverName(body), Array.isArray(body.data) ? (body.data as string[]) : []);
    }
    return result;
  }

  /**
   * How many connections on all servers are authenticated as `user` in `account`; undefined
   * unless every expected server answered (one that did not may hold such a connection).
   */
  async userConnections(account: string, user: string): Promise<number | undefined> {
    // Every server answers for the account of the subject, also one without such connections;
    // one that has to fetch the account first answers up to two seconds later.
    const texts = await this.collect(
      `$SYS.REQ.ACCOUNT.${account}.CONNZ`,
      JSON.stringify({ user }),
      this.timeoutMs,
    );
    const replies = texts.map((text) => JSON.parse(text) as ReplyBody);
    if (replies.length < this.expected || replies.some((r) => r.error)) return undefined;
    let count = 0;
    for (const body of replies) {
      // num_connections counts what passed the user filter; total does not.
      const data = body.data as { num_connections?: unknown } | undefined;
      if (typeof data?.num_connections !== "number") return undefined;
      count += data.num_connections;
    }
    return count;
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
