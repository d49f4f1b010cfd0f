import fc from 'fast-check';
import { WEEKDAYS, type OpeningRange, type Period, type Weekday } from './availability-oracle.js';

// Random availability questions for the property tests: a calendar of an org around a daylight-saving
// change of one of the zones issue 13 names (or an ordinary day), a window inside or across it, opening
// hours, days, durations and steps. Kept to 2026, where PostgreSQL's and Node's zone data agree.

const MINUTE = 60_000;

/** Days on which the zone's offset changes (or, for zones without changes, an ordinary day), 2026. */
export const ZONE_DAYS: Record<string, string[]> = {
  UTC: ['2026-03-29', '2026-12-31'],
  'Europe/Berlin': ['2026-03-29', '2026-10-25'],
  'America/New_York': ['2026-03-08', '2026-11-01'],
  'Australia/Lord_Howe': ['2026-04-05', '2026-10-04'],
  'Asia/Kathmandu': ['2026-06-15'],
  'Pacific/Chatham': ['2026-04-05', '2026-09-27'],
};

export interface AvailabilityCase {
  timeZone: string;
  from: string;
  to: string;
  appointments: Period[];
  hours?: OpeningRange[];
  days?: Weekday[];
  duration?: number;
  step?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Non-overlapping appointments over six days around `day`: some touching, some crossing any window. */
const calendar = (day: string) =>
  fc
    .array(
      fc.record({
        gap: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 * 60 })),
        length: fc.integer({ min: 1, max: 8 * 60 }),
      }),
      { maxLength: 14 },
    )
    .map((pieces) => {
      let cursor = Date.parse(`${day}T00:00:00Z`) - 3 * 24 * 60 * MINUTE;
      return pieces.map(({ gap, length }) => {
        const start = cursor + gap * MINUTE;
        cursor = start + length * MINUTE;
        return { start: iso(start), end: iso(cursor) };
      });
    });

const minuteOfDay = fc.integer({ min: 0, max: 1440 });
const openingRange = fc
  .tuple(minuteOfDay, minuteOfDay)
  .filter(([a, b]) => a !== b)
  .map(([a, b]) => ({ start: Math.min(a, b), end: Math.max(a, b) }));
// most ranges on the quarter hour, as real opening hours are; the rest anywhere
const quarterRange = openingRange.map(({ start, end }) => ({
  start: Math.floor(start / 15) * 15,
  end: Math.max(Math.floor(start / 15) * 15 + 15, Math.ceil(end / 15) * 15),
}));

export const availabilityCase: fc.Arbitrary<AvailabilityCase> = fc
  .constantFrom(...Object.keys(ZONE_DAYS))
  .chain((timeZone) => fc.record({ timeZone: fc.constant(timeZone), day: fc.constantFrom(...ZONE_DAYS[timeZone]!) }))
  .chain(({ timeZone, day }) =>
    fc.record({
      timeZone: fc.constant(timeZone),
      appointments: calendar(day),
      // a window within the three days either side of the change, from a minute to four days long
      fromOffset: fc.integer({ min: -3 * 24 * 60, max: 2 * 24 * 60 }),
      fromFraction: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 59_999 })),
      length: fc.oneof(fc.integer({ min: 1, max: 4 * 24 * 60 }), fc.constantFrom(24 * 60, 48 * 60)),
      hours: fc.option(fc.array(fc.oneof(quarterRange, openingRange), { minLength: 1, maxLength: 4 }), {
        nil: undefined,
      }),
      days: fc.option(fc.subarray([...WEEKDAYS], { minLength: 1 }), { nil: undefined }),
      slots: fc.option(
        fc.record({
          duration: fc.oneof(fc.constantFrom(15, 30, 60), fc.integer({ min: 1, max: 1440 })),
          step: fc.option(fc.oneof(fc.constantFrom(15, 30), fc.integer({ min: 5, max: 1440 })), { nil: undefined }),
        }),
        { nil: undefined },
      ),
      day: fc.constant(day),
    }),
  )
  .map(({ timeZone, appointments, fromOffset, fromFraction, length, hours, days, slots, day }) => {
    const from = Date.parse(`${day}T00:00:00Z`) + fromOffset * MINUTE + fromFraction;
    return {
      timeZone,
      from: iso(from),
      to: iso(from + length * MINUTE),
      appointments,
      ...(hours === undefined ? {} : { hours }),
      ...(days === undefined ? {} : { days }),
      ...(slots === undefined
        ? {}
        : { duration: slots.duration, ...(slots.step === undefined ? {} : { step: slots.step }) }),
    };
  });

/** `hours` as the query string writes it: `09:00-12:00,13:00-17:30`. */
export const hoursParameter = (hours: readonly OpeningRange[]) =>
  hours.map(({ start, end }) => `${clock(start)}-${clock(end)}`).join(',');

const clock = (minutes: number) =>
  `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;

/** ISO weekday numbers (1 Monday ... 7 Sunday) of weekday names. */
export const isoWeekdays = (days: readonly Weekday[]) => days.map((day) => WEEKDAYS.indexOf(day) || 7);
