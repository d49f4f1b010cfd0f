import { Type } from '@sinclair/typebox';
import { ID_RULE } from './ids.js';

// The headers the service sends and reads, as the OpenAPI document declares them.

export const RequestIdHeader = Type.String({
  description: `The request's id, on every answer and every log line of the request: the client's \`x-request-id\` when it is ${ID_RULE}, otherwise a new UUID.`,
  examples: ['5f0c6c1e-8d5b-4a4e-9a57-2f0b1c9e7d21'],
});

export const LocationHeader = Type.String({
  description: 'The URL of the created appointment.',
  examples: ['/api/appointments/1?orgId=example'],
});

export const LinkHeader = Type.String({
  description: 'Only when there is a next page: `<URL of the next page>; rel="next"`. Follow it as it is.',
  examples: [
    '</api/appointments?orgId=example&limit=100&cursor=WyIyMDIwLTEwLTEwVDIwOjIwOjAwLjAwMFoiLCIxIl0>; rel="next"',
  ],
});

export const RetryAfterHeader = Type.Integer({ minimum: 1, description: 'Seconds to wait before trying again.' });

export const WwwAuthenticateHeader = Type.String({
  description: 'The scheme to authenticate with.',
  examples: ['Bearer'],
});

/** What @fastify/rate-limit sends on every answer of a rate-limited route, the 429 included. */
export const RateLimitHeaders = {
  'X-RateLimit-Limit': Type.Integer({ minimum: 1, description: 'Requests allowed per window, per key or address.' }),
  'X-RateLimit-Remaining': Type.Integer({ minimum: 0, description: 'Requests left in the current window.' }),
  'X-RateLimit-Reset': Type.Integer({ minimum: 0, description: 'Seconds until the current window ends.' }),
};

export const EtagHeader = Type.String({
  description:
    "The appointment version's entity tag: strong and opaque, new with every version over the appointment's whole " +
    'life. Send it back as it is, quotes included, in If-Match or If-None-Match.',
  examples: ['"2-1795356370654321"'],
});

export const DeletedEtagHeader = Type.String({
  description: 'The entity tag of the version this request deleted, so that a client can recognise its own delete.',
  examples: ['"2-1795356370654321"'],
});

export const PreconditionFailedEtagHeader = Type.String({
  description: 'Only when there is a live appointment (`current` is not null): its entity tag.',
  examples: ['"2-1795356370654321"'],
});

// The request headers of conditional requests (RFC 9110, section 13.1), as the routes' `headers` schemas
// declare them; the routes check their syntax (src/etags.ts) and say what is wrong. No examples: Swagger UI
// fills a parameter in with its example, and "Try it out" would send a precondition nobody asked for.

const ENTITY_TAGS =
  'entity tags exactly as ETag headers gave them, quotes included (`"2-1795356370654321"`), comma-separated';

export const IfMatchHeader = Type.String({
  description:
    `Writes (or deletes) only when the stored live version has one of these ${ENTITY_TAGS}, or with \`*\` ` +
    'when there is any live version (update only). Strong comparison: a weak `W/` tag never matches. Never creates: with no live appointment ' +
    'the answer is 412 with `current: null`. Otherwise 412 `PRECONDITION_FAILED` with the live appointment as ' +
    '`current`, and nothing is written. A malformed value is 400.',
});

export const IfNoneMatchWriteHeader = Type.String({
  description:
    'Only `*`: create only. 412 `PRECONDITION_FAILED` (with the live appointment as `current`) when a live ' +
    'appointment with this id exists; over a deleted one the usual rule applies (a newer updatedAt creates it ' +
    'again). Any other value is 400, and so is sending both If-Match and If-None-Match.',
});

export const IfNoneMatchReadHeader = Type.String({
  description:
    `One or more ${ENTITY_TAGS}; or \`*\`. When the version read has one of them ` +
    '(weak comparison), the answer is 304 Not Modified with its ETag and no body. A malformed value is 400.',
});
