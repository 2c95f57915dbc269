/**
 * The HTTPS endpoint the API server calls for pods and Apps. Its certificate comes from the
 * operator's CA and is swapped in place (new TLS handshakes get it; no restart, no dropped
 * request). Whatever arrives that is not a review of what its path serves is answered 400 with
 * what is wrong, never a crash: the API server may be misconfigured, the port may be probed.
 */
import Fastify, { LogController, type FastifyError } from "fastify";
import type { Logger } from "pino";
import type { Operation } from "fast-json-patch";
import {
  MUTATE_APPS_PATH,
  MUTATE_PODS_PATH,
  VALIDATE_APPS_PATH,
} from "../contract/webhook-registration.ts";
import {
  ReviewError,
  parseAppCreation,
  parseAppReview,
  patched,
  parsePodReview,
  reviewResponse,
  verdict,
  type AppCreation,
  type AppReview,
  type PodReview,
  type ReviewResponse,
} from "./admission-review.ts";
import type { Decision } from "./pod-injection.ts";

/** The API server refuses objects over 3 MiB; a review holds one pod and some envelope. */
export const MAX_REVIEW_BYTES = 4 * 1024 * 1024;

export interface ServingCertificate {
  certificatePem: string;
  privateKeyPem: string;
}

export interface WebhookServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  certificate: ServingCertificate;
  decide: (review: PodReview) => Decision;
  /** After each decision, for logs, events and metrics; `seconds` it took to answer. */
  onDecision?: (review: PodReview, decision: Decision, seconds: number) => void;
  /** Why an App may not be stored, or undefined to allow it. */
  judgeApp?: (review: AppReview) => string | undefined;
  onAppVerdict?: (review: AppReview, refusal: string | undefined, seconds: number) => void;
  /** What to change in an App being created. */
  mutateApp?: (creation: AppCreation) => Operation[];
  onAppMutation?: (creation: AppCreation, operations: Operation[], seconds: number) => void;
  /** A request that is not a review of what its path serves (answered 400). */
  onInvalid?: (error: ReviewError) => void;
  logger: Logger;
}

export interface WebhookServer {
  url: string;
  port: number;
  /** New handshakes use it from now on. */
  setCertificate: (certificate: ServingCertificate) => void;
  close: () => Promise<void>;
}

export async function startWebhookServer(options: WebhookServerOptions): Promise<WebhookServer> {
  const app = Fastify({
    https: { cert: options.certificate.certificatePem, key: options.certificate.privateKeyPem },
    bodyLimit: MAX_REVIEW_BYTES,
    loggerInstance: options.logger.child({ component: "webhook" }),
    logController: new LogController({ disableRequestLogging: true }),
  });

  // Reviews are JSON; with fastify's text parser gone, every other type is a 415 (mapped below).
  app.removeContentTypeParser("text/plain");
  // Fastify answers 413 and 415 for these; the API server and a person reading its log both
  // get one answer for "this is not a review": 400 with the reason.
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      options.logger.error({ err: error }, "webhook handler failed");
      return reply.code(500).send({ error: "internal error" });
    }
    const message =
      error.code === "FST_ERR_CTP_BODY_TOO_LARGE"
        ? `the body is larger than ${String(MAX_REVIEW_BYTES)} bytes`
        : error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
          ? "the content type must be application/json"
          : error.message;
    return reply.code(400).send({ error: message });
  });

  /** One review path: parse (a ReviewError is a 400), answer, report how long it took. */
  const serve = <T>(
    path: string,
    parse: (body: unknown) => T,
    answer: (review: T, started: number) => ReviewResponse,
  ): void => {
    app.post(path, async (request, reply) => {
      const started = performance.now();
      let review: T;
      try {
        review = parse(request.body);
      } catch (error) {
        if (!(error instanceof ReviewError)) throw error;
        options.onInvalid?.(error);
        return reply.code(400).send({ error: error.message });
      }
      return reply.send(answer(review, started));
    });
  };
  const elapsed = (started: number): number => (performance.now() - started) / 1000;

  serve(MUTATE_PODS_PATH, parsePodReview, (review, started) => {
    const decision = options.decide(review);
    const response = reviewResponse(review, decision);
    options.onDecision?.(review, decision, elapsed(started));
    return response;
  });
  serve(MUTATE_APPS_PATH, parseAppCreation, (creation, started) => {
    const operations = options.mutateApp?.(creation) ?? [];
    options.onAppMutation?.(creation, operations, elapsed(started));
    return patched(creation.uid, operations);
  });
  serve(VALIDATE_APPS_PATH, parseAppReview, (review, started) => {
    const refusal = options.judgeApp?.(review);
    options.onAppVerdict?.(review, refusal, elapsed(started));
    return verdict(review.uid, refusal);
  });

  const url = await app.listen({ host: options.host, port: options.port });
  const server = app.server;
  return {
    url,
    port: Number(new URL(url).port),
    setCertificate: (certificate) => {
      server.setSecureContext({
        cert: certificate.certificatePem,
        key: certificate.privateKeyPem,
      });
    },
    close: () => app.close(),
  };
}
