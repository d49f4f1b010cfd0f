import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import postgres from 'postgres';
import { BatchItemRefusedError } from './db/appointment-batch.js';
import { AppointmentOverlapError, PreconditionFailedError } from './db/appointments.js';
import { appointmentEtag } from './etags.js';
import { DatabaseBusyError } from './db/client.js';
import { ErrorCode, type ErrorResponse } from './schemas/errors.js';
import { ID_RULE } from './schemas/ids.js';
import { SYSTEM_TIME_FORMAT, TIME_FORMAT } from './schemas/time.js';

/** An error with a status and a code meant for the client. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new ApiError(400, ErrorCode.VALIDATION_ERROR, message);
export const notFound = (message: string) => new ApiError(404, ErrorCode.NOT_FOUND, message);
/** A request that arrives once the instance has begun to stop: another instance can take it. */
export const serviceStopping = () =>
  new ApiError(503, ErrorCode.SERVICE_UNAVAILABLE, 'This instance is shutting down; retry the request');

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

// Errors of the connection to PostgreSQL, not of the request: refused, reset, timed out, server shutting down or starting.
const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  // a socket that failed under the driver: aborted, no local port left, no route, written after its end
  'ECONNABORTED',
  'EADDRNOTAVAIL',
  'ENETUNREACH',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
]);
// connection exception, operator intervention (57014 query_canceled: statement_timeout), insufficient
// resources, transaction rollback (a deadlock or serialization failure the service did not resolve)
const UNAVAILABLE_SQLSTATE_CLASSES = ['08', '57', '53', '40'];
// lock_not_available: lock_timeout; read_only_sql_transaction: the host became a standby under a
// pooled connection (a failover back), and the next connection finds the primary
const UNAVAILABLE_SQLSTATES = new Set(['55P03', '25006']);

// Input the database refused although the schemas let it through: a value out of range, a failed CHECK.
const INVALID_INPUT_SQLSTATE_CLASSES = ['22', '23'];

function send(
  reply: FastifyReply,
  statusCode: number,
  code: ErrorCode,
  message: string,
  extra: Partial<ErrorResponse> = {},
) {
  const body: ErrorResponse = { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', code, message, ...extra };
  return reply.code(statusCode).send(body);
}

export function isDatabaseUnavailable(error: unknown): boolean {
  if (error instanceof DatabaseBusyError) return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  if (error instanceof postgres.PostgresError)
    return UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SQLSTATE_CLASSES.includes(code.slice(0, 2));
  return UNAVAILABLE_ERRNOS.has(code);
}

interface AjvError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** One sentence a person can act on, naming the part of the request and the property. */
export function describeValidationError(context: string, errors: AjvError[]): string {
  const error = errors.find((e) => e.keyword === 'anyOf') ?? errors[0]!;
  const where = `${context}${error.instancePath}`;
  switch (error.keyword) {
    case 'additionalProperties':
      return `${where} must not have the property '${String(error.params.additionalProperty)}'`;
    case 'required':
      return `${where} must have the property '${String(error.params.missingProperty)}'`;
    case 'format':
      if (error.params.format === TIME_FORMAT || error.params.format === SYSTEM_TIME_FORMAT) {
        return `${where} must be a real date and time: YYYY-MM-DD HH:MM[:SS[.fraction]], with a space or a T, optionally followed by Z or an offset such as +02:00`;
      }
      break;
    case 'anyOf':
      if (error.instancePath.endsWith('/id')) {
        return `${where} must be an integer >= 1 or a string of ${ID_RULE}`;
      }
      break;
    case 'pattern':
      return `${where} must be ${ID_RULE}`;
  }
  return `${where} ${error.message ?? 'is invalid'}`;
}

/** Errors of the router, before any handler runs: a path parameter too long, a malformed URL. */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  request.log.info({ err: error }, 'refused by the router');
  const message = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is too long' : 'The URL is malformed';
  return send(reply, 400, ErrorCode.VALIDATION_ERROR, message);
}

/**
 * Requests that Node's HTTP parser refuses before any route sees them (malformed HTTP, headers over
 * 16 KiB, a client too slow to send its request), answered in the API's error shape; the connection closes.
 */
