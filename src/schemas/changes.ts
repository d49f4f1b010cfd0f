import { Type, type Static } from '@sinclair/typebox';
import { Appointment, OrgId } from './appointments.js';
import { systemTimeOutput } from './time.js';

export const DEFAULT_CHANGES_LIMIT = 100;
export const MAX_WAIT_SECONDS = 60;

export const SyncTokenText = Type.String({
  pattern: '^[A-Za-z0-9_-]{1,2048}\\.[A-Za-z0-9_-]{1,100}$',
  description:
    'Opaque: the `next` of an earlier answer (or an event id of the stream). Leave it out to sync from scratch.',
});

/** How a client applies changes, said in the document of both routes. */
export const APPLY_RULE =
  'Apply changes by one rule: hold, per id, the last version applied and whether it was a delete; apply an ' +
  '`upsert` of version v only when v > the held version; apply a `delete` of version v only when v >= the held ' +
  'version. Without `since`, the feed begins with a full sync: the snapshot of the organization (each live ' +
  'appointment once, `"snapshot": true`), then every change after it, each exactly once. Changes become visible ' +
  'once every older transaction of the database has ended: the oldest open transaction bounds the latency.';

export const ChangesQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    since: Type.Optional(SyncTokenText),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        default: DEFAULT_CHANGES_LIMIT,
        description: 'At most this many changes.',
      }),
    ),
    wait: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_WAIT_SECONDS,
        default: 0,
        description:
          'Seconds to hold the answer while no change is ready (long-poll); it comes as soon as one is. 0: answer at once.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ChangesQuery = Static<typeof ChangesQuery>;

export const StreamQuery = Type.Object(
  { orgId: Type.Optional(OrgId), since: Type.Optional(SyncTokenText) },
  { additionalProperties: false },
);
export type StreamQuery = Static<typeof StreamQuery>;

export const UpsertChange = Type.Object(
  {
    type: Type.Literal('upsert'),
    id: Type.String(),
    version: Type.Integer({ minimum: 1 }),
    recordedAt: systemTimeOutput('When this version was stored.'),
    appointment: Type.Ref(Appointment),
    snapshot: Type.Optional(Type.Literal(true, { description: 'Part of the full sync that starts a feed.' })),
  },
  { $id: 'UpsertChange', title: 'UpsertChange', description: 'A version was created or updated.' },
);

export const DeleteChange = Type.Object(
  {
    type: Type.Literal('delete'),
    id: Type.String(),
    version: Type.Integer({ minimum: 1, description: 'The version that was deleted; a re-creation is version + 1.' }),
    recordedAt: systemTimeOutput('When it was deleted.'),
  },
  { $id: 'DeleteChange', title: 'DeleteChange', description: 'The appointment was deleted.' },
);

export const Change = Type.Union([Type.Ref(UpsertChange), Type.Ref(DeleteChange)]);
export type Change =
  | { type: 'upsert'; id: string; version: number; recordedAt: string; appointment: Appointment; snapshot?: true }
  | { type: 'delete'; id: string; version: number; recordedAt: string };

export const ChangesPage = Type.Object(
  {
    changes: Type.Array(Change),
    next: Type.String({ description: 'Pass it as `since` to continue; equal to `since` when `changes` is empty.' }),
    more: Type.Boolean({ description: 'true: more changes are ready now; false: caught up (store `next`).' }),
  },
  { $id: 'ChangesPage', title: 'ChangesPage' },
);
export type ChangesPage = { changes: Change[]; next: string; more: boolean };
