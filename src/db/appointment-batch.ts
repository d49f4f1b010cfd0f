import postgres, { type Sql } from 'postgres';
import type { Appointment, WriteStatus } from '../schemas/appointments.js';
import {
  AppointmentOverlapError,
  PreconditionFailedError,
  withAppointmentTimes,
  type AppointmentWrite,
  type ConflictingAppointment,
} from './appointments.js';

// The batch write: every item in one statement (functions/upsert-appointment-batch.sql), one
// transaction, one commit.

/** One item of a batch, its times canonical; `ifMatch` as for upsertAppointment. */
export interface BatchWrite extends AppointmentWrite {
  /** The item's index in the request. */
  index: number;
  ifMatch?: string[];
}

/** What happened to one item. */
export type BatchOutcome =
  | { index: number; status: WriteStatus; appointment: Appointment }
  | { index: number; status: 'overlap'; conflictsWith: ConflictingAppointment | null }
  | { index: number; status: 'precondition failed'; current: Appointment | null };

/** An atomic batch ended at this item: nothing was written. */
export class BatchItemRefusedError extends Error {
  constructor(
    readonly index: number,
    readonly refusal: AppointmentOverlapError | PreconditionFailedError,
  ) {
    super(refusal.message);
  }
}

const DEADLOCK_DETECTED = '40P01';
// The first attempt, then alone (see the function) twice: alone a batch can only meet a writer from
// outside the service, or a DELETE; the last deadlock goes to the error handler (503).
const ATTEMPTS = 3;

type BatchRow = Appointment & {
  item: number;
  status: WriteStatus | 'overlap' | 'precondition failed';
  deletedAt: string | null;
};

/**
 * Writes the items in order, each as upsertAppointment would. Not atomic: an item refused (overlap,
 * precondition) leaves the others written. Atomic: the first refused item throws BatchItemRefusedError
 * and nothing is written. A deadlock is sent again, the whole batch, and never is an item's answer.
 */
export async function upsertAppointmentBatch(
  sql: Sql,
  items: BatchWrite[],
  atomic: boolean,
  onDeadlockResolved?: () => void,
): Promise<BatchOutcome[]> {
  if (items.length === 0) return [];
  // as text: a string given for a jsonb parameter would be encoded as JSON once more
  const json = JSON.stringify(
    items.map((w) => ({
      i: w.index,
      orgId: w.orgId,
      id: w.id,
      start: w.start,
      end: w.end,
      createdAt: w.createdAt,
      updatedAt: w.updatedAt,
      ifMatch: w.ifMatch ?? null,
    })),
  );
  let rows: BatchRow[] | undefined;
  for (let attempt = 1; rows === undefined; attempt++) {
    try {
      rows = await sql<BatchRow[]>`
        SELECT item, status, id, org_id AS "orgId", start_at AS "start", end_at AS "end", created_at AS "createdAt",
               updated_at AS "updatedAt", version, recorded_at AS "recordedAt", deleted_at AS "deletedAt"
        FROM upsert_appointment_batch(${json}::text::jsonb, ${atomic}, ${attempt > 1})`;
      if (attempt > 1) onDeadlockResolved?.();
    } catch (error) {
      if (error instanceof postgres.PostgresError && error.code === DEADLOCK_DETECTED && attempt < ATTEMPTS) continue;
      throw error;
    }
  }
  // one row an item; an atomic batch that was refused: the refused item's row alone
  if (rows.length !== items.length && !(atomic && rows.length === 1))
    throw new Error(`upsert_appointment_batch answered ${rows.length} rows for ${items.length} items`);
  const outcomes = rows.map(toOutcome);
  if (atomic) {
    const refused = outcomes.find((o) => o.status === 'overlap' || o.status === 'precondition failed');
    if (refused?.status === 'overlap')
      throw new BatchItemRefusedError(refused.index, new AppointmentOverlapError(refused.conflictsWith));
    if (refused?.status === 'precondition failed')
      throw new BatchItemRefusedError(refused.index, new PreconditionFailedError(refused.current));
  }
  return outcomes;
}

function toOutcome(row: BatchRow): BatchOutcome {
  const { item: index, status, deletedAt, ...appointment } = row;
  // no appointment: every column is NULL
  const present = appointment.id !== null;
  if (present) withAppointmentTimes(appointment);
  switch (status) {
    case 'overlap':
      return {
        index,
        status,
        conflictsWith: present ? { id: appointment.id, start: appointment.start, end: appointment.end } : null,
      };
    case 'precondition failed':
      return { index, status, current: present ? appointment : null };
    default:
      return { index, status, appointment: deletedAt === null ? appointment : { ...appointment, deletedAt } };
  }
}
