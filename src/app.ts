import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { ValidateFunction } from 'ajv';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import helmet from 'helmet';
import { authPlugin, bearerAuthScheme } from './auth.js';
import type { Config } from './config.js';
import { databasePlugin } from './db/client.js';
import { drainingPlugin } from './draining.js';
import { replicaReadsPlugin } from './db/replica-reads.js';
import { answerClientError, answerFrameworkError, ApiError, registerErrorHandlers } from './errors.js';
import { changeFeedPlugin } from './change-feed.js';
import { appointmentBatchRoutes } from './routes/appointment-batch.js';
import { appointmentRoutes } from './routes/appointments.js';
import { availabilityRoutes } from './routes/availability.js';
import { changeRoutes } from './routes/changes.js';
import { healthRoutes } from './routes/health.js';
import { webhookDeliveryRoutes } from './routes/webhook-deliveries.js';
import { webhookRoutes } from './routes/webhooks.js';
import { Appointment, HistoryEntry, WriteResult } from './schemas/appointments.js';
import { ChangesPage, DeleteChange, UpsertChange } from './schemas/changes.js';
import { WebhookEndpoint, WebhookEndpointWithSecret } from './schemas/webhooks.js';
import { ErrorCode, errorResponse, ErrorResponse } from './schemas/errors.js';
import { RateLimitHeaders } from './schemas/headers.js';
import { ID_SYNTAX } from './schemas/ids.js';
import { declareHeaders, documentRoute } from './schemas/openapi.js';
import { DeliveryAttempt, TestAttempt } from './schemas/webhook-deliveries.js';
import { metricsPlugin } from './metrics.js';
import { buildSerializer } from './serialization.js';
import { buildAjv } from './validation.js';
import { durationListMs, durationMs } from './durations.js';
import { webhookDeliveryPlugin } from './webhook-delivery.js';
import { webhookSecretKeyOf } from './webhook-startup.js';

/** The settings (config.ts, defaults applied), the database to use and the logger. */
export interface AppOptions extends Config {
  databaseUrl: string;
  logger: FastifyBaseLogger;
}

// The API answers JSON only: nothing in it may be loaded, framed or run by a browser.
const API_CSP = {
  useDefaults: false,
  directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
};
// Swagger UI loads its own scripts and styles (no inline scripts) and fetches the document from this origin.
const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; form-action 'self'; frame-ancestors 'self'; " +
  "img-src 'self' data:; object-src 'none'; script-src 'self'; script-src-attr 'none'; style-src 'self' 'unsafe-inline'";

export const BODY_LIMIT = 1024 * 1024;

// What a browser on another origin may send and read (CORS_ORIGIN): every method the API serves and
// every request header it reads; the response headers a client needs, the rate-limit ones included.
// Last-Event-ID: EventSource sends it itself without a preflight, but an event-stream client built on
// fetch sets it as any other header, which takes one.
export const CORS_METHODS = ['GET', 'HEAD', 'POST', 'DELETE'];
export const CORS_REQUEST_HEADERS = [
  'content-type',
  'authorization',
  'x-request-id',
  'if-match',
  'if-none-match',
  'last-event-id',
];
export const CORS_EXPOSED_HEADERS = [
  'etag',
  'link',
  'location',
  'retry-after',
  'x-request-id',
  'x-ratelimit-limit',
  'x-ratelimit-remaining',
  'x-ratelimit-reset',
];

/**
 * A client's x-request-id is kept only when it is a plain id; anything else (too long, markup, several
 * headers joined by a comma) would end up in logs and answers as sent, so it gets a new id instead.
 */
function requestId(request: IncomingMessage): string {
  const sent = request.headers['x-request-id'];
  return typeof sent === 'string' && ID_SYNTAX.test(sent) ? sent : randomUUID();
}

/** One access-log line per request, written when it is answered, instead of Fastify's two. */
class OneLinePerRequest extends LogController {
  override incomingRequest(): void {}
  override requestCompleted(...args: Parameters<LogController['requestCompleted']>): void {
    const [error, request, reply] = args;
    if (error) super.requestCompleted(...args);
    else reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/**
 * The headers helmet's middleware sets, worked out once: with a fixed policy they are the same on
 * every response, and setting them on the raw response one by one (as @fastify/helmet does, building
 * the middleware anew each time) was a noticeable share of the CPU of a create (docs/performance.md).
 */
function helmetHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader: (name: string, value: string) => (headers[name.toLowerCase()] = value),
    removeHeader: () => {},
  };
  helmet({ contentSecurityPolicy: API_CSP })({} as IncomingMessage, recorder as unknown as ServerResponse, (error) => {
    if (error) throw error;
  });
  return headers;
}

