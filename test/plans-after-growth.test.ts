import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  getAppointment,
  getAppointmentAt,
  getAppointmentHistory,
  listAppointments,
  listAppointmentsAt,
  upsertAppointment,
} from '../src/db/appointments.js';
import { upsertAppointmentBatch } from '../src/db/appointment-batch.js';
import { getFreeBusy } from '../src/db/availability.js';
import { PLANNING, timeAsText } from '../src/db/client.js';
import { createTestDatabase } from './support/database.js';

// The service has PostgreSQL plan each statement once per connection, for any parameters
// (PLANNING in client.ts), and a plan is kept until the table's statistics change. A database
// starts small: a connection that plans its statements while a table holds a few hundred rows, not yet
// analyzed, keeps those plans while the table grows, until autovacuum's ANALYZE (a minute or more
// later) makes it plan again. Statistics of many orgs of one appointment each put an org at one row
// too, while one org grows large among them. Such plans must still read a few index entries once an
// org is large, not every row of it: a plan that sorts an org's rows found through another index (what
// PostgreSQL chose here for the write's own check, the lists and availability while the exclusion
// constraint's index matched lookups by org) costs each call the whole org.

let databaseUrl: string;
let admin: Sql;
let session: Sql;
const notices: string[] = [];

const SMALL = 300;
const GROWN = 20_000;

interface PlanNode {
  'Node Type': string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}
const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];
/** Rows the scans of the statements logged meanwhile read, the ones their filters dropped included. */
const rowsRead = () =>
  notices
    .map((notice) => nodes((JSON.parse(notice.slice(notice.indexOf('{'))) as { Plan: PlanNode }).Plan))
    .flat()
    .filter((n) => n['Relation Name'] === 'appointments' || n['Relation Name'] === 'appointment_versions')
    .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0), 0);

const write = (orgId: string, id: string, hour: number, updatedAt = '2019-01-01T00:00:00.000Z') =>
  upsertAppointment(session, {
    orgId,
    id,
    start: new Date(Date.UTC(2035, 0, 1) + hour * 3_600_000).toISOString(),
    end: new Date(Date.UTC(2035, 0, 1) + hour * 3_600_000 + 1_800_000).toISOString(),
    createdAt: '2019-01-01T00:00:00.000Z',
    updatedAt,
  });

/** The service's reads and writes, on one org. */
const calls = (orgId: string): Array<[string, () => Promise<unknown>]> => [
  ['create', () => write(orgId, `new-${orgId}`, 1_000_000)],
  ['update', () => write(orgId, `new-${orgId}`, 1_000_000, '2019-06-01T00:00:00.000Z')],
  ['list', () => listAppointments(session, { orgId, limit: 100 })],
  [
    'list from',
    () => listAppointments(session, { orgId, limit: 100, from: new Date(Date.UTC(2035, 0, 10)).toISOString() }),
  ],
  ['list at', () => listAppointmentsAt(session, { orgId, limit: 100, at: '2030-01-01T00:00:00.000000Z' })],
  ['one', () => getAppointment(session, orgId, 'a17')],
  ['one at', () => getAppointmentAt(session, orgId, 'a17', '2030-01-01T00:00:00.000000Z')],
  ['history', () => getAppointmentHistory(session, orgId, 'a17')],
  [
    'availability',
    () =>
      getFreeBusy(session, {
        orgId,
        from: '2035-01-08T00:00:00.000Z',
        to: '2035-01-09T00:00:00.000Z',
        timeZone: 'UTC',
      }),
  ],
  [
    'availability at',
    () =>
      getFreeBusy(session, {
        orgId,
        from: '2035-01-08T00:00:00.000Z',
        to: '2035-01-09T00:00:00.000Z',
        at: '2030-01-01T00:00:00.000000Z',
        timeZone: 'UTC',
      }),
  ],
  [
    'batch',
    () =>
      upsertAppointmentBatch(
        session,
        [0, 1].map((k) => ({
          index: k,
          orgId,
          id: `batch-${orgId}-${k}`,
          start: new Date(Date.UTC(2035, 0, 1) + (2_000_000 + k) * 3_600_000).toISOString(),
          end: new Date(Date.UTC(2035, 0, 1) + (2_000_000 + k) * 3_600_000 + 1_800_000).toISOString(),
          createdAt: '2019-01-01T00:00:00.000Z',
          updatedAt: '2019-01-01T00:00:00.000Z',
        })),
        false,
      ),
  ],
];

