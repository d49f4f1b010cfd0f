import { Type, type Static } from '@sinclair/typebox';
import { Cursor, DEFAULT_LIST_LIMIT, OrgId } from './appointments.js';
import { systemTimeOutput } from './time.js';

// The delivery log of a webhook endpoint and its test attempt (issue 14).

export const DeliveriesQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_LIST_LIMIT, description: 'The page size.' }),
    ),
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
);
export type DeliveriesQuery = Static<typeof DeliveriesQuery>;

const ATTEMPT_ERROR =
  'null when an answer came; otherwise `timeout`, `connection refused`, `connection reset`, `dns lookup failed`, ' +
  '`address not allowed` or `tls error: <message>`.';

const EventId = Type.String({
  description: 'The webhook-id header: unique per event, the same on every attempt of it.',
  examples: ['msg_2f0b1c9e7d214a4e9a575f0c6c1e8d5b'],
});
const EventType = Type.String({
  description: '`appointment.created`, `appointment.updated`, `appointment.deleted` or `webhook.test`.',
  examples: ['appointment.created'],
});
const StatusCode = Type.Union([Type.Integer({ minimum: 100, maximum: 599 }), Type.Null()], {
  description: "The receiver's status code; null without an answer.",
});
const AttemptError = Type.Union([Type.String(), Type.Null()], { description: ATTEMPT_ERROR });
const DurationMs = Type.Integer({
  minimum: 0,
  description: 'From the start of the attempt to its status line, in ms.',
});

export const DeliveryAttempt = Type.Object(
  {
    eventId: EventId,
    eventType: EventType,
    attempt: Type.Integer({ minimum: 1, description: 'Counts the attempts of this event, from 1.' }),
    attemptedAt: systemTimeOutput('When the attempt began.'),
    statusCode: StatusCode,
    error: AttemptError,
    durationMs: DurationMs,
    nextAttemptAt: Type.Union([systemTimeOutput(), Type.Null()], {
      description:
        'When the event is attempted again after this attempt; null when none is due (delivered, given up, a test).',
    }),
  },
  { $id: 'WebhookDeliveryAttempt', title: 'WebhookDeliveryAttempt' },
);
export type DeliveryAttempt = Static<typeof DeliveryAttempt>;

export const TestAttempt = Type.Object(
  {
    eventId: EventId,
    eventType: Type.Literal('webhook.test'),
    attemptedAt: systemTimeOutput('When the attempt began, as in the deliveries.'),
    success: Type.Boolean({ description: 'The receiver answered 2xx within WEBHOOK_TIMEOUT_MS.' }),
    statusCode: StatusCode,
    error: AttemptError,
    durationMs: DurationMs,
  },
  { $id: 'WebhookTestAttempt', title: 'WebhookTestAttempt' },
);
export type TestAttempt = Static<typeof TestAttempt>;
