import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Appointment } from '../src/schemas/appointments.js';
import { BatchResponse } from '../src/schemas/batch.js';
import { ChangesPage, DeleteChange, UpsertChange } from '../src/schemas/changes.js';
import { ErrorResponse } from '../src/schemas/errors.js';
import { buildSerializer, taggedUnionsAsConditions } from '../src/serialization.js';

// The service's responses are written by fast-json-stringify with its unions of tagged objects turned
// into if/then/else (src/serialization.ts): every value must come out as JSON.stringify writes it
// (the values below list their properties in the schemas' order, as the service builds them).

const shared = Object.fromEntries(
  [Appointment, UpsertChange, DeleteChange, ChangesPage, ErrorResponse].map((s) => [s.$id!, s]),
);
const serializerOf = (schema: unknown) =>
  buildSerializer(shared, {})({ schema, method: 'GET', url: '/', httpStatus: '200' } as { schema: unknown });

const time = fc
  .date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
  .map((d) => d.toISOString());
const systemTime = time.map((t) => `${t.slice(0, 23)}456Z`);
const text = fc.string({ maxLength: 12 });
const appointment = fc.record(
  {
    id: text,
    orgId: text,
    start: time,
    end: time,
    createdAt: time,
    updatedAt: time,
    version: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    recordedAt: systemTime,
    deletedAt: systemTime,
  },
  { requiredKeys: ['id', 'orgId', 'start', 'end', 'createdAt', 'updatedAt', 'version', 'recordedAt'] },
);
const change = fc.oneof(
  fc.record(
    {
      type: fc.constant('upsert'),
      id: text,
      version: fc.integer({ min: 1, max: 1000 }),
      recordedAt: systemTime,
      appointment,
      snapshot: fc.constant(true),
    },
    { requiredKeys: ['type', 'id', 'version', 'recordedAt', 'appointment'] },
  ),
  fc.record({
    type: fc.constant('delete'),
    id: text,
    version: fc.integer({ min: 1, max: 1000 }),
    recordedAt: systemTime,
  }),
);
const batchResult = fc.oneof(
  fc.record({
    status: fc.constantFrom('created', 'updated', 'unchanged', 'stale'),
    appointment,
    etag: text,
  }),
  fc.record({
    status: fc.constant('rejected'),
    error: fc.record(
      {
        statusCode: fc.constantFrom(400, 409, 412),
        code: fc.constantFrom('VALIDATION_ERROR', 'APPOINTMENT_OVERLAP', 'PRECONDITION_FAILED'),
        message: text,
        conflictsWith: fc.option(fc.record({ id: text, start: time, end: time })),
        current: fc.option(appointment),
      },
      { requiredKeys: ['statusCode', 'code', 'message'] },
    ),
  }),
);

const hasAnyOf = (schema: unknown): boolean =>
  typeof schema === 'object' && schema !== null && ('anyOf' in schema || Object.values(schema).some(hasAnyOf));

describe('responses with unions of tagged objects', () => {
  it('a page of changes tells upserts from deletes by `type`, not by checking each against the schemas', () => {
    const page = taggedUnionsAsConditions(ChangesPage, shared) as { properties: { changes: { items: unknown } } };
    expect(page.properties.changes.items).toMatchObject({
      if: { properties: { type: { const: 'upsert' } } },
      then: { $ref: 'UpsertChange' },
      else: { $ref: 'DeleteChange' },
    });
    expect(hasAnyOf(page.properties.changes)).toBe(false);
    // the schemas the documents are made of keep their anyOf
    expect(hasAnyOf(ChangesPage.properties.changes)).toBe(true);
  });

  it('a batch result is `rejected` or else written, by `status`', () => {
    const rewritten = taggedUnionsAsConditions(BatchResponse, shared) as {
      properties: { results: { items: unknown } };
    };
    expect(rewritten.properties.results.items).toMatchObject({
      if: { properties: { status: { const: 'rejected' } } },
      then: { title: 'BatchItemRejected' },
      else: { title: 'BatchItemWritten' },
    });
  });

  it('writes every page of changes and every batch as JSON.stringify does', () => {
    const page = serializerOf({ $ref: 'ChangesPage' });
    const batch = serializerOf(BatchResponse);
    fc.assert(
      fc.property(fc.array(change, { maxLength: 20 }), text, fc.boolean(), (changes, next, more) => {
        const value = { changes, next, more };
        expect(page(value)).toBe(JSON.stringify(value));
      }),
    );
    fc.assert(
      fc.property(fc.array(batchResult, { maxLength: 20 }), (results) => {
        expect(batch({ results })).toBe(JSON.stringify({ results }));
      }),
    );
  });
});
