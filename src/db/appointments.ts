import postgres, { type Fragment, type Sql } from 'postgres';
import type { Appointment, HistoryEntry, WriteStatus } from '../schemas/appointments.js';
import { toMilliseconds } from './client.js';

// Every SQL statement about appointments. Times go in as canonical UTC text (see schemas/time.ts)
// and come out in the same form with microseconds (see client.ts); appointment times, which keep
// milliseconds, are cut to them here. The functions they call are in ./functions/, one file each.

/** An appointment as written by a client, its times canonical. */
export interface AppointmentWrite {
  orgId: string;
  id: string;
  start: string;
  end: string;
  createdAt: string;
  updatedAt: string;
}

export interface ConflictingAppointment {
  id: string;
  start: string;
  end: string;
}

/** The write overlaps another appointment of the organization. */
export class AppointmentOverlapError extends Error {
  constructor(readonly conflictsWith: ConflictingAppointment | null) {
    super('The appointment overlaps another appointment of the organization');
  }
}

const EXCLUSION_VIOLATION = '23P01';
// Two overlapping writers can wait on each other inside the exclusion check; PostgreSQL aborts one
// with deadlock_detected. The other may still roll back (or itself be refused), so the aborted write
// is an overlap only when a committed appointment is in its way; otherwise it is sent again once,
// alone among the org's writers (see upsert_appointment), where it cannot deadlock.
const DEADLOCK_DETECTED = '40P01';

export interface ListOptions {
  orgId: string;
  /** Only appointments that end after this time. */
  from?: string;
  /** Only appointments that start before this time. */
  to?: string;
  /** The keyset of the last appointment of the previous page. */
  after?: { start: string; id: string };
  limit: number;
}

const columns = (sql: Sql) => sql`
  id, org_id AS "orgId", start_at AS "start", end_at AS "end", created_at AS "createdAt",
  updated_at AS "updatedAt", version, recorded_at AS "recordedAt"`;

/** Cuts a row's appointment times to milliseconds, in place. */
export function withAppointmentTimes<T extends { start: string; end: string; createdAt: string; updatedAt: string }>(
  row: T,
): T {
  row.start = toMilliseconds(row.start);
  row.end = toMilliseconds(row.end);
  row.createdAt = toMilliseconds(row.createdAt);
  row.updatedAt = toMilliseconds(row.updatedAt);
  return row;
}

const afterKey = (sql: Sql, after: ListOptions['after']) =>
  after ? sql`AND (start_at, id) > (${after.start}::timestamptz, ${after.id})` : sql``;

/**
 * A write's preconditions: `ifMatch`, the ETags of which the stored live version must have one
 * (`*`: any live version; weak tags never match, so leave them out); `ifNoneMatch`, create only.
 */
export interface WritePreconditions {
  ifMatch?: string[];
  ifNoneMatch?: boolean;
}

/** A precondition failed: nothing was written. `current` is the live appointment, if there is one. */
export class PreconditionFailedError extends Error {
  constructor(readonly current: Appointment | null) {
    super('The precondition failed: the appointment is not in the state the request expects');
  }
}

type WriteRow = Appointment & { status: WriteStatus | 'overlap' | 'precondition failed'; deletedAt: string | null };

/**
 * Create-or-update in one statement (functions/upsert-appointment.sql). A create refused for a committed
 * appointment in its way comes back as the status `overlap` with that appointment, in the same round trip.
 */
export async function upsertAppointment(
  sql: Sql,
  a: AppointmentWrite,
  preconditions: WritePreconditions = {},
  onDeadlockResolved?: () => void,
): Promise<{ status: WriteStatus; appointment: Appointment }> {
  const ifMatch = preconditions.ifMatch ?? null;
  const ifNoneMatch = preconditions.ifNoneMatch ?? false;
  let row: WriteRow | undefined;
  for (let alone = false; row === undefined; alone = true) {
    try {
      [row] = await sql<WriteRow[]>`
        SELECT status, (a).id, (a).org_id AS "orgId", (a).start_at AS "start", (a).end_at AS "end",
               (a).created_at AS "createdAt", (a).updated_at AS "updatedAt", (a).version,
               (a).recorded_at AS "recordedAt", (a).deleted_at AS "deletedAt"
        FROM upsert_appointment(${a.orgId}, ${a.id}, ${a.start}::timestamptz, ${a.end}::timestamptz,
                                ${a.createdAt}::timestamptz, ${a.updatedAt}::timestamptz, ${alone},
                                ${ifMatch}::text[], ${ifNoneMatch}) AS u(status, a)`;
      if (alone) onDeadlockResolved?.();
    } catch (error) {
      // races the function's own check cannot see: a writer that had not committed yet
      if (!(error instanceof postgres.PostgresError)) throw error;
      if (error.code === EXCLUSION_VIOLATION)
        throw new AppointmentOverlapError(await findOverlappingAppointment(sql, a));
      if (error.code !== DEADLOCK_DETECTED) throw error;
      const conflict = await findOverlappingAppointment(sql, a);
      if (conflict !== null) throw new AppointmentOverlapError(conflict);
      // Alone it can only have met a writer from outside the service: the client may try again.
      if (alone) throw error;
    }
  }
  const { status, deletedAt, ...appointment } = row!;
  // no live appointment: the composite is NULL, and so each of its fields
  if (status === 'precondition failed')
    throw new PreconditionFailedError(appointment.id === null ? null : withAppointmentTimes(appointment));
  withAppointmentTimes(appointment);
  if (status === 'overlap')
    throw new AppointmentOverlapError({ id: appointment.id, start: appointment.start, end: appointment.end });
  return { status, appointment: deletedAt === null ? appointment : { ...appointment, deletedAt } };
}

