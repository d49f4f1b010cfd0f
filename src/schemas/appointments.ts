import { Type, type Static } from '@sinclair/typebox';
import { ID_PATTERN, ID_RULE } from './ids.js';
import { systemTimeInput, systemTimeOutput, timeInput, timeOutput } from './time.js';

export const AppointmentIdText = Type.String({
  pattern: ID_PATTERN,
  description: `${ID_RULE}.`,
  examples: ['1', 'booking-2020-10-10.a'],
});

export const AppointmentIdInput = Type.Union(
  [Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), AppointmentIdText],
  { description: 'An integer >= 1 or a string id; `1` and `"1"` name the same appointment.', examples: [1, 'a-17'] },
);

// The examples name an org of their own, so that "Try it out" in Swagger UI never writes into `default`.
export const OrgId = Type.String({
  pattern: ID_PATTERN,
  description:
    "The organization; the same characters as a string id. Default `default`. With AUTH=required, the API key's " +
    'organization: leave it out, or give that one.',
  examples: ['example', 'acme'],
});
export const DEFAULT_ORG_ID = 'default';

export const DEFAULT_LIST_LIMIT = 100;

export const AppointmentInput = Type.Object(
  {
    id: AppointmentIdInput,
    start: timeInput(),
    end: timeInput(),
    createdAt: timeInput(),
    updatedAt: timeInput(),
    orgId: Type.Optional(OrgId),
  },
  {
    additionalProperties: false,
    examples: [
      {
        id: 1,
        start: '2020-10-10 20:20',
        end: '2020-10-10 20:30',
        createdAt: '2020-09-02 14:23:12',
        updatedAt: '2020-09-28 14:23:12',
        orgId: 'example',
      },
    ],
  },
);
export type AppointmentInput = Static<typeof AppointmentInput>;

export const Appointment = Type.Object(
  {
    id: Type.String({ examples: ['1'] }),
    orgId: Type.String({ examples: ['example'] }),
    start: timeOutput(),
    end: timeOutput(),
    createdAt: timeOutput(),
    updatedAt: timeOutput(),
    version: Type.Integer({ minimum: 1, description: "Counts 1, 2, 3 ... over the appointment's whole life." }),
    recordedAt: systemTimeOutput('When the service stored this version.'),
    deletedAt: Type.Optional(
      systemTimeOutput('Only on a `stale` answer about a deleted appointment: when it was deleted.'),
    ),
  },
  { $id: 'Appointment', title: 'Appointment' },
);
export type Appointment = Static<typeof Appointment>;

// The document's examples: the POST example's appointment (id 1 in the org `example`) as first stored,
// and as updated; every route's and error's example uses these, so that they tell one story.
export const EXAMPLE_APPOINTMENT = {
  id: '1',
  orgId: 'example',
  start: '2020-10-10T20:20:00.000Z',
  end: '2020-10-10T20:30:00.000Z',
  createdAt: '2020-09-02T14:23:12.000Z',
  updatedAt: '2020-09-28T14:23:12.000Z',
  version: 1,
  recordedAt: '2026-11-22T14:05:00.123456Z',
} satisfies Appointment;
export const EXAMPLE_UPDATED_APPOINTMENT = {
  ...EXAMPLE_APPOINTMENT,
  end: '2020-10-10T20:45:00.000Z',
  updatedAt: '2020-09-29T09:00:00.000Z',
  version: 2,
  recordedAt: '2026-11-22T14:06:10.654321Z',
} satisfies Appointment;

export const WriteStatus = Type.Union([
  Type.Literal('created'),
  Type.Literal('updated'),
  Type.Literal('unchanged'),
  Type.Literal('stale'),
]);
export type WriteStatus = Static<typeof WriteStatus>;

export const WriteResult = Type.Object(
  { status: WriteStatus, appointment: Type.Ref(Appointment) },
  { $id: 'WriteResult', title: 'WriteResult' },
);
export type WriteResult = { status: WriteStatus; appointment: Appointment };

export const Cursor = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,1024}$',
  description: 'Opaque; taken from the `Link: <...>; rel="next"` header of the previous page.',
});

export const ListQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    // Examples a day apart: Swagger UI sends them as they are, and `from` must be before `to`.
    from: Type.Optional(
      timeInput('Only appointments that end after this time.', ['2020-10-10 00:00', '2020-10-10T00:00:00+02:00']),
    ),
    to: Type.Optional(
      timeInput('Only appointments that start before this time.', ['2020-10-11 00:00', '2020-10-11T00:00:00+02:00']),
    ),
    at: Type.Optional(systemTimeInput('Read the calendar as the service had recorded it at this instant.')),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, default: DEFAULT_LIST_LIMIT, description: 'The page size.' }),
    ),
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
);
export type ListQuery = Static<typeof ListQuery>;

export const IdParams = Type.Object({ id: AppointmentIdText }, { additionalProperties: false });
export type IdParams = Static<typeof IdParams>;

export const ItemQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    at: Type.Optional(systemTimeInput('Read the appointment as it was at this instant.')),
  },
  { additionalProperties: false },
);
export type ItemQuery = Static<typeof ItemQuery>;

export const OrgQuery = Type.Object({ orgId: Type.Optional(OrgId) }, { additionalProperties: false });
export type OrgQuery = Static<typeof OrgQuery>;

export const HistoryQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    at: Type.Optional(
      systemTimeInput(
        'The history as the service had recorded it at this instant: the versions begun by then, ' +
          'the one current then with validTo null.',
      ),
    ),
  },
  { additionalProperties: false },
);
export type HistoryQuery = Static<typeof HistoryQuery>;

export const HistoryEntry = Type.Object(
  {
    version: Type.Integer({ minimum: 1 }),
    start: timeOutput(),
    end: timeOutput(),
    createdAt: timeOutput(),
    updatedAt: timeOutput(),
    validFrom: systemTimeOutput('When this version became current.'),
    validTo: Type.Union([systemTimeOutput(), Type.Null()], {
      description: 'When this version stopped being current; null for the current version.',
    }),
    deleted: Type.Boolean({ description: 'This version ended by a delete.' }),
  },
  { $id: 'HistoryEntry', title: 'HistoryEntry' },
);
export type HistoryEntry = Static<typeof HistoryEntry>;