export function answerClientError(this: FastifyInstance, error: Error & { code?: string }, socket: Socket) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [statusCode, code, message] =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, ErrorCode.REQUEST_TIMEOUT, 'The request was not received in time']
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? [431, ErrorCode.HEADERS_TOO_LARGE, 'The request headers are larger than 16 KiB']
        : [400, ErrorCode.VALIDATION_ERROR, 'The request is not valid HTTP'];
  this.log.debug({ err: error }, 'refused by the HTTP parser');
  if (socket.writable) {
    const body = JSON.stringify({ statusCode, error: STATUS_TEXT[statusCode], code, message } satisfies ErrorResponse);
    socket.write(
      `HTTP/1.1 ${statusCode} ${STATUS_TEXT[statusCode]}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

// An answer sent while the client is still uploading, followed by closing the connection, reaches the
// client as a reset (EPIPE, ECONNRESET) that often discards the answer. So an over-limit body is read
// and thrown away before the 413, up to this much; beyond it the 413 goes out at once and the
// connection closes. REQUEST_TIMEOUT_MS bounds how long a slow upload can take.
export const DRAIN_LIMIT = 16 * 1024 * 1024;

/** Reads the rest of a request body and drops it; false when it is over DRAIN_LIMIT or cut off. */
function readToTheEnd(raw: IncomingMessage): Promise<boolean> {
  if (raw.complete) return Promise.resolve(true);
  if (Number(raw.headers['content-length']) > DRAIN_LIMIT) return Promise.resolve(false);
  return new Promise((resolve) => {
    let received = 0;
    const finish = (read: boolean) => {
      raw.off('data', onData).off('end', onEnd).off('error', onFail).off('close', onFail);
      if (!read) raw.pause();
      resolve(read);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > DRAIN_LIMIT) finish(false);
    };
    const onEnd = () => finish(true);
    const onFail = () => finish(raw.complete);
    raw.on('data', onData).on('end', onEnd).on('error', onFail).on('close', onFail);
    raw.resume();
  });
}

/** A write refused: 409 with the appointment in the way, or 412 with the current one (and its ETag). */
function sendRefusal(
  reply: FastifyReply,
  error: AppointmentOverlapError | PreconditionFailedError,
  extra: Partial<ErrorResponse> = {},
) {
  if (error instanceof AppointmentOverlapError) {
    return send(reply, 409, ErrorCode.APPOINTMENT_OVERLAP, error.message, {
      conflictsWith: error.conflictsWith,
      ...extra,
    });
  }
  if (error.current) reply.header('etag', appointmentEtag(error.current));
  return send(reply, 412, ErrorCode.PRECONDITION_FAILED, error.message, { current: error.current, ...extra });
}

/** The one place that turns errors into responses. A 5xx never shows its cause to the client. */
export function registerErrorHandlers(app: FastifyInstance) {
  app.setErrorHandler((error: FastifyError | ApiError | AppointmentOverlapError, request, reply) => {
    if (error instanceof AppointmentOverlapError || error instanceof PreconditionFailedError) {
      return sendRefusal(reply, error);
    }
    // an atomic batch: the refusal of the item that ended it, and its index
    if (error instanceof BatchItemRefusedError) return sendRefusal(reply, error.refusal, { index: error.index });
    if (error instanceof ApiError) {
      if (error.statusCode === 503) reply.header('retry-after', '1');
      return send(reply, error.statusCode, error.code, error.message);
    }
    if ('validation' in error && error.validation) {
      return send(
        reply,
        400,
        ErrorCode.VALIDATION_ERROR,
        describeValidationError(error.validationContext ?? 'request', error.validation as AjvError[]),
      );
    }
    if (isDatabaseUnavailable(error)) {
      request.log.warn({ err: error }, 'database unavailable');
      reply.header('retry-after', '1');
      return send(reply, 503, ErrorCode.SERVICE_UNAVAILABLE, 'The database is unavailable; retry later');
    }
    if (error instanceof postgres.PostgresError && INVALID_INPUT_SQLSTATE_CLASSES.includes(error.code.slice(0, 2))) {
      request.log.warn({ err: error }, 'input refused by the database');
      return send(reply, 400, ErrorCode.VALIDATION_ERROR, 'The request holds a value out of the accepted range');
    }
    const statusCode = 'statusCode' in error ? (error.statusCode ?? 500) : 500;
    if (statusCode === 413) {
      void readToTheEnd(request.raw).then((read) => {
        if (!read) reply.header('connection', 'close');
        send(reply, 413, ErrorCode.PAYLOAD_TOO_LARGE, 'The request body is larger than 1 MiB');
      });
      return reply;
    }
    if (statusCode === 415)
      return send(reply, 415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'The request body must be application/json');
    if (statusCode === 404) return send(reply, 404, ErrorCode.NOT_FOUND, 'Not found');
    // Fastify's own client errors (broken JSON, an empty JSON body, a forbidden __proto__ key, a bad URL)
    if (statusCode >= 400 && statusCode < 500) return send(reply, 400, ErrorCode.VALIDATION_ERROR, error.message);
    request.log.error({ err: error }, 'request failed');
    return send(reply, 500, ErrorCode.INTERNAL_ERROR, 'Internal Server Error');
  });

  const routes = routeTable(app);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = routes.methodsAt(path);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return send(
        reply,
        405,
        ErrorCode.METHOD_NOT_ALLOWED,
        `${request.method} is not allowed on ${path.slice(0, 200)}; allowed: ${allowed.join(', ')}`,
      );
    }
    const without = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : undefined;
    const hint =
      without !== undefined && routes.methodsAt(without).length > 0 ? '; the path has no trailing slash' : '';
    return send(reply, 404, ErrorCode.NOT_FOUND, `Route ${request.method} ${path.slice(0, 200)} not found${hint}`);
  });
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * The methods of every registered route by URL pattern, as the router holds them, so that a known path
 * asked with a method it does not serve is a 405 with `Allow`, not a 404. The router keeps one tree per
 * method, so a path is served by a method when any pattern of that method matches it: the union over the
 * matching patterns is the Allow list. Catch-all patterns (the CORS plugin's `OPTIONS *`) name no path
 * and are left out.
 */
function routeTable(app: FastifyInstance) {
  const patterns = new Map<string, { regex: RegExp; methods: Set<string> }>();
  app.addHook('onRoute', (route) => {
    if (/^\/?\*$/.test(route.url)) return;
    const entry = patterns.get(route.url) ?? { regex: patternRegex(route.url), methods: new Set<string>() };
    for (const method of [route.method].flat()) entry.methods.add(method);
    patterns.set(route.url, entry);
  });
  return {
    methodsAt(path: string): string[] {
      const methods = new Set<string>();
      for (const { regex, methods: served } of patterns.values()) {
        if (regex.test(path)) for (const method of served) methods.add(method);
      }
      const rank = (method: string) => {
        const index = METHOD_ORDER.indexOf(method);
        return index === -1 ? METHOD_ORDER.length : index;
      };
      return [...methods].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    },
  };
}

/** find-my-way's pattern syntax, as the routes use it: `:name` is one non-empty segment, `*` the rest. */
function patternRegex(pattern: string): RegExp {
  const source = pattern
    .split(/(:[A-Za-z0-9_]+|\*)/)
    .map((part) => (part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`);
}