/** The current appointment of the org in the way of `a`, the first by start, if one still is. */
export async function findOverlappingAppointment(
  sql: Sql,
  a: AppointmentWrite,
): Promise<ConflictingAppointment | null> {
  const [row] = await sql<ConflictingAppointment[]>`
    SELECT id, start_at AS "start", end_at AS "end"
    FROM overlapping_appointment(${a.orgId}, ${a.start}::timestamptz, ${a.end}::timestamptz, ${a.id})`;
  return row ? { id: row.id, start: toMilliseconds(row.start), end: toMilliseconds(row.end) } : null;
}

/** The current appointments of an org, by start then id; limit + 1 rows tell whether there is more. */
export async function listAppointments(sql: Sql, o: ListOptions): Promise<Appointment[]> {
  // Only the last appointment starting before `from` can run past it (last_appointment_starting_before):
  // a lower bound on start_at that the index can use, unlike end_at > from.
  const from = o.from
    ? sql`AND start_at >= coalesce(
            (SELECT start_at FROM last_appointment_starting_before(${o.orgId}, ${o.from}::timestamptz)), '-infinity')
          AND end_at > ${o.from}::timestamptz`
    : sql``;
  const to = o.to ? sql`AND start_at < ${o.to}::timestamptz` : sql``;
  const rows = await sql<Appointment[]>`
    SELECT ${columns(sql)}
    FROM appointments
    WHERE org_id = ${o.orgId} AND deleted_at IS NULL ${from} ${to} ${afterKey(sql, o.after)}
    ORDER BY start_at, id
    LIMIT ${o.limit + 1}`;
  rows.forEach(withAppointmentTimes);
  return rows;
}

// Current rows of a snapshot are those recorded at or before `at`. When most of an org's rows are, a
// walk through the start index meets the first page at once; when few are (`at` lies before most of
// them were written), that walk reads nearly every row of the org for nothing, and the few are better
// fetched through the recorded_at index and sorted. Statistics over the whole table cannot tell the
// planner which holds for one org at one instant, so a count, capped at this many pages, decides when
// the query runs.
export const FEW_RECORDED_PAGES = 10;

// The pieces of a snapshot at `at` that listAppointmentsAt and the availability query share.

/** The current rows of the org recorded by `at`: those that belong to its snapshot. */
export const recordedBy = (sql: Sql, orgId: string, at: Fragment) => sql`
  SELECT id, org_id, start_at, end_at, created_at, updated_at, version, recorded_at
  FROM appointments
  WHERE org_id = ${orgId} AND deleted_at IS NULL AND recorded_at <= ${at}`;

/** How many rows `recorded` has, counted up to `few`: a CTE `recorded_count(n)`. */
export const recordedCount = (sql: Sql, recorded: Fragment, few: number) =>
  sql`recorded_count AS MATERIALIZED (SELECT count(*) AS n FROM ${recordedFew(sql, recorded, few)} AS capped)`;

/**
 * The rows of `recorded`, up to `few`, through the recorded_at index: for the count above, and for the
 * branch that reads the few when there are fewer (the LIMIT then cuts nothing). The order and the LIMIT
 * keep the planner from a scan of the whole table (stopping at the `few`th row, or sorting), which on
 * statistics that put an org at a large part of the table looks cheaper than the index and reads every
 * row of the table for a small org: a point-in-time list took 3 s in the benchmark.
 */
export const recordedFew = (sql: Sql, recorded: Fragment, few: number) =>
  sql`(${recorded} ORDER BY recorded_at LIMIT ${few})`;

/**
 * The start of the history version of the snapshot at `at` that starts last before `from`: the nearest
 * point below `from` on the line x = at of the timeline index (see its migration).
 */
