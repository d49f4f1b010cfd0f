import { Type } from '@sinclair/typebox';
import { ID_RULE } from './ids.js';

// The response headers the service sends, as the OpenAPI document declares them.

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
