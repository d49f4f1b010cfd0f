import { Type, type Static } from '@sinclair/typebox';
import { RetryAfterHeader } from './headers.js';
import { withHeaders } from './openapi.js';
import { Appointment, EXAMPLE_UPDATED_APPOINTMENT } from './appointments.js';
import { timeOutput } from './time.js';

/** The stable error codes of the API; clients may branch on them. */
export const ErrorCode = {
  VALIDATION_ERROR: 'VALIDATION_ERROR',
  NOT_FOUND: 'NOT_FOUND',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  RATE_LIMITED: 'RATE_LIMITED',
  APPOINTMENT_OVERLAP: 'APPOINTMENT_OVERLAP',
  PRECONDITION_FAILED: 'PRECONDITION_FAILED',
  SYNC_TOKEN_EXPIRED: 'SYNC_TOKEN_EXPIRED',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** What each code means, for the OpenAPI document. */
export const ERROR_CODE_DESCRIPTIONS: Record<ErrorCode, string> = {
  VALIDATION_ERROR: '400: a malformed body, query, path value or request',
  NOT_FOUND: '404: no such appointment or webhook endpoint, or no such path',
  UNAUTHORIZED: '401: with AUTH=required, no API key, or an unknown or revoked one',
  FORBIDDEN: "403: with AUTH=required, an orgId that is not the API key's organization",
  RATE_LIMITED: '429: too many requests from this key or address; retry after Retry-After',
  APPOINTMENT_OVERLAP: '409: the range overlaps another appointment of the organization (see conflictsWith)',
  PRECONDITION_FAILED:
    '412: If-Match or If-None-Match did not hold: nothing was written; `current` is the live appointment, or null',
  SYNC_TOKEN_EXPIRED:
    '410: the change-feed token belongs to another feed (a restored database) or lies beyond it: sync again without `since`',
  REQUEST_TIMEOUT: '408: the request did not arrive in time',
  PAYLOAD_TOO_LARGE: '413: the body is over 1 MiB',
  UNSUPPORTED_MEDIA_TYPE: '415: the body is not application/json',
  METHOD_NOT_ALLOWED: '405: the path exists, but not with this method; the Allow header lists the methods it serves',
  HEADERS_TOO_LARGE: '431: the request headers are over 16 KiB',
  SERVICE_UNAVAILABLE: '503: the database cannot be reached; retry after Retry-After',
  INTERNAL_ERROR: '500: a fault of the service; the log has the cause',
};

export const ConflictingAppointment = Type.Object(
  {
    id: Type.String(),
    start: timeOutput(),
    end: timeOutput(),
  },
  { description: 'The appointment of the same organization that the request overlaps.' },
);

/** conflictsWith and current: what a refused write says of the appointment in its way, or of the stored one. */
export const RefusalDetails = {
  conflictsWith: Type.Optional(
    Type.Union([ConflictingAppointment, Type.Null()], {
      description: 'With APPOINTMENT_OVERLAP: the appointment in the way, or null when it has moved away since.',
    }),
  ),
  current: Type.Optional(
    Type.Union([Type.Ref(Appointment), Type.Null()], {
      description: 'With PRECONDITION_FAILED: the live appointment as stored now, or null when there is none.',
    }),
  ),
};

export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer({ examples: [400] }),
    error: Type.String({ examples: ['Bad Request'] }),
    code: Type.Union(
      Object.values(ErrorCode).map((code) => Type.Literal(code)),
      {
        description: `Stable; clients may branch on it.\n${Object.entries(ERROR_CODE_DESCRIPTIONS)
          .map(([code, text]) => `- \`${code}\`: ${text}`)
          .join('\n')}`,
      },
    ),
    message: Type.String({ examples: ['body/end must be after body/start'] }),
    ...RefusalDetails,
    index: Type.Optional(
      Type.Integer({
        minimum: 0,
        description: 'With `?atomic=true` on a batch: the index of the item that ended it; nothing was written.',
      }),
    ),
  },
  { $id: 'ErrorResponse', title: 'Error' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

const errorStatusDescriptions = {
  400: 'VALIDATION_ERROR: a malformed body, query or path value',
  401: 'UNAUTHORIZED: no API key, or an unknown or revoked one',
  403: "FORBIDDEN: an orgId that is not the API key's organization",
  404: 'NOT_FOUND',
  409: 'APPOINTMENT_OVERLAP: the range overlaps another appointment of the organization',
  410: 'SYNC_TOKEN_EXPIRED: the token is of another feed or beyond it; start again without `since`',
  412: 'PRECONDITION_FAILED: If-Match or If-None-Match did not hold; nothing was written',
  413: 'PAYLOAD_TOO_LARGE: the body is over 1 MiB',
  415: 'UNSUPPORTED_MEDIA_TYPE: the body is not application/json',
  429: 'RATE_LIMITED: too many requests from this key or address; retry after the Retry-After header',
  503: 'SERVICE_UNAVAILABLE: the database cannot be reached; retry after the Retry-After header',
} as const;
type ErrorStatus = keyof typeof errorStatusDescriptions;

const example = (statusCode: ErrorStatus, error: string, code: ErrorCode, message: string, extra = {}) =>
  ({ statusCode, error, code, message, ...extra }) satisfies ErrorResponse;

/** One example per status, as the service answers it, so that each status reads as what it is. */
const errorExamples: Record<ErrorStatus, ErrorResponse> = {
  400: example(400, 'Bad Request', ErrorCode.VALIDATION_ERROR, 'body/end must be after body/start'),
  401: example(401, 'Unauthorized', ErrorCode.UNAUTHORIZED, 'A valid API key is required: Authorization: Bearer <key>'),
  403: example(403, 'Forbidden', ErrorCode.FORBIDDEN, "The orgId is not the API key's organization"),
  404: example(404, 'Not Found', ErrorCode.NOT_FOUND, 'There is no appointment 1 in the organization example'),
  409: example(
    409,
    'Conflict',
    ErrorCode.APPOINTMENT_OVERLAP,
    'The appointment overlaps another appointment of the organization',
    { conflictsWith: { id: '2', start: '2020-10-10T20:00:00.000Z', end: '2020-10-10T20:25:00.000Z' } },
  ),
  410: example(
    410,
    'Gone',
    ErrorCode.SYNC_TOKEN_EXPIRED,
    'The token belongs to another change feed (the database was restored); sync again without since',
  ),
  412: example(
    412,
    'Precondition Failed',
    ErrorCode.PRECONDITION_FAILED,
    'The precondition failed: the appointment is not in the state the request expects',
    { current: EXAMPLE_UPDATED_APPOINTMENT },
  ),
  413: example(413, 'Payload Too Large', ErrorCode.PAYLOAD_TOO_LARGE, 'The request body is larger than 1 MiB'),
  415: example(
    415,
    'Unsupported Media Type',
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    'The request body must be application/json',
  ),
  429: example(429, 'Too Many Requests', ErrorCode.RATE_LIMITED, 'Too many requests; retry in 1 s'),
  503: example(503, 'Service Unavailable', ErrorCode.SERVICE_UNAVAILABLE, 'The database is unavailable; retry later'),
};

/** The response schema of one error status: its description, its example, its headers. */
export function errorResponse(status: ErrorStatus) {
  const schema = Type.Ref(ErrorResponse, {
    description: errorStatusDescriptions[status],
    examples: [errorExamples[status]],
  });
  return status === 429 || status === 503 ? withHeaders(schema, { 'Retry-After': RetryAfterHeader }) : schema;
}

/** Response schemas for the given error statuses, for validation-free serialization and the OpenAPI document. */
export function errorResponses<S extends ErrorStatus>(...statuses: S[]) {
  return Object.fromEntries(statuses.map((status) => [status, errorResponse(status)])) as Record<
    S,
    typeof ErrorResponse
  >;
}
