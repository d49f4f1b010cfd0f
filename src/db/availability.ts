import type { Fragment, Sql } from 'postgres';
import {
  FEW_RECORDED_PAGES,
  onTimeline,
  recordedBy,
  recordedCount,
  recordedFew,
  versionStartingBefore,
} from './appointments.js';
import { toMilliseconds } from './client.js';

// Free/busy of an org (issue 13) in one statement: the busy time is the org's live appointments that
// overlap the window, aggregated into a tstzmultirange (range_agg merges touching periods); the opening
// hours are expanded per local day in the zone; free = window * opening - busy. Slots are cut from the
// free periods in TypeScript (see slotsOf), which needs no round trip.

// listAppointmentsAt's threshold, for pages of 100.
const FEW_RECORDED_ROWS = FEW_RECORDED_PAGES * 100;

/** A period `[start, end)`, canonical UTC with milliseconds. */
export interface Period {
  start: string;
  end: string;
}

/** Local opening hours of one day, in minutes after local midnight: 0 <= start < end <= 1440. */
export interface OpeningRange {
  start: number;
  end: number;
}

export interface AvailabilityQuery {
  orgId: string;
  /** Canonical UTC times; from before to. */
  from: string;
  to: string;
  /** The org as recorded at this instant (system time). */
  at?: string;
  /** An IANA name PostgreSQL knows (pg_timezone_names), as it spells it. */
  timeZone: string;
  /** Undefined with `days`: the whole local day. */
  hours?: OpeningRange[];
  /** ISO weekdays, 1 (Monday) to 7 (Sunday); undefined with `hours`: every day. */
  days?: number[];
}

export interface FreeBusy {
  busy: Period[];
  free: Period[];
}

/**
 * The instant of a local wall time `local` (timestamp without time zone) in zone `tz`. `AT TIME ZONE` reads
 * a time in a spring-forward gap with the offset before the gap (02:30 becomes 03:30 CEST), as the issue
 * asks, but an ambiguous time as its later occurrence; the first one is found with the offset in force 24
 * hours earlier, kept when it maps back to the same wall time (offsets change at most once a day).
 */
const instantOf = (sql: Sql, local: Fragment, tz: Fragment) => sql`
  (SELECT CASE WHEN (earlier AT TIME ZONE ${tz}) = ${local} THEN least(earlier, later) ELSE later END
   FROM (SELECT later, (${local} - ((later - interval '24 hours') AT TIME ZONE ${tz}
                                     - (later - interval '24 hours') AT TIME ZONE 'UTC')) AT TIME ZONE 'UTC' AS earlier
         FROM (SELECT ${local} AT TIME ZONE ${tz} AS later) AS l) AS e)`;

/**
 * The current live appointments (or, with `at`, those of the snapshot at that instant) that overlap the
 * window, as rows (start_at, end_at). As in listAppointments and listAppointmentsAt: the org's
 * appointments never overlap, so only the last one starting before `from` can reach into the window,
 * which gives a lower bound on start_at that the start index (and the timeline index) can use. The
 * `ORDER BY start_at` of the current rows is not needed by what follows: it makes the start index the
 * cheapest plan also where statistics put an org at one row, which any index by org would then serve as
 * cheaply, and a plan kept from then would read a large org whole (test/plans-after-growth.test.ts).
 */
function overlapping(sql: Sql, q: AvailabilityQuery) {
  const from = sql`${q.from}::timestamptz`;
  const to = sql`${q.to}::timestamptz`;
  if (q.at === undefined) {
    return sql`
      SELECT start_at, end_at FROM appointments
      WHERE org_id = ${q.orgId} AND deleted_at IS NULL
        AND start_at >= coalesce((SELECT start_at FROM last_appointment_starting_before(${q.orgId}, ${from})), '-infinity')
        AND start_at < ${to} AND end_at > ${from}
      ORDER BY start_at`;
  }
  const at = sql`${q.at}::timestamptz`;
  // as in listAppointmentsAt: history from the version starting last before `from` on the line x = at;
  // the current rows recorded by `at` through the recorded_at index when few were, else through the
  // start index from the last one starting before `from`
  const recorded = recordedBy(sql, q.orgId, at);
  const few = FEW_RECORDED_ROWS;
  const many = sql`(SELECT n FROM recorded_count) >= ${few}`;
  return sql`
    WITH ${recordedCount(sql, recorded, few)}
    SELECT start_at, end_at FROM appointment_versions
    WHERE org_id = ${q.orgId}
      AND ${onTimeline(sql, at, sql`coalesce(timeline_micros(${versionStartingBefore(sql, q.orgId, at, from)}), -1e18)`, sql`timeline_micros(${to})`)}
      AND start_at < ${to} AND end_at > ${from}
    UNION ALL
    SELECT start_at, end_at FROM ${recordedFew(sql, recorded, few)} AS few
    WHERE NOT ${many} AND start_at < ${to} AND end_at > ${from}
    UNION ALL
    (SELECT start_at, end_at FROM (${recorded}) AS many
     WHERE ${many}
       AND start_at >= coalesce(
             CASE WHEN ${many} THEN (SELECT start_at FROM last_appointment_starting_before(${q.orgId}, ${from}, ${at})) END,
             '-infinity')
       AND start_at < ${to} AND end_at > ${from}
     ORDER BY start_at)`;
}

