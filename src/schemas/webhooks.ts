import { Type, type Static } from '@sinclair/typebox';
import { MAX_URL_LENGTH } from '../webhook-urls.js';
import { OrgId } from './appointments.js';
import { ID_PATTERN } from './ids.js';
import { systemTimeOutput } from './time.js';

// Webhook endpoints (issue 14): where an org's changes are pushed, and the secret that signs them.

export const MAX_DESCRIPTION_LENGTH = 1000;

export const WebhookEndpointInput = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: MAX_URL_LENGTH,
      description:
        'Where the events are POSTed: an absolute `https://` URL without user name or password, whose host ' +
        'resolves to public addresses only (with WEBHOOK_ALLOW_PRIVATE_URLS=true, also `http://` and private, ' +
        'loopback and link-local addresses). Redirects are never followed.',
      examples: ['https://example.com/hooks/appointments'],
    }),
    description: Type.Optional(
      Type.String({
        maxLength: MAX_DESCRIPTION_LENGTH,
        description: 'Free text for people; empty when left out.',
        examples: ['Calendar sync of the billing system'],
      }),
    ),
    orgId: Type.Optional(OrgId),
  },
  {
    additionalProperties: false,
    examples: [
      {
        url: 'https://example.com/hooks/appointments',
        description: 'Calendar sync of the billing system',
        orgId: 'example',
      },
    ],
  },
);
export type WebhookEndpointInput = Static<typeof WebhookEndpointInput>;

const endpointProperties = {
  id: Type.String({ format: 'uuid', description: 'Unique across organizations.' }),
  orgId: Type.String({ examples: ['example'] }),
  url: Type.String({ examples: ['https://example.com/hooks/appointments'] }),
  description: Type.String({ examples: ['Calendar sync of the billing system'] }),
  state: Type.Union([Type.Literal('active'), Type.Literal('disabled')], {
    description: '`disabled`: no event is delivered until `POST /api/webhooks/{id}/enable`; its events wait.',
  }),
  disabledReason: Type.Union([Type.Literal('gone'), Type.Literal('failing'), Type.Null()], {
    description:
      '`gone`: the receiver answered 410. `failing`: no attempt succeeded for WEBHOOK_DISABLE_AFTER. null when active.',
  }),
  createdAt: systemTimeOutput('When the endpoint was created.'),
};

export const WebhookEndpoint = Type.Object(endpointProperties, { $id: 'WebhookEndpoint', title: 'WebhookEndpoint' });
export type WebhookEndpoint = Static<typeof WebhookEndpoint>;

export const WebhookEndpointWithSecret = Type.Object(
  {
    ...endpointProperties,
    secret: Type.String({
      pattern: '^whsec_[A-Za-z0-9+/]{43}=$',
      description:
        'The signing secret (Standard Webhooks: `whsec_` and the base64 of 32 random bytes). Shown only in this ' +
        'answer: keep it; a new one takes `POST /api/webhooks/{id}/rotate-secret`.',
    }),
  },
  { $id: 'WebhookEndpointWithSecret', title: 'WebhookEndpointWithSecret' },
);
export type WebhookEndpointWithSecret = Static<typeof WebhookEndpointWithSecret>;

// The same syntax as every id a client sends (appointments), so that a malformed one is the same 400;
// one of that syntax that is no endpoint's UUID names nothing: 404.
export const WebhookIdParams = Type.Object(
  {
    id: Type.String({
      pattern: ID_PATTERN,
      description: "The endpoint's id, as its create answered it.",
      examples: ['0b8f6b8e-3c1a-4d59-9a3e-6f1d2c3b4a5e'],
    }),
  },
  { additionalProperties: false },
);
export type WebhookIdParams = Static<typeof WebhookIdParams>;

export const WebhookOrgQuery = Type.Object({ orgId: Type.Optional(OrgId) }, { additionalProperties: false });
export type WebhookOrgQuery = Static<typeof WebhookOrgQuery>;

// The document's examples: one endpoint, as created and as disabled after a 410.
export const EXAMPLE_ENDPOINT = {
  id: '0b8f6b8e-3c1a-4d59-9a3e-6f1d2c3b4a5e',
  orgId: 'example',
  url: 'https://example.com/hooks/appointments',
  description: 'Calendar sync of the billing system',
  state: 'active',
  disabledReason: null,
  createdAt: '2026-11-22T14:00:00.123456Z',
} satisfies WebhookEndpoint;
export const EXAMPLE_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+Ks1sW3dZ1E=';
