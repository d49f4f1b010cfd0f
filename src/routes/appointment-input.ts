import type { AppointmentWrite } from '../db/appointments.js';
import { badRequest } from '../errors.js';
import { DEFAULT_ORG_ID, type AppointmentInput } from '../schemas/appointments.js';
import { parseTime, type TimePrecision } from '../schemas/time.js';

// A validated body (or batch item) as the database functions take it: shared by the single POST and the batch.

/** A time the schema has validated already, in canonical form. */
export const canonical = (time: string, precision: TimePrecision) => parseTime(time, precision)!;

/** `where` names the input in the message of a 400: `body`, or `body/appointments/3` in a batch. */
export function toWrite(body: AppointmentInput, where = 'body'): AppointmentWrite {
  const write = {
    orgId: body.orgId ?? DEFAULT_ORG_ID,
    id: String(body.id),
    start: canonical(body.start, 3),
    end: canonical(body.end, 3),
    createdAt: canonical(body.createdAt, 3),
    updatedAt: canonical(body.updatedAt, 3),
  };
  if (write.start >= write.end) throw badRequest(`${where}/end must be after ${where}/start`);
  return write;
}