/**
 * Ajv's coercion reads "0x10", "1e2" and " 7" as numbers; in a query string or a path an integer
 * must be written in digits.
 */
function digitsOnlyIntegers(schema: unknown, validate: ValidateFunction): ValidateFunction {
  const properties = (schema as { properties?: Record<string, { type?: string }> }).properties ?? {};
  const integers = Object.keys(properties).filter((key) => properties[key]!.type === 'integer');
  if (integers.length === 0) return validate;
  const strict = ((data: Record<string, unknown>) => {
    const bad = integers.find((key) => typeof data[key] === 'string' && !/^[0-9]{1,15}$/.test(data[key] as string));
    if (bad !== undefined) {
      strict.errors = [
        {
          keyword: 'type',
          instancePath: `/${bad}`,
          schemaPath: '',
          params: { type: 'integer' },
          message: 'must be an integer written in digits',
        },
      ];
      return false;
    }
    const valid = validate(data);
    strict.errors = validate.errors;
    return valid;
  }) as ValidateFunction;
  return strict;
}

/** The whole service, as the server, the tests and the scripts run it. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: BODY_LIMIT,
    // ids are at most 128 characters; longer ones reach validation and get a 400 that says why
    routerOptions: { maxParamLength: 2048 },
    frameworkErrors: answerFrameworkError,
    clientErrorHandler: answerClientError,
    // genReqId reads x-request-id itself, so that it can refuse one that is not a plain id.
    requestIdHeader: false,
    logController: new OneLinePerRequest(),
    genReqId: requestId,
    connectionTimeout: options.connectionTimeoutMs,
    requestTimeout: options.requestTimeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    // the draining plugin answers such requests with the service's own 503
    return503OnClosing: false,
    schemaController: { compilersFactory: { buildSerializer } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.server.headersTimeout = options.headersTimeoutMs;

  // Bodies are taken as they are: no type coercion (`1.5` is not the id "1.5"), no silent removal of
  // unknown properties. Query strings and path parameters are text, so there numbers are coerced.
  const bodyAjv = buildAjv({ coerceTypes: false });
  const paramAjv = buildAjv({ coerceTypes: true });
  for (const schema of [
    Appointment,
    HistoryEntry,
    WriteResult,
    ErrorResponse,
    UpsertChange,
    DeleteChange,
    ChangesPage,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
    DeliveryAttempt,
    TestAttempt,
  ]) {
    app.addSchema(schema);
    bodyAjv.addSchema(schema);
    paramAjv.addSchema(schema);
  }
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? bodyAjv.compile(schema) : digitsOnlyIntegers(schema, paramAjv.compile(schema)),
  );

  // JSON only: Fastify would otherwise also accept text/plain bodies.
  app.removeContentTypeParser('text/plain');
  // Some HTTP clients send `Content-Type: application/json` on every request, a DELETE with no body
  // included: that is no body, not an empty JSON text. So is an empty POST to a route that takes no
  // body (enable, rotate-secret); a POST with an empty body where one is expected stays a 400.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body.length === 0 && (request.method === 'DELETE' || request.routeOptions.schema?.body === undefined))
      done(null, undefined);
    // the default parser is synchronous: it has called done when it returns
    else void parseJson(request, body as string, done);
  });

  registerErrorHandlers(app);

  const securityHeaders = helmetHeaders();
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(securityHeaders).header('x-request-id', request.id);
    done();
  });
  await app.register(drainingPlugin);
  if (options.corsOrigin !== undefined) {
    const origins = options.corsOrigin.split(',').map((origin) => origin.trim());
    await app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: CORS_METHODS,
      allowedHeaders: CORS_REQUEST_HEADERS,
      exposedHeaders: CORS_EXPOSED_HEADERS,
    });
  }

  // before swagger: /metrics is for the operators' Prometheus, no part of the API's document
  await app.register(metricsPlugin, { token: options.metricsToken });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Appointments service',
        version: '0.1.0',
        description:
          'Create-or-update appointments; overlaps within an organization are refused atomically; every version is kept; point-in-time reads.',
      },
      // Relative: Swagger UI sends "Try it out" to the origin that served the document; generated clients
      // are given their base URL.
      servers: [{ url: '/', description: 'The service that serves this document' }],
      tags: [
        { name: 'appointments', description: 'Create or update, list, read, history and delete; point-in-time reads' },
        { name: 'changes', description: 'The change feed: every change of an organization, exactly once, in order' },
        { name: 'availability', description: 'Free/busy and bookable slots, in opening hours of any time zone' },
        {
          name: 'webhooks',
          description: 'Every change pushed to subscribed URLs, signed by the Standard Webhooks spec',
        },
        { name: 'health', description: 'Probes for the orchestrator; no API key needed' },
      ],
      components: options.auth === 'required' ? { securitySchemes: { bearerAuth: bearerAuthScheme } } : {},
    },
    transform: documentRoute,
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs', staticCSP: DOCS_CSP });

  await app.register(databasePlugin, { databaseUrl: options.databaseUrl, poolMax: options.dbPoolMax });
  await app.register(replicaReadsPlugin, { replicaUrl: options.databaseReplicaUrl, poolMax: options.dbPoolMax });
  await app.register(changeFeedPlugin, {
    syncTokenSecret: options.syncTokenSecret,
    feedPollIntervalMs: options.feedPollIntervalMs,
    feedHeartbeatMs: options.feedHeartbeatMs,
  });
  await app.register(webhookDeliveryPlugin, {
    deliver: options.webhookDelivery,
    pollIntervalMs: options.feedPollIntervalMs,
    concurrency: options.webhookConcurrency,
    timeoutMs: options.webhookTimeoutMs,
    retryScheduleMs: durationListMs(options.webhookRetrySchedule, 'WEBHOOK_RETRY_SCHEDULE'),
    disableAfterMs: durationMs(options.webhookDisableAfter, 'WEBHOOK_DISABLE_AFTER'),
    retentionMs: durationMs(options.webhookRetention, 'WEBHOOK_RETENTION'),
    allowPrivate: options.webhookAllowPrivateUrls,
    secretKey: webhookSecretKeyOf(options.webhookSecretKey),
    poolMax: options.dbPoolMax,
  });
  await app.register(healthRoutes);
  // The API proper: keys and rate limits apply here only, not to /health, /ready or /api/docs.
  await app.register(async (api) => {
    await api.register(authPlugin, { required: options.auth === 'required' });
    if (options.rateLimitMax > 0) {
      await api.register(rateLimit, {
        max: options.rateLimitMax,
        timeWindow: options.rateLimitWindowSeconds * 1000,
        keyGenerator: (request) => (request.apiKey ? `key:${request.apiKey.keyId}` : `ip:${request.ip}`),
        errorResponseBuilder: (_request, context) =>
          new ApiError(
            429,
            ErrorCode.RATE_LIMITED,
            `Too many requests; retry in ${Math.max(1, Math.ceil(context.ttl / 1000))} s`,
          ),
      });
      // For the document: the plugin's 429, and its headers on every answer of the scope but a 401 (the key
      // check runs before the rate limit).
      api.addHook('onRoute', (route) => {
        const schema = {
          ...route.schema,
          response: { ...(route.schema?.response as object), 429: errorResponse(429) },
        };
        route.schema = declareHeaders(schema, RateLimitHeaders, ['401']) as typeof route.schema;
      });
    }
    await api.register(appointmentRoutes, { prefix: '/api/appointments' });
    await api.register(changeRoutes, { prefix: '/api/changes' });
    await api.register(appointmentBatchRoutes, { prefix: '/api/appointments' });
    await api.register(availabilityRoutes, { prefix: '/api/availability' });
    await api.register(webhookRoutes, {
      prefix: '/api/webhooks',
      secretKey: webhookSecretKeyOf(options.webhookSecretKey),
      allowPrivateUrls: options.webhookAllowPrivateUrls,
      secretOverlapMs: durationMs(options.webhookSecretOverlap, 'WEBHOOK_SECRET_OVERLAP'),
    });
    await api.register(webhookDeliveryRoutes, { prefix: '/api/webhooks' });
  });
  return app;
}
