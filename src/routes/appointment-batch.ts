import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifySchemaCompiler } from 'fastify';
import { upsertAppointmentBatch, type BatchOutcome, type BatchWrite } from '../db/appointment-batch.js';
import { ApiError, badRequest, describeValidationError } from '../errors.js';
import { appointmentEtag, ifMatchTags, parseEntityTags } from '../etags.js';
import { countWrite, outcomeOf } from '../metrics.js';
import { EXAMPLE_APPOINTMENT, type Appointment, type AppointmentInput } from '../schemas/appointments.js';
import {
  BatchEnvelope,
  BatchItemInput,
  BatchQuery,
  BatchRequest,
  BatchResponse,
  MAX_BATCH_ITEMS,
  type BatchItemError,
  type BatchResult,
} from '../schemas/batch.js';
import { ErrorCode, errorResponse, errorResponses, type ErrorResponse } from '../schemas/errors.js';
import { buildAjv } from '../validation.js';
import { toWrite } from './appointment-input.js';

// The same Ajv settings as a single POST's body (app.ts): no coercion, no silent removal.
const itemAjv = buildAjv({ coerceTypes: false });
const validateItem = itemAjv.compile(BatchItemInput);
const validateEnvelope = itemAjv.compile(BatchEnvelope);

const exampleAppointment = { ...EXAMPLE_APPOINTMENT, id: '2' } satisfies Appointment;

const ITEM_OVERLAP_MESSAGE = 'The appointment overlaps another appointment of the organization';
const ITEM_PRECONDITION_MESSAGE = 'The precondition failed: the appointment is not in the state the request expects';

/** An item as the database takes it, or why it is malformed. */
function parseItem(item: unknown, index: number): BatchWrite | { malformed: string } {
  const where = `body/appointments/${index}`;
  if (!validateItem(item)) return { malformed: describeValidationError(where, validateItem.errors ?? []) };
  const { ifMatch, ...input } = item as BatchItemInput;
  let write;
  try {
    write = toWrite(input as AppointmentInput, where);
  } catch (error) {
    if (error instanceof ApiError) return { malformed: error.message };
    throw error;
  }
  if (ifMatch === undefined) return { ...write, index };
  const tags = parseEntityTags(ifMatch);
  if (tags === null)
    return { malformed: `${where}/ifMatch must be * or entity tags as the ETag header carries them, quotes included` };
  return { ...write, index, ifMatch: ifMatchTags(tags) };
}

function toResult(outcome: BatchOutcome): BatchResult {
  switch (outcome.status) {
    case 'overlap':
      return rejected({
        statusCode: 409,
        code: ErrorCode.APPOINTMENT_OVERLAP,
        message: ITEM_OVERLAP_MESSAGE,
        conflictsWith: outcome.conflictsWith,
      });
    case 'precondition failed':
      return rejected({
        statusCode: 412,
        code: ErrorCode.PRECONDITION_FAILED,
        message: ITEM_PRECONDITION_MESSAGE,
        current: outcome.current,
      });
    default:
      return { status: outcome.status, appointment: outcome.appointment, etag: appointmentEtag(outcome.appointment) };
  }
}

const rejected = (error: BatchItemError): BatchResult => ({ status: 'rejected', error });

export const appointmentBatchRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // The body schema documents the items; only the envelope is validated before the handler, so that a
  // malformed item is that item's answer, not the batch's.
  const queryCompiler = app.validatorCompiler!;
  const validatorCompiler: FastifySchemaCompiler<unknown> = (route) =>
    route.httpPart === 'body' ? validateEnvelope : queryCompiler(route);

  app.post(
    '/batch',
    {
      validatorCompiler,
      schema: {
        operationId: 'upsertAppointmentBatch',
        tags: ['appointments'],
        summary: 'Create or update many appointments at once',
        description:
          `1 to ${MAX_BATCH_ITEMS} items, each the body of a single POST (and optionally \`ifMatch\`), applied in ` +
          'order, each as if sent alone at that moment: of two overlapping items the first wins, an id given twice ' +
          'is two writes in a row. One result per item, in order, with the status a single POST would give, or ' +
          '`rejected` with the error a single POST would answer (a malformed item names its index). One item ' +
          'refused leaves the others written, unless `atomic=true`. The body may be up to 1 MiB (1000 typical ' +
          "items take about 200 kB). With AUTH=required every item's orgId must be the key's (else 403 for the " +
          'whole batch, nothing written).',
        querystring: BatchQuery,
        body: BatchRequest,
        response: {
          200: {
            ...BatchResponse,
            description: 'One result per item, in order (with `atomic=true`: every item written)',
            examples: [
              {
                results: [
                  { status: 'created', appointment: exampleAppointment, etag: appointmentEtag(exampleAppointment) },
                  {
                    status: 'rejected',
                    error: {
                      statusCode: 409,
                      code: ErrorCode.APPOINTMENT_OVERLAP,
                      message: ITEM_OVERLAP_MESSAGE,
                      conflictsWith: { id: '1', start: exampleAppointment.start, end: exampleAppointment.end },
                    },
                  },
                ],
              },
            ],
          },
          ...errorResponses(400, 413, 415, 503),
          409: {
            ...errorResponse(409),
            description: 'With `atomic=true`: the item at `index` overlaps; nothing was written',
            examples: [
              {
                statusCode: 409,
                error: 'Conflict',
                code: ErrorCode.APPOINTMENT_OVERLAP,
                message: ITEM_OVERLAP_MESSAGE,
                conflictsWith: { id: '1', start: exampleAppointment.start, end: exampleAppointment.end },
                index: 1,
              } satisfies ErrorResponse,
            ],
          },
          412: {
            ...errorResponse(412),
            description: 'With `atomic=true`: the ifMatch of the item at `index` did not hold; nothing was written',
            examples: [
              {
                statusCode: 412,
                error: 'Precondition Failed',
                code: ErrorCode.PRECONDITION_FAILED,
                message: ITEM_PRECONDITION_MESSAGE,
                current: exampleAppointment,
                index: 0,
              } satisfies ErrorResponse,
            ],
          },
        },
      },
    },
    async (request) => {
      const items = (request.body as unknown as { appointments: unknown[] }).appointments;
      const atomic = request.query.atomic ?? false;
      const malformed = new Map<number, string>();
      const writes: BatchWrite[] = [];
      items.forEach((item, index) => {
        const parsed = parseItem(item, index);
        if ('malformed' in parsed) malformed.set(index, parsed.malformed);
        else writes.push(parsed);
      });
      // the lowest index first: items are parsed in order
      if (atomic && malformed.size > 0) throw badRequest(malformed.values().next().value!);
      const outcomes = await countWrite(
        app.metrics,
        upsertAppointmentBatch(app.sql, writes, atomic, () =>
          app.metrics.deadlocksResolved.inc({ operation: 'batch' }),
        ),
        (items) => items.map((item) => outcomeOf(item.status)),
      );
      const results: BatchResult[] = new Array(items.length);
      for (const [index, message] of malformed)
        results[index] = rejected({ statusCode: 400, code: ErrorCode.VALIDATION_ERROR, message });
      for (const outcome of outcomes) results[outcome.index] = toResult(outcome);
      // a result left out would otherwise fail in the serializer, which cannot say which
      const missing = results.findIndex((result) => result === undefined);
      if (missing !== -1) throw new Error(`the batch has no result for item ${missing} of ${items.length}`);
      return { results };
    },
  );
};
