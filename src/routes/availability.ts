import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { getFreeBusy, loadTimeZoneNames, slotsOf, type OpeningRange } from '../db/availability.js';
import { badRequest } from '../errors.js';
import { DEFAULT_ORG_ID } from '../schemas/appointments.js';
import {
  Availability,
  AvailabilityQuery,
  MAX_SLOTS,
  MAX_WINDOW_MS,
  WEEKDAY_NAMES,
  type Availability as AvailabilityAnswer,
} from '../schemas/availability.js';
import { errorResponses } from '../schemas/errors.js';
import { canonical } from './appointment-input.js';

const tags = ['availability'];
const MINUTE = 60_000;

const minutes = (clock: string) => Number(clock.slice(0, 2)) * 60 + Number(clock.slice(3, 5));

/** `09:00-12:00,13:00-17:30` (the schema has checked its syntax) as ranges, each start before its end. */
function openingRanges(hours: string): OpeningRange[] {
  return hours.split(',').map((range) => {
    const [start, end] = [minutes(range.slice(0, 5)), minutes(range.slice(6, 11))];
    if (start >= end) throw badRequest(`querystring/hours: the range ${range} must start before it ends`);
    return { start, end };
  });
}

export const availabilityRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // read once, on the first request that names a zone: the list only changes with PostgreSQL's zone data
  let zones: Promise<Map<string, string>> | undefined;
  const zoneNamed = async (name: string) => {
    zones ??= loadTimeZoneNames(app.sql).catch((error: unknown) => {
      zones = undefined;
      throw error;
    });
    const zone = (await zones).get(name.toLowerCase());
    if (zone === undefined)
      throw badRequest(`querystring/timeZone must be an IANA time zone name such as Europe/Berlin, not ${name}`);
    return zone;
  };

  app.get(
    '',
    {
      schema: {
        operationId: 'getAvailability',
        tags,
        summary: 'Free/busy and bookable slots of an organization, in opening hours of any time zone',
        description:
          'Busy: the appointments that overlap the window, clipped and merged. Free: the open parts of the window ' +
          '(within `hours` on `days` in `timeZone`) that no appointment covers. Slots (with `duration`): the starts ' +
          '`from + k * step` (no rounding) whose whole slot is free. With `at`, as recorded at that instant. ' +
          'Availability is advice, not a lock: a booking can still be refused as an overlap.',
        querystring: AvailabilityQuery,
        response: { 200: Availability, ...errorResponses(400, 503) },
      },
    },
    async (request) => {
      const query = request.query;
      const from = canonical(query.from, 3);
      const to = canonical(query.to, 3);
      if (from >= to) throw badRequest('querystring/from must be before querystring/to');
      if (Date.parse(to) - Date.parse(from) > MAX_WINDOW_MS)
        throw badRequest('querystring/to must be at most 366 days after querystring/from');
      if (query.step !== undefined && query.duration === undefined)
        throw badRequest('querystring/step needs querystring/duration');
      const orgId = query.orgId ?? DEFAULT_ORG_ID;
      const at = query.at === undefined ? undefined : canonical(query.at, 6);
      const freeBusyQuery = {
        orgId,
        from,
        to,
        timeZone: await zoneNamed(query.timeZone ?? 'UTC'),
        ...(at === undefined ? {} : { at }),
        ...(query.hours === undefined ? {} : { hours: openingRanges(query.hours) }),
        ...(query.days === undefined
          ? {}
          : { days: query.days.split(',').map((day) => WEEKDAY_NAMES.indexOf(day as never) + 1) }),
      };
      const freeBusy =
        at === undefined
          ? await getFreeBusy(app.sql, freeBusyQuery)
          : await app.readAt(at, (sql) => getFreeBusy(sql, freeBusyQuery));
      const answer: AvailabilityAnswer = { orgId, from, to, ...(at === undefined ? {} : { at }), ...freeBusy };
      if (query.duration !== undefined) {
        const slots = slotsOf(
          from,
          freeBusy.free,
          query.duration * MINUTE,
          (query.step ?? query.duration) * MINUTE,
          MAX_SLOTS,
        );
        if (slots === null)
          throw badRequest(
            `querystring/step: the answer would hold more than ${MAX_SLOTS} slots; ask for a shorter window or a larger step`,
          );
        answer.slots = slots;
      }
      return answer;
    },
  );
};
