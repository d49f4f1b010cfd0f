import fc from 'fast-check';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getFreeBusy, type AvailabilityQuery } from '../src/db/availability.js';
import {
  AppointmentOverlapError,
  deleteAppointment,
  getAppointmentHistory,
  upsertAppointment,
} from '../src/db/appointments.js';
import { createSql } from '../src/db/client.js';
import { microsecondBefore } from '../scripts/lib/time.js';
import { availabilityCase, isoWeekdays, type AvailabilityCase } from './support/availability-arbitraries.js';
import { availabilityOracle } from './support/availability-oracle.js';
import { createTestDatabase } from './support/database.js';
import { newOrg } from './support/fixtures.js';

// getFreeBusy (src/db/availability.ts) against the brute-force oracle (test/support/availability-oracle.ts):
// PostgreSQL's zone rules and multirange arithmetic on one side, Node's Intl and piece-by-piece testing
// on the other. The route's own property test covers slots and the query string.

let sql: Sql;
beforeAll(async () => {
  sql = createSql({ databaseUrl: await createTestDatabase(), poolMax: 4 });
});
afterAll(() => sql.end());

async function writeCalendar(orgId: string, appointments: AvailabilityCase['appointments']) {
  let n = 0;
  for (const { start, end } of appointments) {
    const time = '2026-01-01T00:00:00.000Z';
    await upsertAppointment(sql, { orgId, id: `a${n++}`, start, end, createdAt: time, updatedAt: time });
  }
}

const queryOf = (orgId: string, c: AvailabilityCase): AvailabilityQuery => ({
  orgId,
  from: c.from,
  to: c.to,
  timeZone: c.timeZone,
  ...(c.hours === undefined ? {} : { hours: c.hours }),
  ...(c.days === undefined ? {} : { days: isoWeekdays(c.days) }),
});

describe('free/busy in SQL', () => {
  it('the issue examples: Berlin spring-forward and fall-back days', async () => {
    const orgId = newOrg('fb');
    await writeCalendar(orgId, [
      { start: '2026-03-29T08:00:00.000Z', end: '2026-03-29T09:00:00.000Z' },
      { start: '2026-03-29T09:00:00.000Z', end: '2026-03-29T10:00:00.000Z' },
    ]);
    const day = (
      hours: { start: number; end: number }[],
      date = '2026-03-28T23:00:00.000Z',
      next = '2026-03-29T22:00:00.000Z',
    ) => getFreeBusy(sql, { orgId, from: date, to: next, timeZone: 'Europe/Berlin', hours });
    expect(await day([{ start: 0, end: 1440 }])).toEqual({
      busy: [{ start: '2026-03-29T08:00:00.000Z', end: '2026-03-29T10:00:00.000Z' }],
      free: [
        { start: '2026-03-28T23:00:00.000Z', end: '2026-03-29T08:00:00.000Z' },
        { start: '2026-03-29T10:00:00.000Z', end: '2026-03-29T22:00:00.000Z' },
      ],
    });
    expect((await day([{ start: 60, end: 300 }])).free).toEqual([
      { start: '2026-03-29T00:00:00.000Z', end: '2026-03-29T03:00:00.000Z' },
    ]);
    expect((await day([{ start: 540, end: 1020 }])).free).toEqual([
      { start: '2026-03-29T07:00:00.000Z', end: '2026-03-29T08:00:00.000Z' },
      { start: '2026-03-29T10:00:00.000Z', end: '2026-03-29T15:00:00.000Z' },
    ]);
    expect((await day([{ start: 150, end: 240 }])).free).toEqual([
      { start: '2026-03-29T01:30:00.000Z', end: '2026-03-29T02:00:00.000Z' },
    ]);
    expect((await day([{ start: 120, end: 180 }])).free).toEqual([]);
    const fallBack = await day([{ start: 150, end: 180 }], '2026-10-24T22:00:00.000Z', '2026-10-25T23:00:00.000Z');
    expect(fallBack.free).toEqual([{ start: '2026-10-25T00:30:00.000Z', end: '2026-10-25T02:00:00.000Z' }]);
  });

  it('equals the oracle on random calendars, windows, zones, hours and days', async () => {
    await fc.assert(
      fc.asyncProperty(availabilityCase, async (c) => {
        const orgId = newOrg('fbp');
        await writeCalendar(orgId, c.appointments);
        const { busy, free } = availabilityOracle(c);
        expect(await getFreeBusy(sql, queryOf(orgId, c))).toEqual({ busy, free });
      }),
      { numRuns: 150 },
    );
  });

  it('with at: equals the oracle on the snapshot at each instant of a recorded history', async () => {
    const edit = fc.record({
      id: fc.integer({ min: 0, max: 5 }),
      remove: fc.boolean(),
      start: fc.integer({ min: 0, max: 5 * 24 * 4 }),
      length: fc.integer({ min: 1, max: 16 }),
    });
    await fc.assert(
      fc.asyncProperty(availabilityCase, fc.array(edit, { minLength: 1, maxLength: 12 }), async (c, edits) => {
        const orgId = newOrg('fba');
        const base = Date.parse(c.from) - 24 * 3_600_000;
        let n = 0;
        for (const e of edits) {
          if (e.remove && n % 3 === 0) await deleteAppointment(sql, orgId, `h${e.id}`);
          else {
            const start = new Date(base + e.start * 15 * 60_000).toISOString();
            const end = new Date(base + (e.start + e.length) * 15 * 60_000).toISOString();
            const updatedAt = new Date(Date.parse('2026-01-01T00:00:00Z') + ++n * 1000).toISOString();
            await upsertAppointment(sql, { orgId, id: `h${e.id}`, start, end, createdAt: updatedAt, updatedAt }).catch(
              (error: unknown) => {
                if (!(error instanceof AppointmentOverlapError)) throw error;
              },
            );
          }
          n++;
        }
        const versions = (
          await Promise.all([0, 1, 2, 3, 4, 5].map((id) => getAppointmentHistory(sql, orgId, `h${id}`)))
        ).flat();
        const instants = new Set<string>();
        for (const v of versions) {
          for (const t of [v.validFrom, v.validTo]) if (t !== null) instants.add(t).add(microsecondBefore(t));
        }
        for (const at of instants) {
          const live = versions.filter((v) => v.validFrom <= at && (v.validTo === null || at < v.validTo));
          const { busy, free } = availabilityOracle({ ...c, appointments: live });
          expect(await getFreeBusy(sql, { ...queryOf(orgId, c), at })).toEqual({ busy, free });
        }
      }),
      { numRuns: 40 },
    );
  });
});
