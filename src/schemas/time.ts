import { Type } from '@sinclair/typebox';

// YYYY-MM-DD HH:MM[:SS[.fraction]] with a space or a T, then Z, an offset or nothing (UTC).
const TIME_SYNTAX =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:(Z)|([+-])(\d{2}):(\d{2}))?$/;

/** Fractional digits kept: appointment times keep milliseconds, system times microseconds. */
export type TimePrecision = 3 | 6;

/**
 * Reads a time in any accepted format and returns it in UTC as `YYYY-MM-DDTHH:MM:SS.fff[fff]Z`,
 * with finer digits truncated, or null when the text is not a real instant between the years 1 and 9999.
 * The canonical form sorts like the instants it names, so canonical strings compare directly.
 */
export function parseTime(text: string, precision: TimePrecision): string | null {
  const m = TIME_SYNTAX.exec(text);
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const seconds = m[6] ?? '00';
  const fraction = m[7] === undefined ? '000000' : m[7].length >= 6 ? m[7].slice(0, 6) : m[7].padEnd(6, '0');
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || Number(seconds) > 59) return null;
  let offsetMinutes = 0;
  if (m[9] !== undefined) {
    const offsetHours = Number(m[10]);
    const offsetMins = Number(m[11]);
    if (offsetHours > 23 || offsetMins > 59) return null;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  // A UTC time (no zone, Z or a zero offset), the usual case, is already its canonical form once the
  // fields are checked: the digits as written, as toISOString() would print them for the years 1-9999.
  const millis = fraction.slice(0, 3);
  if (offsetMinutes === 0) {
    const iso = `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${seconds}.`;
    return precision === 3 ? `${iso}${millis}Z` : `${iso}${fraction}Z`;
  }
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map the years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute - offsetMinutes, Number(seconds), Number(millis));
  const utcYear = date.getUTCFullYear();
  if (utcYear < 1 || utcYear > 9999) return null;
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ for the years 1-9999
  return precision === 3 ? iso : `${iso.slice(0, 23)}${fraction.slice(3)}Z`;
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

export const TIME_FORMAT = 'appointment-time';
export const SYSTEM_TIME_FORMAT = 'system-time';

const timeDescription =
  '`YYYY-MM-DD HH:MM` or `YYYY-MM-DD HH:MM:SS[.fraction]`, with a space or a `T`, optionally followed by `Z` or an offset such as `+02:00`; without a zone the time is UTC.';

/** A time given by the sender (start, end, createdAt, updatedAt, from, to): millisecond precision. */
export const timeInput = (description = '', examples = ['2020-10-10 20:20', '2020-10-10T22:20:00.000+02:00']) =>
  Type.String({
    format: TIME_FORMAT,
    description: `${description} ${timeDescription} Kept to the millisecond.`.trim(),
    examples,
  });

/**
 * An instant of system time (the `at` parameter): microsecond precision. No example: Swagger UI would send it
 * with every "Try it out", and a past instant hides what was written since.
 */
export const systemTimeInput = (description = '') =>
  Type.String({
    format: SYSTEM_TIME_FORMAT,
    description:
      `${description} ${timeDescription} Kept to the microsecond; for example \`2026-11-22T14:05:00.123456Z\`.`.trim(),
  });

/** A time as the service answers it, like JavaScript's toISOString(). */
export const timeOutput = (description = '') =>
  Type.String({
    format: 'date-time',
    description: `${description} UTC, millisecond precision.`.trim(),
    examples: ['2020-10-10T20:20:00.000Z'],
  });

/** An instant of system time as the service answers it, with microseconds. */
export const systemTimeOutput = (description = '') =>
  Type.String({
    format: 'date-time',
    description: `${description} UTC, microsecond precision.`.trim(),
    examples: ['2026-11-22T14:05:00.123456Z'],
  });
