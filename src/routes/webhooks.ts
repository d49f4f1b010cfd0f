import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  enableWebhookEndpoint,
  getWebhookEndpoint,
  listWebhookEndpoints,
  MAX_ENDPOINTS_PER_ORG,
  rotateWebhookSecret,
} from '../db/webhooks.js';
import { badRequest, notFound } from '../errors.js';
import { DEFAULT_ORG_ID } from '../schemas/appointments.js';
import { emptyIdIsNotFound } from './appointments.js';
import { errorResponses } from '../schemas/errors.js';
import { LocationHeader } from '../schemas/headers.js';
import { withHeaders } from '../schemas/openapi.js';
import {
  EXAMPLE_ENDPOINT,
  EXAMPLE_SECRET,
  WebhookEndpoint,
  WebhookEndpointInput,
  WebhookEndpointWithSecret,
  WebhookIdParams,
  WebhookOrgQuery,
} from '../schemas/webhooks.js';
import { generateSecret, sealSecret } from '../webhook-secrets.js';
import { urlAddressProblem, urlSyntaxProblem } from '../webhook-urls.js';

export interface WebhookRouteOptions {
  /** WEBHOOK_SECRET_KEY; undefined: secrets are stored in plain text. */
  secretKey: Buffer | undefined;
  /** WEBHOOK_ALLOW_PRIVATE_URLS */
  allowPrivateUrls: boolean;
  /** WEBHOOK_SECRET_OVERLAP, in ms */
  secretOverlapMs: number;
}

const tags = ['webhooks'];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const endpointLocation = (e: WebhookEndpoint) =>
  `/api/webhooks/${encodeURIComponent(e.id)}?orgId=${encodeURIComponent(e.orgId)}`;

const WebhookLocationHeader = Type.String({
  ...LocationHeader,
  description: 'The URL of the created endpoint.',
  examples: [endpointLocation(EXAMPLE_ENDPOINT)],
});

export const endpointNotFound = (id: string, orgId: string) =>
  notFound(`There is no webhook endpoint ${id} in the organization ${orgId}`);

/**
 * The endpoint id of a path: of the API's id syntax (the schema), and a UUID, or it names no endpoint.
 * Checked before any query, since PostgreSQL would refuse a malformed uuid parameter.
 */
export function endpointId(id: string, orgId: string): string {
  if (!UUID.test(id)) throw endpointNotFound(id, orgId);
  return id.toLowerCase();
}

