import { Type, type FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { onRequestHookHandler } from 'fastify';
import {
  deleteAppointment,
  getAppointment,
  getAppointmentAt,
  getAppointmentHistory,
  listAppointments,
  listAppointmentsAt,
  upsertAppointment,
  type WritePreconditions,
} from '../db/appointments.js';
import { decodeCursor, encodeCursor } from './cursors.js';
import { badRequest, notFound } from '../errors.js';
import { countWrite } from '../metrics.js';
import {
  Appointment,
  AppointmentInput,
  DEFAULT_LIST_LIMIT,
  DEFAULT_ORG_ID,
  EXAMPLE_APPOINTMENT,
  EXAMPLE_UPDATED_APPOINTMENT,
  HistoryEntry,
  HistoryQuery,
  IdParams,
  ItemQuery,
  ListQuery,
  OrgQuery,
  WriteResult,
} from '../schemas/appointments.js';
import { appointmentEtag, ifMatchTags, noneMatchHolds, parseEntityTags, type EntityTagList } from '../etags.js';
import { errorResponse, errorResponses } from '../schemas/errors.js';
import {
  DeletedEtagHeader,
  EtagHeader,
  IfMatchHeader,
  IfNoneMatchReadHeader,
  IfNoneMatchWriteHeader,
  LinkHeader,
  LocationHeader,
  PreconditionFailedEtagHeader,
} from '../schemas/headers.js';
import { withHeaders } from '../schemas/openapi.js';
import { ID_SYNTAX } from '../schemas/ids.js';
import { parseTime } from '../schemas/time.js';
import { canonical, toWrite } from './appointment-input.js';

const tags = ['appointments'];

// Examples of the answers to the POST example (id 1 in the org `example`), one per status.
const exampleAppointment = EXAMPLE_APPOINTMENT;
const updatedAppointment = EXAMPLE_UPDATED_APPOINTMENT;
const writeExamples = {
  updated: {
    summary: 'A newer updatedAt: the appointment now is the one sent',
    value: { status: 'updated', appointment: updatedAppointment },
  },
  unchanged: {
    summary: 'The stored version sent again: nothing is written',
    value: { status: 'unchanged', appointment: updatedAppointment },
  },
  stale: {
    summary: 'An older updatedAt: nothing is written; the answer holds the stored version',
    value: { status: 'stale', appointment: updatedAppointment },
  },
} satisfies Record<string, { summary: string; value: WriteResult }>;

/**
 * An answer without a body, sent as `send()`: Fastify then writes no Content-Length, where a serialized
 * `null` would announce 4 bytes that a 304 cannot carry.
 */
const NoBody = (description: string) => Type.Unsafe<undefined>({ type: 'null', description });

/** A precondition header's tags (RFC 9110, 13.1); undefined when not sent, a 400 naming it when malformed. */
function entityTags(value: string | undefined, name: string): EntityTagList | undefined {
  if (value === undefined) return undefined;
  const tags = parseEntityTags(value);
  if (tags === null)
    throw badRequest(`headers/${name} must be * or entity tags as the ETag header gives them, quotes included`);
  return tags;
}

/**
 * If-Match and If-None-Match: * (create only) of a write, for the statement that checks them. Node gives
 * header names in lower case; Fastify matches the routes' header schemas to them whatever their case.
 */
function writePreconditions(headers: { 'if-match'?: string; 'if-none-match'?: string }): WritePreconditions {
  const ifMatch = entityTags(headers['if-match'], 'if-match');
  const ifNoneMatch = entityTags(headers['if-none-match'], 'if-none-match');
  // Together they can never both hold (If-Match needs a live appointment, If-None-Match: * none): a 400
  // says so, where RFC 9110's evaluation would answer 412 however often the client refreshed its tag.
  if (ifMatch !== undefined && ifNoneMatch !== undefined)
    throw badRequest('Send one of If-Match and If-None-Match, not both');
  if (ifNoneMatch !== undefined && ifNoneMatch !== '*')
    throw badRequest('headers/if-none-match must be * on a write (create only); send a tag in If-Match instead');
  return { ifMatch: ifMatch && ifMatchTags(ifMatch), ifNoneMatch: ifNoneMatch === '*' };
}

/** The list's cursor: the last row's (start, id). */
function afterOf(cursor: string): { start: string; id: string } {
  const [start, id] = decodeCursor(cursor) ?? [];
  const time = start === undefined ? null : parseTime(start, 3);
  if (time !== null && id !== undefined && ID_SYNTAX.test(id)) return { start: time, id };
  throw badRequest('querystring/cursor is malformed; use the one from the Link header');
}

const appointmentLocation = (a: Appointment) =>
  `/api/appointments/${encodeURIComponent(a.id)}?orgId=${encodeURIComponent(a.orgId)}`;

// The routes answer at exactly the documented paths. `/api/appointments/` is no alias of the list: the
// router reads it as an empty id, which names nothing, so it is a 404 for every method (and says why).
export const emptyIdIsNotFound: onRequestHookHandler = (request, reply, done) => {
  if ((request.params as { id?: string }).id === '') reply.callNotFound();
  else done();
};

export const appointmentRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '',
    {
      schema: {
        operationId: 'upsertAppointment',
        tags,
        summary: 'Create or update an appointment by id',
        description:
          'Last writer wins on updatedAt; on the same updatedAt the greater (start, end, createdAt) wins. ' +
          'A write that loses is answered `stale` with the stored state; the same version again is `unchanged`. ' +
          'Ranges are half-open [start, end).',
        headers: Type.Object({
          'If-Match': Type.Optional(IfMatchHeader),
          'If-None-Match': Type.Optional(IfNoneMatchWriteHeader),
        }),
        body: AppointmentInput,
        response: {
          201: withHeaders(
            Type.Ref(WriteResult, {
              description: 'created: a new id in the organization (or one deleted with an older updatedAt)',
              examples: [{ status: 'created', appointment: exampleAppointment }],
            }),
            { Location: LocationHeader, ETag: EtagHeader },
          ),
          200: withHeaders(
            Type.Ref(WriteResult, { description: 'updated, unchanged or stale', 'x-examples': writeExamples }),
            { ETag: EtagHeader },
          ),
          ...errorResponses(400, 409),
          412: withHeaders(errorResponse(412), { ETag: PreconditionFailedEtagHeader }),
          ...errorResponses(413, 415, 503),
        },
      },
    },
    async (request, reply) => {
      const preconditions = writePreconditions(request.headers);
      const result = await countWrite(
        app.metrics,
        upsertAppointment(app.sql, toWrite(request.body), preconditions, () =>
          app.metrics.deadlocksResolved.inc({ operation: 'upsert' }),
        ),
        (written) => [written.status],
      );
      // unchanged and stale carry the stored version's tag (of a deleted one: the version it deleted)
      reply.header('etag', appointmentEtag(result.appointment));
      if (result.status === 'created') reply.code(201).header('location', appointmentLocation(result.appointment));
      return result;
    },
  );

  app.get(
    '',
    {
      schema: {
        operationId: 'listAppointments',
        tags,
        summary: 'List the appointments of an organization',
        description:
          'Ordered by start, then id. With `at`, the calendar as the service had recorded it at that instant. ' +
          'When there is more, a `Link: <...>; rel="next"` header gives the next page.',
        querystring: ListQuery,
        response: {
          200: withHeaders(
            Type.Array(Type.Ref(Appointment), {
              description: 'A page of appointments',
              examples: [[exampleAppointment]],
            }),
            { Link: LinkHeader },
          ),
          ...errorResponses(400, 503),
        },
      },
    },
    async (request, reply) => {
      const query = request.query;
      const from = query.from === undefined ? undefined : canonical(query.from, 3);
      const to = query.to === undefined ? undefined : canonical(query.to, 3);
      if (from !== undefined && to !== undefined && from >= to)
        throw badRequest('querystring/from must be before querystring/to');
      const limit = query.limit ?? DEFAULT_LIST_LIMIT;
      const options = {
        orgId: query.orgId ?? DEFAULT_ORG_ID,
        from,
        to,
        after: query.cursor === undefined ? undefined : afterOf(query.cursor),
        limit,
      };
      const at = query.at === undefined ? undefined : canonical(query.at, 6);
      const rows =
        at === undefined
          ? await listAppointments(app.sql, options)
          : await app.readAt(at, (sql) => listAppointmentsAt(sql, { ...options, at }));
      if (rows.length > limit) {
        rows.length = limit;
        const next = new URLSearchParams({
          ...query,
          limit: String(limit),
          cursor: encodeCursor([rows.at(-1)!.start, rows.at(-1)!.id]),
        });
        reply.header('link', `</api/appointments?${next}>; rel="next"`);
      }
      return rows;
    },
  );

  app.get(
    '/:id',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'getAppointment',
        tags,
        summary: 'Read one appointment, current or as of an instant',
        description:
          'Without `at`, the appointment as it is now (404 once deleted). With `at`, the version the service had ' +
          'recorded at that instant, also of an appointment deleted since (404 if none was current then).',
        params: IdParams,
        querystring: ItemQuery,
        headers: Type.Object({ 'If-None-Match': Type.Optional(IfNoneMatchReadHeader) }),
        response: {
          200: withHeaders(Type.Ref(Appointment, { description: 'The appointment', examples: [exampleAppointment] }), {
            ETag: EtagHeader,
          }),
          304: withHeaders(NoBody('Not Modified: the version read has a tag of If-None-Match'), { ETag: EtagHeader }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { orgId = DEFAULT_ORG_ID, at } = request.query;
      const noneMatch = entityTags(request.headers['if-none-match'], 'if-none-match');
      const instant = at === undefined ? undefined : canonical(at, 6);
      const appointment =
        instant === undefined
          ? await getAppointment(app.sql, orgId, id)
          : await app.readAt(instant, (sql) => getAppointmentAt(sql, orgId, id, instant));
      if (!appointment)
        throw notFound(`There is no appointment ${id} in the organization ${orgId}${at ? ` at ${at}` : ''}`);
      const etag = appointmentEtag(appointment);
      reply.header('etag', etag);
      if (noneMatch !== undefined && !noneMatchHolds(noneMatch, etag)) return reply.code(304).send();
      return appointment;
    },
  );

  app.get(
    '/:id/history',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'getAppointmentHistory',
        tags,
        summary: 'Every version of an appointment, oldest first',
        description:
          'Each version with the system-time period in which it was current; a delete ends the last one. ' +
          'Kept after a delete; 404 only for an id the organization never had (with `at`: had not had by then). ' +
          'With `at`, the history as recorded at that instant: later versions are left out, and the version ' +
          'current then has `validTo` null and `deleted` false.',
        params: IdParams,
        querystring: HistoryQuery,
        response: {
          200: Type.Array(Type.Ref(HistoryEntry), {
            description: 'The versions, oldest first',
            examples: [
              [
                {
                  version: 1,
                  start: '2020-10-10T20:20:00.000Z',
                  end: '2020-10-10T20:30:00.000Z',
                  createdAt: '2020-09-02T14:23:12.000Z',
                  updatedAt: '2020-09-28T14:23:12.000Z',
                  validFrom: '2026-11-22T14:05:00.123456Z',
                  validTo: '2026-11-22T14:06:10.654321Z',
                  deleted: false,
                },
                {
                  version: 2,
                  start: '2020-10-10T20:20:00.000Z',
                  end: '2020-10-10T20:45:00.000Z',
                  createdAt: '2020-09-02T14:23:12.000Z',
                  updatedAt: '2020-09-29T09:00:00.000Z',
                  validFrom: '2026-11-22T14:06:10.654321Z',
                  validTo: null,
                  deleted: false,
                },
              ] satisfies HistoryEntry[],
            ],
          }),
          ...errorResponses(400, 404, 503),
        },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const at = request.query.at === undefined ? undefined : canonical(request.query.at, 6);
      const history =
        at === undefined
          ? await getAppointmentHistory(app.sql, orgId, id)
          : await app.readAt(at, (sql) => getAppointmentHistory(sql, orgId, id, at));
      if (history.length === 0)
        throw notFound(`The appointment ${id} never existed in the organization ${orgId}${at ? ` by ${at}` : ''}`);
      return history;
    },
  );

  app.delete(
    '/:id',
    {
      onRequest: emptyIdIsNotFound,
      schema: {
        operationId: 'deleteAppointment',
        tags,
        summary: 'Delete an appointment',
        description:
          'Its history stays readable. A later write with a newer updatedAt creates it again; an older one is `stale`.',
        params: IdParams,
        querystring: OrgQuery,
        headers: Type.Object({ 'If-Match': Type.Optional(IfMatchHeader) }),
        response: {
          204: withHeaders(Type.Null({ description: 'Deleted' }), { ETag: DeletedEtagHeader }),
          ...errorResponses(400, 404),
          412: withHeaders(errorResponse(412), { ETag: PreconditionFailedEtagHeader }),
          ...errorResponses(503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { orgId = DEFAULT_ORG_ID } = request.query;
      const { ifMatch, ifNoneMatch } = writePreconditions(request.headers);
      // refused, not ignored: a client that sends a precondition must not see a delete it did not ask for
      if (ifNoneMatch) throw badRequest('A DELETE takes If-Match only, not If-None-Match');
      const deleted = await countWrite(
        app.metrics,
        deleteAppointment(app.sql, orgId, id, ifMatch, () =>
          app.metrics.deadlocksResolved.inc({ operation: 'delete' }),
        ),
        (version) => (version ? ['deleted'] : []),
      );
      if (!deleted) throw notFound(`There is no appointment ${id} in the organization ${orgId}`);
      return reply.code(204).header('etag', appointmentEtag(deleted)).send(null);
    },
  );
};
