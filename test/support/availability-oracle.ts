// A brute-force availability oracle for the property tests of GET /api/availability (issue 13), written
// apart from the service: local times become instants through Node's Intl (the ICU time zone data), never
// through PostgreSQL, and free time is found by testing every elementary piece between two boundaries
// rather than by range arithmetic. Slow on purpose: plain enough to be checked by reading it.

import type { OpeningRange, Period } from '../../src/db/availability.js';

export type { OpeningRange, Period };

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface OracleQuery {
  /** Instants, any form `Date.parse` reads exactly (canonical UTC text is best). */
  from: string;
  to: string;
  /** The org's live appointments (as recorded at the instant asked about), in any order. */
  appointments: readonly Period[];
  /** An IANA zone name; default UTC. */
  timeZone?: string;
  hours?: readonly OpeningRange[];
  days?: readonly Weekday[];
  /** Minutes. */
  duration?: number;
  step?: number;
}

export interface OracleAnswer {
  busy: Period[];
  free: Period[];
  slots?: Period[];
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** A local wall time, as milliseconds of a clock that reads it in UTC. */
function wallClock(year: number, month: number, day: number, minuteOfDay: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  return d.getTime() + minuteOfDay * MINUTE;
}

/** The local wall time at an instant, whole seconds, as milliseconds of a clock that reads it in UTC. */
export function wallTimeAt(timeZone: string, instant: number): number {
  const parts: Record<string, number> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(instant))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return wallClock(parts.year!, parts.month!, parts.day!, parts.hour! * 60 + parts.minute!) + parts.second! * 1000;
}

/** The zone's offset from UTC at an instant, in milliseconds. */
export function offsetAt(timeZone: string, instant: number): number {
  const second = Math.floor(instant / 1000) * 1000;
  return wallTimeAt(timeZone, second) - second;
}

/**
 * The instant of a local wall time (given as a clock that reads it in UTC), by probing every offset the
 * zone has in force within 15 hours of it (offsets stay within +-14 hours). An ambiguous time is its first
 * occurrence; a time in a gap is read with the offset in force before the gap, so it moves forward by the
 * gap's length.
 */
export function instantOfWallTime(timeZone: string, wall: number): number {
  const offsets = new Set<number>();
  for (let probe = wall - 15 * HOUR; probe <= wall + 15 * HOUR; probe += 30 * MINUTE) {
    offsets.add(offsetAt(timeZone, probe));
  }
  const matches = [...offsets].map((offset) => wall - offset).filter((t) => wallTimeAt(timeZone, t) === wall);
  if (matches.length > 0) return Math.min(...matches);
  // In a gap from the offset `before` to a larger one `after`: wall - before lies at or after the
  // transition, and moving back by the gap's length lands before it, where `before` holds.
  for (const before of offsets) {
    const instant = wall - before;
    const after = offsetAt(timeZone, instant);
    if (after > before && offsetAt(timeZone, instant - (after - before)) === before) return instant;
  }
  throw new Error(`no instant found for the local time ${new Date(wall).toISOString()} in ${timeZone}`);
}

/** The local date (a clock reading its midnight in UTC) of an instant. */
function localDate(timeZone: string, instant: number): number {
  const wall = wallTimeAt(timeZone, instant);
  return wall - (((wall % DAY) + DAY) % DAY);
}

/** The open periods of the window, unmerged: each range of each local date that overlaps the window. */
function openingPeriods(q: OracleQuery, from: number, to: number): Array<[number, number]> {
  if (q.hours === undefined && q.days === undefined) return [[from, to]];
  const timeZone = q.timeZone ?? 'UTC';
  const hours = q.hours ?? [{ start: 0, end: 1440 }];
  const days = new Set(q.days ?? WEEKDAYS);
  const periods: Array<[number, number]> = [];
  // a day more on each side than needed: what falls outside the window is clipped away below
  const first = localDate(timeZone, from) - DAY;
  const last = localDate(timeZone, to - 1) + DAY;
  for (let date = first; date <= last; date += DAY) {
    if (!days.has(WEEKDAYS[new Date(date).getUTCDay()]!)) continue;
    for (const range of hours) {
      const start = instantOfWallTime(timeZone, date + range.start * MINUTE);
      const end = instantOfWallTime(timeZone, date + range.end * MINUTE);
      if (start < end) periods.push([Math.max(start, from), Math.min(end, to)]);
    }
  }
  return periods.filter(([start, end]) => start < end);
}

/** Every elementary piece between two consecutive boundaries that `keep` accepts (tested at its start), merged. */
function pieces(boundaries: number[], keep: (instant: number) => boolean): Array<[number, number]> {
  const points = [...new Set(boundaries)].sort((a, b) => a - b);
  const result: Array<[number, number]> = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const [start, end] = [points[i]!, points[i + 1]!];
    if (!keep(start)) continue;
    const previous = result.at(-1);
    if (previous !== undefined && previous[1] === start) previous[1] = end;
    else result.push([start, end]);
  }
  return result;
}

const inside = (instant: number, periods: Array<[number, number]>) =>
  periods.some(([start, end]) => start <= instant && instant < end);

const asPeriod = ([start, end]: [number, number]): Period => ({
  start: new Date(start).toISOString(),
  end: new Date(end).toISOString(),
});

/** Busy, free and slots of the window, by the rules of issue 13. */
export function availabilityOracle(q: OracleQuery): OracleAnswer {
  const from = Date.parse(q.from);
  const to = Date.parse(q.to);
  const appointments = q.appointments
    .map((a): [number, number] => [Date.parse(a.start), Date.parse(a.end)])
    .filter(([start, end]) => start < to && end > from);
  const open = openingPeriods(q, from, to);
  const boundaries = [from, to, ...appointments.flat(), ...open.flat()].filter((t) => t >= from && t <= to);
  const busy = pieces(boundaries, (t) => inside(t, appointments));
  const free = pieces(boundaries, (t) => inside(t, open) && !inside(t, appointments));
  const answer: OracleAnswer = { busy: busy.map(asPeriod), free: free.map(asPeriod) };
  if (q.duration !== undefined) {
    const duration = q.duration * MINUTE;
    const step = (q.step ?? q.duration) * MINUTE;
    const slots: Array<[number, number]> = [];
    for (let start = from; start + duration <= to; start += step) {
      if (free.some(([s, e]) => s <= start && start + duration <= e)) slots.push([start, start + duration]);
    }
    answer.slots = slots.map(asPeriod);
  }
  return answer;
}
