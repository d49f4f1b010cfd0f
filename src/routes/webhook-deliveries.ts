import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { endpointExists, endpointForTest, listAttempts } from '../db/webhook-messages.js';
import { badRequest, notFound } from '../errors.js';
import { DEFAULT_LIST_LIMIT, DEFAULT_ORG_ID } from '../schemas/appointments.js';
import { errorResponses } from '../schemas/errors.js';
import { LinkHeader } from '../schemas/headers.js';
import { withHeaders } from '../schemas/openapi.js';
import { parseTime } from '../schemas/time.js';
import {
  DeliveriesQuery,
  DeliveryAttempt,
  TestAttempt,
  WebhookIdParams,
  WebhookOrgQuery,
} from '../schemas/webhook-deliveries.js';

const tags = ['webhooks'];

// Endpoint ids are UUIDs: any other text names no endpoint, so it is a 404 like an unknown id (an
// appointment id of the wrong form is a 400 because any id of the right form may be created; no
// endpoint id can be chosen by a client).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const noEndpoint = () => notFound('No such webhook endpoint in this organization');

function encodeCursor(last: { attemptedAt: string; seq: string }): string {
  return Buffer.from(JSON.stringify([last.attemptedAt, last.seq])).toString('base64url');
}

function decodeCursor(cursor: string): { attemptedAt: string; seq: string } {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string') {
    const attemptedAt = parseTime(value[0], 6);
    if (attemptedAt !== null && /^[0-9]{1,18}$/.test(value[1])) return { attemptedAt, seq: value[1] };
  }
  throw badRequest('querystring/cursor is malformed; use the one from the Link header');
}

/** POST /api/webhooks/{id}/test and GET /api/webhooks/{id}/deliveries (registered under /api/webhooks). */
export const webhookDeliveryRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/:id/test',
    {
      schema: {
        operationId: 'testWebhookEndpoint',
        tags,
        summary: 'Send a webhook.test event to the endpoint now',
        description:
          'One attempt, signed like every delivery, of `{type: "webhook.test", timestamp, data: {endpointId}}`: ' +
          'never retried, no change of the endpoint’s state, also when it is disabled. The answer says what the ' +
          'receiver did, whatever it did; the attempt is in the deliveries.',
        params: WebhookIdParams,
        querystring: WebhookOrgQuery,
        response: {
          200: Type.Ref(TestAttempt, { description: 'The attempt and its outcome' }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      const orgId = request.query.orgId ?? DEFAULT_ORG_ID;
      const endpoint = UUID.test(id) ? await endpointForTest(app.sql, orgId, id) : null;
      if (!endpoint) throw noEndpoint();
      return app.webhookDelivery.test(endpoint);
    },
  );

  app.get(
    '/:id/deliveries',
    {
      schema: {
        operationId: 'listWebhookDeliveries',
        tags,
        summary: 'The delivery attempts of an endpoint, newest first',
        description:
          'Every attempt (tests included), newest first by attemptedAt. When there is more, a ' +
          '`Link: <...>; rel="next"` header gives the next page.',
        params: WebhookIdParams,
        querystring: DeliveriesQuery,
        response: {
          200: withHeaders(Type.Array(Type.Ref(DeliveryAttempt), { description: 'A page of attempts' }), {
            Link: LinkHeader,
          }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const query = request.query;
      const orgId = query.orgId ?? DEFAULT_ORG_ID;
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      if (!UUID.test(id) || !(await endpointExists(app.sql, orgId, id))) throw noEndpoint();
      const limit = query.limit ?? DEFAULT_LIST_LIMIT;
      const rows = await listAttempts(app.sql, { endpointId: id, after, limit });
      if (rows.length > limit) {
        rows.length = limit;
        const next = new URLSearchParams({ ...query, limit: String(limit), cursor: encodeCursor(rows.at(-1)!) });
        reply.header('link', `</api/webhooks/${encodeURIComponent(id)}/deliveries?${next}>; rel="next"`);
      }
      return rows.map(({ seq: _seq, ...attempt }) => attempt);
    },
  );
};
