import { Type, type Static } from '@sinclair/typebox';

/** The stable error codes of the API; clients may branch on them. */
export const ErrorCode = {
  VALIDATION_ERROR: 'VALIDATION_ERROR',
  NOT_FOUND: 'NOT_FOUND',
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  RATE_LIMITED: 'RATE_LIMITED',
  APPOINTMENT_OVERLAP: 'APPOINTMENT_OVERLAP',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  HEADERS_TOO_LARGE: 'HEADERS_TOO_LARGE',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  INTERNAL_ERROR: 'INTERNAL_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ConflictingAppointment = Type.Object(
  {
    id: Type.String(),
    start: Type.String({ examples: ['2020-10-10T20:20:00.000Z'] }),
    end: Type.String({ examples: ['2020-10-10T20:30:00.000Z'] }),
  },
  { description: 'The appointment of the same organization that the request overlaps.' },
);

export const ErrorResponse = Type.Object(
  {
    statusCode: Type.Integer({ examples: [400] }),
    error: Type.String({ examples: ['Bad Request'] }),
    code: Type.Union(Object.values(ErrorCode).map((code) => Type.Literal(code))),
    message: Type.String({ examples: ['body/end must be after body/start'] }),
    conflictsWith: Type.Optional(
      Type.Union([ConflictingAppointment, Type.Null()], {
        description: 'With APPOINTMENT_OVERLAP: the appointment in the way, or null when it has moved away since.',
      }),
    ),
  },
  { $id: 'ErrorResponse', title: 'Error' },
);
export type ErrorResponse = Static<typeof ErrorResponse>;

const errorStatusDescriptions = {
  400: 'VALIDATION_ERROR: a malformed body, query or path value',
  401: 'UNAUTHORIZED: with AUTH=required, no API key, or an unknown or revoked one',
  403: "FORBIDDEN: with AUTH=required, an orgId that is not the API key's organization",
  404: 'NOT_FOUND',
  409: 'APPOINTMENT_OVERLAP: the range overlaps another appointment of the organization',
  413: 'PAYLOAD_TOO_LARGE: the body is over 1 MiB',
  415: 'UNSUPPORTED_MEDIA_TYPE: the body is not application/json',
  429: 'RATE_LIMITED: too many requests from this key or address; retry after the Retry-After header',
  503: 'SERVICE_UNAVAILABLE: the database cannot be reached; retry after the Retry-After header',
} as const;

/** Response schemas for the given error statuses, for validation-free serialization and the OpenAPI document. */
export function errorResponses<S extends keyof typeof errorStatusDescriptions>(...statuses: S[]) {
  return Object.fromEntries(
    statuses.map((status) => [status, Type.Ref(ErrorResponse, { description: errorStatusDescriptions[status] })]),
  ) as Record<S, typeof ErrorResponse>;
}
