import { Type, type Static } from '@sinclair/typebox';
import { OrgId } from './appointments.js';
import { systemTimeInput, systemTimeOutput, timeInput, timeOutput } from './time.js';

export const MAX_WINDOW_MS = 366 * 24 * 3_600_000;
export const MAX_SLOTS = 10_000;
export const WEEKDAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

const CLOCK = '(?:[01][0-9]|2[0-3]):[0-5][0-9]';
const RANGE = `${CLOCK}-(?:${CLOCK}|24:00)`;
const DAY = WEEKDAY_NAMES.join('|');

export const AvailabilityQuery = Type.Object(
  {
    orgId: Type.Optional(OrgId),
    from: timeInput('The start of the window.', ['2026-03-23 00:00', '2026-03-23T00:00:00+01:00']),
    to: timeInput('The end of the window (exclusive), at most 366 days after `from`.', [
      '2026-03-30 00:00',
      '2026-03-30T00:00:00+02:00',
    ]),
    at: Type.Optional(systemTimeInput('The organization as the service had recorded it at this instant.')),
    timeZone: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description:
          'The zone of `hours` and `days`: an IANA name such as `Europe/Berlin` (case-insensitive); default `UTC`. ' +
          'Abbreviations, POSIX strings and offsets are refused. `from` and `to` keep their own meaning: a time ' +
          'without a zone is UTC.',
        examples: ['Europe/Berlin'],
      }),
    ),
    hours: Type.Optional(
      Type.String({
        pattern: `^${RANGE}(?:,${RANGE})*$`,
        maxLength: 1199,
        description:
          'Local opening hours, `HH:MM-HH:MM` ranges separated by commas, each start before its end (`24:00` only ' +
          'as an end); their union is open. Daylight saving as the zone has it: a time that does not exist is ' +
          'read with the offset before the gap, an ambiguous one is its first occurrence.',
        examples: ['09:00-12:00,13:00-17:30'],
      }),
    ),
    days: Type.Optional(
      Type.String({
        pattern: `^(?:${DAY})(?:,(?:${DAY}))*$`,
        maxLength: 111,
        description: 'The local weekdays the hours apply to, such as `mon,tue,wed,thu,fri`; default all seven.',
        examples: ['mon,tue,wed,thu,fri'],
      }),
    ),
    duration: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1440, description: 'Minutes: ask for bookable slots of this length.' }),
    ),
    step: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1440,
        description: 'Minutes between candidate starts `from + k * step`; default `duration`. Needs `duration`.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type AvailabilityQuery = Static<typeof AvailabilityQuery>;

export const Period = Type.Object(
  { start: timeOutput(), end: timeOutput('Exclusive.') },
  { additionalProperties: false },
);

export const Availability = Type.Object(
  {
    orgId: OrgId,
    from: timeOutput(),
    to: timeOutput(),
    at: Type.Optional(systemTimeOutput('Only when asked.')),
    busy: Type.Array(Period, {
      description: 'Appointments that overlap the window, clipped to it, touching ones merged; hours ignored.',
    }),
    free: Type.Array(Period, {
      description: 'The open parts of the window that no appointment covers, maximal periods.',
    }),
    slots: Type.Optional(
      Type.Array(Period, {
        description:
          'Only with `duration`: each `from + k * step` whose `[start, start + duration)` lies inside one free period.',
      }),
    ),
  },
  { additionalProperties: false },
);
export type Availability = Static<typeof Availability>;