export const webhookRoutes: FastifyPluginAsyncTypebox<WebhookRouteOptions> = async (app, options) => {
  const { secretKey, allowPrivateUrls, secretOverlapMs } = options;

  app.post(
    '',
    {
      schema: {
        operationId: 'createWebhookEndpoint',
        tags,
        summary: 'Subscribe a URL to the changes of an organization',
        description:
          'Every change of the organization made after this request is answered is POSTed to the URL, signed ' +
          'by the Standard Webhooks spec with the `secret` of the answer, which is shown only here. ' +
          `At most ${MAX_ENDPOINTS_PER_ORG} endpoints per organization (disabled ones count).`,
        body: WebhookEndpointInput,
        response: {
          201: withHeaders(
            Type.Ref(WebhookEndpointWithSecret, {
              description: 'The endpoint, with its signing secret',
              examples: [{ ...EXAMPLE_ENDPOINT, secret: EXAMPLE_SECRET }],
            }),
            { Location: WebhookLocationHeader },
          ),
          ...errorResponses(400, 413, 415, 503),
        },
      },
    },
    async (request, reply) => {
      const { url, description = '', orgId = DEFAULT_ORG_ID } = request.body;
      const problem = urlSyntaxProblem(url, allowPrivateUrls) ?? (await urlAddressProblem(url, allowPrivateUrls));
      if (problem !== null) throw badRequest(`body/url ${problem}`);
      const secret = generateSecret();
      const endpoint = await createWebhookEndpoint(app.sql, {
        orgId,
        url,
        description,
        secret: sealSecret(secret, secretKey),
      });
      if (endpoint === null)
        throw badRequest(
          `The organization ${orgId} has ${MAX_ENDPOINTS_PER_ORG} webhook endpoints already, the most it may have; delete one first`,
        );
      reply.code(201).header('location', endpointLocation(endpoint));
      return { ...endpoint, secret };
    },
  );

  app.get(
    '',
    {
      schema: {
        operationId: 'listWebhookEndpoints',
        tags,
        summary: 'The webhook endpoints of an organization',
        description: `Oldest first; at most ${MAX_ENDPOINTS_PER_ORG}, so one page. Secrets are never shown.`,
        querystring: WebhookOrgQuery,
        response: {
          200: Type.Array(Type.Ref(WebhookEndpoint), {
            description: 'The endpoints, oldest first',
            examples: [[EXAMPLE_ENDPOINT]],
          }),
          ...errorResponses(400, 503),
        },
      },
    },
    async (request) => listWebhookEndpoints(app.sql, request.query.orgId ?? DEFAULT_ORG_ID),
  );

  app.get(
    '/:id',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'getWebhookEndpoint',
        tags,
        summary: 'Read one webhook endpoint',
        description: "The endpoint without its secret; another organization's endpoint is 404.",
        params: WebhookIdParams,
        querystring: WebhookOrgQuery,
        response: {
          200: Type.Ref(WebhookEndpoint, { description: 'The endpoint', examples: [EXAMPLE_ENDPOINT] }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request) => {
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const endpoint = await getWebhookEndpoint(app.sql, orgId, endpointId(request.params.id, orgId));
      if (!endpoint) throw endpointNotFound(request.params.id, orgId);
      return endpoint;
    },
  );

  app.delete(
    '/:id',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'deleteWebhookEndpoint',
        tags,
        summary: 'Unsubscribe: delete a webhook endpoint',
        description:
          'With its events not delivered yet and its delivery log. No attempt starts after the answer; one in ' +
          'flight at that moment may still reach the receiver.',
        params: WebhookIdParams,
        querystring: WebhookOrgQuery,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const deleted = await deleteWebhookEndpoint(app.sql, orgId, endpointId(request.params.id, orgId));
      if (!deleted) throw endpointNotFound(request.params.id, orgId);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/:id/enable',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'enableWebhookEndpoint',
        tags,
        summary: 'Deliver to a disabled endpoint again',
        description:
          'Nothing to do on an active endpoint. A disabled one becomes active and resumes from the oldest event it ' +
          'had not delivered since it began failing (the one answered 410 and those given up included), then ' +
          'every change made while it was disabled, each with a fresh retry schedule.',
        params: WebhookIdParams,
        querystring: WebhookOrgQuery,
        response: {
          200: Type.Ref(WebhookEndpoint, { description: 'The endpoint, active', examples: [EXAMPLE_ENDPOINT] }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request) => {
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const endpoint = await enableWebhookEndpoint(app.sql, orgId, endpointId(request.params.id, orgId));
      if (!endpoint) throw endpointNotFound(request.params.id, orgId);
      return endpoint;
    },
  );

  app.post(
    '/:id/rotate-secret',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'rotateWebhookSecret',
        tags,
        summary: 'Give a webhook endpoint a new signing secret',
        description:
          'For WEBHOOK_SECRET_OVERLAP (24 h by default) every delivery carries signatures by both the new and ' +
          'the previous secret, then by the new one only. Rotating again drops the oldest: never more than two.',
        params: WebhookIdParams,
        querystring: WebhookOrgQuery,
        response: {
          200: Type.Ref(WebhookEndpointWithSecret, {
            description: 'The endpoint, with its new signing secret',
            examples: [{ ...EXAMPLE_ENDPOINT, secret: EXAMPLE_SECRET }],
          }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request) => {
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const id = endpointId(request.params.id, orgId);
      const secret = generateSecret();
      const endpoint = await rotateWebhookSecret(app.sql, orgId, id, sealSecret(secret, secretKey), secretOverlapMs);
      if (!endpoint) throw endpointNotFound(request.params.id, orgId);
      return { ...endpoint, secret };
    },
  );
};
