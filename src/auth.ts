import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { findActiveApiKey } from './db/api-keys.js';
import { ErrorCode, errorResponse, type ErrorResponse } from './schemas/errors.js';
import { WwwAuthenticateHeader } from './schemas/headers.js';
import { withHeaders } from './schemas/openapi.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** With AUTH=required: the key that authenticated the request. */
    apiKey: { keyId: string; orgId: string } | null;
  }
}

const KEY_PATTERN = /^apk_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$/;

// The secret is 256 random bits, so SHA-256 is enough: no password to guess, nothing a slow KDF would protect.
const hashSecret = (secret: string) => createHash('sha256').update(secret).digest();

// Compared against when the key id is unknown, so the answer takes as long as for a known id.
const DUMMY_HASH = hashSecret(randomBytes(32).toString('base64url'));

/** A new key: the full text is shown once; only the id and the hash of the secret are stored. */
export function generateApiKey(): { keyId: string; key: string; secretHash: Buffer } {
  const keyId = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { keyId, key: `apk_${keyId}_${secret}`, secretHash: hashSecret(secret) };
}

function sendError(reply: FastifyReply, statusCode: 401 | 403, code: ErrorCode, message: string) {
  const body: ErrorResponse = { statusCode, error: statusCode === 401 ? 'Unauthorized' : 'Forbidden', code, message };
  return reply.code(statusCode).send(body);
}

async function authenticate(request: FastifyRequest): Promise<{ keyId: string; orgId: string } | null> {
  const header = request.headers.authorization;
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  const parts = match ? KEY_PATTERN.exec(match[1]!) : null;
  if (!parts) return null;
  const [, keyId, secret] = parts as unknown as [string, string, string];
  const stored = await findActiveApiKey(request.server.sql, keyId);
  const equal = timingSafeEqual(hashSecret(secret), stored?.secretHash ?? DUMMY_HASH);
  return stored && equal ? { keyId, orgId: stored.orgId } : null;
}

/** The OpenAPI security scheme of the API keys; declared in the document only with AUTH=required. */
export const bearerAuthScheme = {
  type: 'http',
  scheme: 'bearer',
  description:
    'An API key (`apk_...`) from `npm run keys -- create --org <org>`; required when the service runs with AUTH=required.',
} as const;

/**
 * With AUTH=required, every route registered after this plugin in its scope needs `Authorization: Bearer <key>`,
 * and the key's organization is the request's: an orgId in the body or the query must be it (403 otherwise),
 * and an absent one becomes it. With AUTH=off the plugin adds nothing but `security: []` in the OpenAPI document.
 */
export const authPlugin = fp<{ required: boolean }>(
  async (app, options) => {
    if (!options.required) {
      app.addHook('onRoute', (route) => {
        route.schema = { ...route.schema, security: [] } as typeof route.schema;
      });
      return;
    }
    app.decorateRequest('apiKey', null);

    app.addHook('onRoute', (route) => {
      route.schema = {
        ...route.schema,
        security: [{ bearerAuth: [] }],
        response: {
          ...(route.schema?.response as object),
          401: withHeaders(errorResponse(401), { 'WWW-Authenticate': WwwAuthenticateHeader }),
          403: errorResponse(403),
        },
      } as typeof route.schema;
    });

    app.addHook('onRequest', async (request, reply) => {
      const key = await authenticate(request);
      if (!key) {
        reply.header('www-authenticate', 'Bearer');
        return sendError(
          reply,
          401,
          ErrorCode.UNAUTHORIZED,
          'A valid API key is required: Authorization: Bearer <key>',
        );
      }
      request.apiKey = key;
    });

    // After validation, so body and query are known objects. A batch (its envelope validated, its items
    // not yet) names an org in each item: an item that names another org refuses the whole batch, so
    // that a key never writes outside its org, whatever else the batch holds.
    app.addHook('preHandler', async (request, reply) => {
      const orgId = request.apiKey!.orgId;
      const body = request.body as { appointments?: unknown } | undefined;
      const batchItems = Array.isArray(body?.appointments) ? (body.appointments as unknown[]) : undefined;
      const targets = [request.query, ...(batchItems ?? [request.body])].filter(
        (part): part is { orgId?: unknown } => typeof part === 'object' && part !== null && !Array.isArray(part),
      );
      if (targets.some((part) => part.orgId !== undefined && part.orgId !== orgId)) {
        return sendError(reply, 403, ErrorCode.FORBIDDEN, "The orgId is not the API key's organization");
      }
      for (const part of targets) part.orgId = orgId;
    });
  },
  { name: 'auth' },
);