export const versionStartingBefore = (sql: Sql, orgId: string, at: Fragment, from: Fragment) => sql`
  (SELECT start_at FROM appointment_versions
   WHERE org_id = ${orgId}
     AND timeline_box(valid_from, valid_to, start_at)
         && box(point(timeline_micros(${at}), -1e18), point(timeline_micros(${at}), timeline_micros(${from})))
   ORDER BY timeline_box(valid_from, valid_to, start_at) <-> point(timeline_micros(${at}), timeline_micros(${from}))
   LIMIT 1)`;

/** History versions of the snapshot at `at` that start in [low, high], for the timeline index (micros). */
export const onTimeline = (sql: Sql, at: Fragment, low: Fragment, high: Fragment) =>
  sql`timeline_box(valid_from, valid_to, start_at) && box(point(timeline_micros(${at}), ${low}), point(timeline_micros(${at}), ${high}))`;

/**
 * The org's calendar as recorded at the instant `at` (system time). Each source gives its first page
 * in start order: history through the timeline index (see its migration), current rows as above; the
 * pages are merged.
 */
export async function listAppointmentsAt(sql: Sql, o: ListOptions & { at: string }): Promise<Appointment[]> {
  const at = sql`${o.at}::timestamptz`;
  const pageSize = o.limit + 1;
  const from = o.from ? sql`AND end_at > ${o.from}::timestamptz` : sql``;
  const to = o.to ? sql`AND start_at < ${o.to}::timestamptz` : sql``;
  const filters = sql`${from} ${to} ${afterKey(sql, o.after)}`;
  const few = FEW_RECORDED_PAGES * pageSize;
  // As in listAppointments: a snapshot has no overlaps, so only the last appointment starting at or
  // before `from` can reach past it, and nothing that starts earlier need be read: among the versions,
  // the nearest below `from` on the line x = at (the same rule, in the timeline index); among the
  // current rows recorded by `at`, last_appointment_starting_before. Any lower bound is correct; the
  // current rows' is sought only when many were recorded by `at` (when few were, they are all read
  // anyway, and the walk down the start index could pass every row of the org). It is worked out
  // once, in a CTE: written out at each place it is used, it made planning much slower.
  const lowerBound =
    o.from && !o.after
      ? sql`, lower_bound AS MATERIALIZED (SELECT greatest(
          ${versionStartingBefore(sql, o.orgId, at, sql`${o.from}::timestamptz`)},
          CASE WHEN (SELECT n FROM recorded_count) >= ${few} THEN
            (SELECT start_at FROM last_appointment_starting_before(${o.orgId}, ${o.from}::timestamptz, ${at}))
          END) AS start_at)`
      : sql``;
  const lowestStart = o.after
    ? sql`${o.after.start}::timestamptz`
    : o.from
      ? sql`(SELECT start_at FROM lower_bound)`
      : undefined;
  // where the walk up the start axis of the line x = at begins, and where it ends
  const low = lowestStart ? sql`coalesce(timeline_micros(${lowestStart}), -1e18)` : sql`-1e18`;
  const high = o.to ? sql`timeline_micros(${o.to}::timestamptz)` : sql`1e18`;
  const recorded = recordedBy(sql, o.orgId, at);
  const rows = await sql<Appointment[]>`
    WITH ${recordedCount(sql, recorded, few)} ${lowerBound}
    SELECT ${columns(sql)}
    FROM (
      (SELECT id, org_id, start_at, end_at, created_at, updated_at, version, valid_from AS recorded_at
       FROM appointment_versions
       WHERE org_id = ${o.orgId} AND ${onTimeline(sql, at, low, high)} ${filters}
       ORDER BY timeline_box(valid_from, valid_to, start_at) <-> point(timeline_micros(${at}), ${low}), id
       LIMIT ${pageSize})
      UNION ALL
      (SELECT * FROM ${recordedFew(sql, recorded, few)} AS few
       WHERE (SELECT n FROM recorded_count) < ${few} ${filters}
       ORDER BY start_at, id
       LIMIT ${pageSize})
      UNION ALL
      (${recorded} AND (SELECT n FROM recorded_count) >= ${few}
         ${lowestStart ? sql`AND start_at >= coalesce(${lowestStart}, '-infinity')` : sql``} ${filters}
       ORDER BY start_at, id
       LIMIT ${pageSize})
    ) AS snapshot
    ORDER BY start_at, id
    LIMIT ${pageSize}`;
  rows.forEach(withAppointmentTimes);
  return rows;
}