/** An org's calendar, one appointment an hour from 2035-01-01, written in one statement. */
const seed = (orgId: string, n: number) => admin`
  INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
  SELECT ${orgId}, 'a' || i, timestamptz '2035-01-01' + i * interval '1 hour',
         timestamptz '2035-01-01' + i * interval '1 hour' + interval '30 minutes',
         timestamptz '2019-01-01', timestamptz '2019-01-01', 1, timestamptz '2026-01-01' + i * interval '1 millisecond'
  FROM generate_series(1, ${n}::int) AS i`;

/** One appointment in each of `n` orgs, `tiny-1` to `tiny-<n>`. */
const seedTinyOrgs = (n: number) => admin`
  INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
  SELECT 'tiny-' || i, 't' || i, timestamptz '2035-01-01', timestamptz '2035-01-01 00:30', timestamptz '2019-01-01',
         timestamptz '2019-01-01', 1, timestamptz '2026-01-01'
  FROM generate_series(1, ${n}::int) AS i`;

// Three starts: a database's first minute (an org of 300 rows, no statistics yet); many orgs of one
// appointment each, analyzed (statistics that put an org at one row); a large org and a small one,
// analyzed (statistics that put an org at half the table, so that a scan of the whole table that stops
// early can look cheap).
const starts: Array<{ name: string; smallOrg: string; analyzed: boolean; fill: () => Promise<unknown> }> = [
  { name: 'while the tables were small', smallOrg: 'small', analyzed: false, fill: () => seed('small', SMALL) },
  {
    name: 'on statistics of 3000 orgs of one appointment',
    smallOrg: 'tiny-1',
    analyzed: true,
    fill: async () => {
      await seedTinyOrgs(3_000);
      await admin`ANALYZE appointments, appointment_versions`;
    },
  },
  {
    name: 'on statistics of a large org and a small one',
    smallOrg: 'small',
    analyzed: true,
    fill: async () => {
      await seed('other', GROWN);
      await seed('small', SMALL);
      await admin`ANALYZE appointments, appointment_versions`;
    },
  },
];

for (const start of starts) {
  describe(`plans made ${start.name}, once an org is large`, () => {
    beforeAll(async () => {
      notices.length = 0;
      databaseUrl = await createTestDatabase();
      admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
      // no ANALYZE during the test: the statistics stay those of the small tables
      await admin`ALTER TABLE appointments SET (autovacuum_enabled = false)`;
      await admin`ALTER TABLE appointment_versions SET (autovacuum_enabled = false)`;
      await start.fill();
      session = postgres(databaseUrl, {
        max: 1,
        onnotice: (notice) => notices.push(notice.message),
        types: { timeAsText },
        connection: { TimeZone: 'UTC', DateStyle: 'ISO', ...PLANNING },
      });
      await session`LOAD 'auto_explain'`;
      await session.unsafe(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
        SET auto_explain.log_timing = off; SET auto_explain.log_format = json; SET auto_explain.log_level = notice;
        SET auto_explain.log_nested_statements = on`);
      // every statement planned now, while the tables are small
      for (const [, run] of calls(start.smallOrg)) await run();
      await seed('big', GROWN);
    });

    afterAll(async () => {
      await session?.end();
      await admin?.end();
    });

    it('the session kept its plans: nothing analyzed the tables once they grew', async () => {
      const [row] = await admin<{ analyzed: number; autoanalyzed: number }[]>`
        SELECT count(*) FILTER (WHERE last_analyze IS NOT NULL)::int AS analyzed,
               count(*) FILTER (WHERE last_autoanalyze IS NOT NULL)::int AS autoanalyzed
        FROM pg_stat_user_tables WHERE relname IN ('appointments', 'appointment_versions')`;
      expect(row).toEqual({ analyzed: start.analyzed ? 2 : 0, autoanalyzed: 0 });
    });

    for (const [org, name, run] of [
      ...calls('big').map(([name, run]) => ['big', name, run] as const),
      ...calls(start.smallOrg).map(([name, run]) => [start.smallOrg, name, run] as const),
    ]) {
      it(`${name} in ${org} reads a few index entries, not the org of ${GROWN} appointments`, async () => {
        notices.length = 0;
        await run();
        expect(notices.length).toBeGreaterThan(0);
        // a page of 100 (and the row before it), a day of availability, a few entries a statement; a
        // point-in-time read also counts the org's current rows recorded by the instant, up to ten pages
        const read = rowsRead();
        // on failure, the plans themselves say which index was walked
        expect(read, notices.join('\n')).toBeLessThanOrEqual(name.endsWith(' at') ? 1_250 : 250);
      });
    }
  });
}
