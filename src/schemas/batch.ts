import { Type, type Static } from '@sinclair/typebox';
import { Appointment, AppointmentInput, WriteStatus } from './appointments.js';
import { ErrorCode, RefusalDetails } from './errors.js';

export const MAX_BATCH_ITEMS = 1000;

export const IfMatchItem = Type.String({
  description:
    'Write only if the stored live version has this ETag: the value exactly as the `If-Match` header would carry it, ' +
    'quotes included (a list of tags, or `*` for any live version). A weak tag never matches. If-Match never creates.',
  examples: ['"2-1795866370654321"', '*'],
});

/** One item of a batch: the body of a single POST, and optionally its If-Match. */
export const BatchItemInput = Type.Object(
  { ...AppointmentInput.properties, ifMatch: Type.Optional(IfMatchItem) },
  { additionalProperties: false, title: 'BatchItem' },
);
export type BatchItemInput = Static<typeof BatchItemInput>;

const items = { minItems: 1, maxItems: MAX_BATCH_ITEMS };

/** The request as documented. */
export const BatchRequest = Type.Object(
  {
    appointments: Type.Array(BatchItemInput, {
      ...items,
      description: `1 to ${MAX_BATCH_ITEMS} items, applied in this order.`,
    }),
  },
  {
    additionalProperties: false,
    examples: [
      {
        appointments: [
          {
            id: 1,
            start: '2020-10-10 20:20',
            end: '2020-10-10 20:30',
            createdAt: '2020-09-02 14:23:12',
            updatedAt: '2020-09-28 14:23:12',
            orgId: 'example',
          },
          {
            id: 2,
            start: '2020-10-10 20:30',
            end: '2020-10-10 21:00',
            createdAt: '2020-09-02 14:23:12',
            updatedAt: '2020-09-28 14:23:12',
            orgId: 'example',
          },
        ],
      },
    ],
  },
);
export type BatchRequest = Static<typeof BatchRequest>;

/**
 * The request as validated: the envelope only. A malformed item does not refuse the batch; each item is
 * validated on its own (routes/appointment-batch.ts) and a malformed one is that item's `rejected`.
 */
export const BatchEnvelope = Type.Object(
  { appointments: Type.Array(Type.Unknown(), items) },
  { additionalProperties: false },
);

export const BatchQuery = Type.Object(
  {
    atomic: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'All or nothing: a malformed item is a 400 naming the lowest such index, and the first item refused ' +
          'while writing (409 or 412, with `index`) ends the batch; nothing is written.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type BatchQuery = Static<typeof BatchQuery>;

export const BatchItemError = Type.Object(
  {
    statusCode: Type.Integer({ description: 'What a single POST of the item would have answered.', examples: [409] }),
    code: Type.Union([
      Type.Literal(ErrorCode.VALIDATION_ERROR),
      Type.Literal(ErrorCode.APPOINTMENT_OVERLAP),
      Type.Literal(ErrorCode.PRECONDITION_FAILED),
    ]),
    message: Type.String({ examples: ['body/appointments/3/end must be after body/appointments/3/start'] }),
    ...RefusalDetails,
  },
  { title: 'BatchItemError' },
);
export type BatchItemError = Static<typeof BatchItemError>;

export const BatchItemWritten = Type.Object(
  {
    status: WriteStatus,
    appointment: Type.Ref(Appointment),
    etag: Type.String({
      description: "The appointment's ETag, the same text as the ETag header of a single write.",
      examples: ['"1-1795866300123456"'],
    }),
  },
  { title: 'BatchItemWritten' },
);

export const BatchItemRejected = Type.Object(
  { status: Type.Literal('rejected'), error: BatchItemError },
  { title: 'BatchItemRejected' },
);

export const BatchResponse = Type.Object(
  {
    results: Type.Array(Type.Union([BatchItemWritten, BatchItemRejected]), {
      description: 'One result per item, in the order of the items.',
    }),
  },
  { title: 'BatchResult' },
);
export type BatchResult =
  { status: WriteStatus; appointment: Appointment; etag: string } | { status: 'rejected'; error: BatchItemError };
