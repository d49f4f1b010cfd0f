import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { endpointExists, endpointForTest, listAttempts } from '../db/webhook-messages.js';
import { badRequest } from '../errors.js';
import { decodeCursor, encodeCursor } from './cursors.js';
import { emptyIdIsNotFound } from './appointments.js';
import { endpointId, endpointNotFound } from './webhooks.js';
import { DEFAULT_LIST_LIMIT, DEFAULT_ORG_ID } from '../schemas/appointments.js';
import { errorResponses } from '../schemas/errors.js';
import { LinkHeader } from '../schemas/headers.js';
import { withHeaders } from '../schemas/openapi.js';
import { parseTime } from '../schemas/time.js';
import { DeliveriesQuery, DeliveryAttempt, TestAttempt } from '../schemas/webhook-deliveries.js';
import { WebhookIdParams, WebhookOrgQuery } from '../schemas/webhooks.js';

const tags = ['webhooks'];

/** The deliveries' cursor: the last row's (attemptedAt, seq). */
function afterOf(cursor: string): { attemptedAt: string; seq: string } {
  const [at, seq] = decodeCursor(cursor) ?? [];
  const attemptedAt = at === undefined ? null : parseTime(at, 6);
  if (attemptedAt !== null && seq !== undefined && /^[0-9]{1,18}$/.test(seq)) return { attemptedAt, seq };
  throw badRequest('querystring/cursor is malformed; use the one from the Link header');
}

/** POST /api/webhooks/{id}/test and GET /api/webhooks/{id}/deliveries (registered under /api/webhooks). */
export const webhookDeliveryRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/:id/test',
    {
      onRequest: emptyIdIsNotFound,
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
      const orgId = request.query.orgId ?? DEFAULT_ORG_ID;
      const id = endpointId(request.params.id, orgId);
      const endpoint = await endpointForTest(app.sql, orgId, id);
      if (!endpoint) throw endpointNotFound(id, orgId);
      return app.webhookDelivery.test(endpoint);
    },
  );

  app.get(
    '/:id/deliveries',
    {
      onRequest: emptyIdIsNotFound,
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
      const query = request.query;
      const orgId = query.orgId ?? DEFAULT_ORG_ID;
      const id = endpointId(request.params.id, orgId);
      const after = query.cursor === undefined ? undefined : afterOf(query.cursor);
      if (!(await endpointExists(app.sql, orgId, id))) throw endpointNotFound(id, orgId);
      const limit = query.limit ?? DEFAULT_LIST_LIMIT;
      const rows = await listAttempts(app.sql, { endpointId: id, after, limit });
      if (rows.length > limit) {
        rows.length = limit;
        const next = new URLSearchParams({
          ...query,
          limit: String(limit),
          cursor: encodeCursor([rows.at(-1)!.attemptedAt, rows.at(-1)!.seq]),
        });
        reply.header('link', `</api/webhooks/${encodeURIComponent(id)}/deliveries?${next}>; rel="next"`);
      }
      return rows.map(({ seq: _seq, ...attempt }) => attempt);
    },
  );
};