/** One appointment's version current at `at`: from history the one whose period holds it, or the current row. */
const versionAt = (sql: Sql, orgId: string, id: string, at: string) => sql`
  SELECT id, org_id, start_at, end_at, created_at, updated_at, version, valid_from AS recorded_at
  FROM appointment_versions
  WHERE org_id = ${orgId} AND id = ${id} AND tstzrange(valid_from, valid_to, '[)') @> ${at}::timestamptz
  UNION ALL
  SELECT id, org_id, start_at, end_at, created_at, updated_at, version, recorded_at
  FROM appointments
  WHERE org_id = ${orgId} AND id = ${id} AND deleted_at IS NULL AND recorded_at <= ${at}::timestamptz`;

export async function getAppointment(sql: Sql, orgId: string, id: string): Promise<Appointment | undefined> {
  const [row] = await sql<Appointment[]>`
    SELECT ${columns(sql)} FROM appointments WHERE org_id = ${orgId} AND id = ${id} AND deleted_at IS NULL`;
  return row && withAppointmentTimes(row);
}

export async function getAppointmentAt(
  sql: Sql,
  orgId: string,
  id: string,
  at: string,
): Promise<Appointment | undefined> {
  const [row] = await sql<Appointment[]>`SELECT ${columns(sql)} FROM (${versionAt(sql, orgId, id, at)}) AS snapshot`;
  return row && withAppointmentTimes(row);
}

/**
 * Every version, oldest first; empty when the id never existed in the org. With `at`, as recorded at
 * that instant: the versions begun by then, the one current then without its end (nor its delete).
 */
export async function getAppointmentHistory(sql: Sql, orgId: string, id: string, at?: string): Promise<HistoryEntry[]> {
  const asOf = at === undefined ? undefined : sql`${at}::timestamptz`;
  const rows = await sql<HistoryEntry[]>`
    SELECT version, start_at AS "start", end_at AS "end", created_at AS "createdAt", updated_at AS "updatedAt",
           valid_from AS "validFrom",
           ${asOf ? sql`CASE WHEN valid_to <= ${asOf} THEN valid_to END` : sql`valid_to`} AS "validTo",
           ${asOf ? sql`deleted AND valid_to <= ${asOf}` : sql`deleted`} AS deleted
    FROM (
      SELECT version, start_at, end_at, created_at, updated_at, valid_from, valid_to, deleted
      FROM appointment_versions WHERE org_id = ${orgId} AND id = ${id}
      UNION ALL
      SELECT version, start_at, end_at, created_at, updated_at, recorded_at, NULL, false
      FROM appointments WHERE org_id = ${orgId} AND id = ${id} AND deleted_at IS NULL
    ) AS versions
    ${asOf ? sql`WHERE valid_from <= ${asOf}` : sql``}
    ORDER BY version`;
  rows.forEach(withAppointmentTimes);
  return rows;
}

/** The version a delete ended: its ETag names it, and the change feed's delete change carries its number. */
export interface DeletedVersion {
  version: number;
  recordedAt: string;
}

/**
 * Ends the current version (the trigger moves it to history) and keeps a tombstone. With `ifMatch`, only
 * a live version with one of those ETags (or any, with `*`) is deleted, checked on the locked row; else
 * PreconditionFailedError with the live appointment, if any. Undefined when there was nothing to delete.
 */
export async function deleteAppointment(
  sql: Sql,
  orgId: string,
  id: string,
  ifMatch?: string[],
  onDeadlockResolved?: () => void,
): Promise<DeletedVersion | undefined> {
  const matches = ifMatch
    ? sql`AND ('*' = ANY (${ifMatch}::text[]) OR appointment_etag(version, recorded_at) = ANY (${ifMatch}::text[]))`
    : sql``;
  for (let attempt = 1; ; attempt++) {
    try {
      // READ COMMITTED: an UPDATE that waited for the row lock checks its WHERE again on the version
      // that committed meanwhile, so the precondition and the delete are one step.
      const [deleted] = await sql<DeletedVersion[]>`
        UPDATE appointments SET deleted_at = greatest(clock_timestamp(), recorded_at + interval '1 microsecond')
        WHERE org_id = ${orgId} AND id = ${id} AND deleted_at IS NULL ${matches}
        RETURNING version, recorded_at AS "recordedAt"`;
      if (attempt > 1) onDeadlockResolved?.();
      if (deleted || !ifMatch) return deleted;
      throw new PreconditionFailedError((await getAppointment(sql, orgId, id)) ?? null);
    } catch (error) {
      // An atomic batch that locks this row among others can make a delete waiting on it the victim of
      // a deadlock with another batch; the delete has not happened, and is sent again.
      if (error instanceof postgres.PostgresError && error.code === DEADLOCK_DETECTED && attempt < 3) continue;
      throw error;
    }
  }
}