/** The open time of the window as a tstzmultirange: the window itself, or its opening hours day by day. */
function opening(sql: Sql, q: AvailabilityQuery) {
  const window = sql`tstzmultirange(tstzrange(${q.from}::timestamptz, ${q.to}::timestamptz))`;
  if (q.hours === undefined && q.days === undefined) return window;
  const hours = q.hours ?? [{ start: 0, end: 1440 }];
  const days = q.days ?? [1, 2, 3, 4, 5, 6, 7];
  const tz = sql`${q.timeZone}::text`;
  const start = instantOf(sql, sql`(midnight + start_minute * interval '1 minute')`, tz);
  const end = instantOf(sql, sql`(midnight + end_minute * interval '1 minute')`, tz);
  // Every local date that overlaps the window, and one more on each side (cut away by the window): a
  // range belongs to the date it is named on, its 24:00 the next local midnight.
  return sql`
    (SELECT coalesce(range_agg(tstzrange(s, e)) FILTER (WHERE s < e), '{}') * ${window}
     FROM generate_series(((${q.from}::timestamptz AT TIME ZONE ${tz})::date - 1)::timestamp,
                          ((${q.to}::timestamptz AT TIME ZONE ${tz})::date + 1)::timestamp,
                          interval '1 day') AS midnight
     CROSS JOIN unnest(${hours.map((h) => h.start)}::int[], ${hours.map((h) => h.end)}::int[]) AS r(start_minute, end_minute)
     CROSS JOIN LATERAL (SELECT ${start} AS s, ${end} AS e) AS instants
     WHERE extract(isodow FROM midnight)::int = ANY (${days}::int[]))`;
}

/** Busy and free time of the window, in one round trip. */
export async function getFreeBusy(sql: Sql, q: AvailabilityQuery): Promise<FreeBusy> {
  const window = sql`tstzmultirange(tstzrange(${q.from}::timestamptz, ${q.to}::timestamptz))`;
  // One row per period, its bounds read like every other time (db/client.ts), so no formatting here.
  const rows = await sql<{ kind: 'busy' | 'free'; start: string; end: string }[]>`
    WITH busy AS MATERIALIZED (
      SELECT coalesce(range_agg(tstzrange(start_at, end_at)), '{}') * ${window} AS periods
      FROM (${overlapping(sql, q)}) AS o
    ), free AS MATERIALIZED (
      SELECT ${opening(sql, q)} - (SELECT periods FROM busy) AS periods
    )
    SELECT kind, lower(r) AS "start", upper(r) AS "end"
    FROM (SELECT 'busy' AS kind, periods FROM busy UNION ALL SELECT 'free', periods FROM free) AS k,
         unnest(periods) AS r
    ORDER BY kind, lower(r)`;
  const answer: FreeBusy = { busy: [], free: [] };
  for (const row of rows) answer[row.kind].push({ start: toMilliseconds(row.start), end: toMilliseconds(row.end) });
  return answer;
}

/**
 * The zone names `timeZone` may take, by their lower-case spelling: PostgreSQL's pg_timezone_names without
 * the posix/ and right/ copies and the two files that are no zone of their own. Abbreviations (PST) and
 * POSIX strings (UTC+3, which PostgreSQL reads as UTC-3) are not among them.
 */
export async function loadTimeZoneNames(sql: Sql): Promise<Map<string, string>> {
  const rows = await sql<{ name: string }[]>`
    SELECT name FROM pg_timezone_names
    WHERE name NOT LIKE 'posix/%' AND name NOT LIKE 'right/%' AND name NOT IN ('localtime', 'posixrules')`;
  return new Map(rows.map(({ name }) => [name.toLowerCase(), name]));
}

/**
 * The starts `from + k * step` whose `[start, start + duration)` lies inside one free period (milliseconds),
 * or null once there would be more than `max`.
 */
export function slotsOf(
  from: string,
  free: Period[],
  durationMs: number,
  stepMs: number,
  max: number,
): Period[] | null {
  const origin = Date.parse(from);
  const slots: Period[] = [];
  for (const period of free) {
    const end = Date.parse(period.end);
    // the first candidate at or after the period's start
    let start = origin + Math.ceil((Date.parse(period.start) - origin) / stepMs) * stepMs;
    for (; start + durationMs <= end; start += stepMs) {
      if (slots.length === max) return null;
      slots.push({ start: new Date(start).toISOString(), end: new Date(start + durationMs).toISOString() });
    }
  }
  return slots;
}
