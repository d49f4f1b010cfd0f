import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findOverlappingAppointment,
  getAppointment,
  getAppointmentAt,
  getAppointmentHistory,
  listAppointments,
  listAppointmentsAt,
  upsertAppointment,
  AppointmentOverlapError,
} from '../src/db/appointments.js';
import { getFreeBusy } from '../src/db/availability.js';
import { timeAsText } from '../src/db/client.js';
import { createTestDatabase } from './support/database.js';

// Every GET must be served by an index. The queries are the service's own (src/db/appointments.ts),
// run as the service runs them, on tables of a realistic size; auto_explain sends each one's plan,
// with the rows each step actually read, back to this connection as a notice. The service has
// PostgreSQL plan its statements once, without their parameters (plan_cache_mode in client.ts); the
// plans must hold in that mode and in the other, a plan made for the parameters of each call.

let databaseUrl: string;
let admin: Sql;
let capturing: Sql;
const notices: string[] = [];
const PLAN_MODES = ['force_generic_plan', 'force_custom_plan'] as const;

const ORGS = 50;
const PER_ORG = 2_000; // 100 000 current appointments
const VERSIONS_PER_APPOINTMENT = 3; // 300 000 rows of history

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  // Appointments of 30 minutes, one an hour; each with earlier versions in other slots of its org.
  await admin`
    INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
    SELECT 'org-' || o, 'a' || i,
           timestamptz '2020-01-01' + i * interval '1 hour',
           timestamptz '2020-01-01' + i * interval '1 hour' + interval '30 minutes',
           timestamptz '2019-01-01', timestamptz '2019-06-01', ${VERSIONS_PER_APPOINTMENT + 1},
           timestamptz '2026-01-01' + (i * ${ORGS} + o) * interval '1 second'
    FROM generate_series(1, ${ORGS}) AS o, generate_series(1, ${PER_ORG}) AS i`;
  await admin`
    INSERT INTO appointment_versions
    SELECT 'org-' || o, 'a' || i, v,
           timestamptz '2010-01-01' + (i * 10 + v) * interval '1 hour',
           timestamptz '2010-01-01' + (i * 10 + v) * interval '1 hour' + interval '30 minutes',
           timestamptz '2019-01-01', timestamptz '2019-01-01' + v * interval '1 day',
           timestamptz '2025-01-01' + ((i * ${ORGS} + o) * 10 + v) * interval '1 second',
           timestamptz '2025-01-01' + ((i * ${ORGS} + o) * 10 + v + 1) * interval '1 second',
           false
    FROM generate_series(1, ${ORGS}) AS o, generate_series(1, ${PER_ORG}) AS i, generate_series(1, ${VERSIONS_PER_APPOINTMENT}) AS v`;
  // an org whose calendar was all written after everyone else's
  await admin`
    INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
    SELECT 'late-org', 'a' || i, timestamptz '2020-01-01' + i * interval '1 hour',
           timestamptz '2020-01-01' + i * interval '1 hour' + interval '30 minutes',
           timestamptz '2019-01-01', timestamptz '2019-06-01', 1, timestamptz '2027-01-01' + i * interval '1 second'
    FROM generate_series(1, ${PER_ORG}) AS i`;
  await admin`ANALYZE appointments`;
  await admin`ANALYZE appointment_versions`;
  capturing = postgres(databaseUrl, {
    max: 1,
    onnotice: (notice) => notices.push(notice.message),
    types: { timeAsText },
    connection: { TimeZone: 'UTC', DateStyle: 'ISO' },
  });
  await capturing`LOAD 'auto_explain'`;
  await capturing.unsafe(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
    SET auto_explain.log_timing = off; SET auto_explain.log_format = json; SET auto_explain.log_level = notice`);
});

afterAll(async () => {
  await capturing?.end();
  await admin?.end();
});

interface PlanNode {
  'Node Type': string;
  'Actual Rows'?: number;
  'Rows Removed by Filter'?: number;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Function Name'?: string;
  Plans?: PlanNode[];
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

/** The plan of the statement `run` sends, planned in `mode`. */
async function planOf(mode: (typeof PLAN_MODES)[number], run: () => Promise<unknown>): Promise<PlanNode[]> {
  await capturing.unsafe(`SET plan_cache_mode = ${mode}`);
  notices.length = 0;
  await run();
  // one notice a statement, nested ones (SQL functions evaluated while planning) first: the last is the query's
  const notice = notices.at(-1);
  expect(notice).toMatch(/plan:/);
  return nodes((JSON.parse(notice!.slice(notice!.indexOf('{'))) as { Plan: PlanNode }).Plan);
}

const seqScans = (plan: PlanNode[]) => plan.filter((n) => n['Node Type'] === 'Seq Scan').map((n) => n['Relation Name']);
const indexesUsed = (plan: PlanNode[]) => plan.flatMap((n) => (n['Index Name'] ? [n['Index Name']] : []));
// The SQL functions of src/db/functions that queries call (last_appointment_starting_before, ...) are
// inlined, planned as part of the query; a function scan would hide their index from the planner.
const functionScans = (plan: PlanNode[]) =>
  plan.filter((n) => n['Node Type'] === 'Function Scan').map((n) => n['Function Name']);

describe('every read is served by an index', () => {
  const orgId = 'org-7';
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['list', () => listAppointments(capturing, { orgId, limit: 100 })],
    [
      'list from/to',
      () =>
        listAppointments(capturing, {
          orgId,
          limit: 100,
          from: '2020-02-01T00:00:00.000Z',
          to: '2020-02-03T00:00:00.000Z',
        }),
    ],
    [
      'list next page',
      () =>
        listAppointments(capturing, { orgId, limit: 100, after: { start: '2020-02-01T00:00:00.000Z', id: 'a744' } }),
    ],
    ['list at', () => listAppointmentsAt(capturing, { orgId, limit: 100, at: '2025-01-02T00:00:00.000000Z' })],
    [
      'list at from/to',
      () =>
        listAppointmentsAt(capturing, {
          orgId,
          limit: 100,
          at: '2025-01-02T00:00:00.000000Z',
          from: '2010-02-01T00:00:00.000Z',
          to: '2010-03-01T00:00:00.000Z',
        }),
    ],
    [
      'availability',
      () =>
        getFreeBusy(capturing, {
          orgId,
          from: '2020-02-03T00:00:00.000Z',
          to: '2020-02-10T00:00:00.000Z',
          timeZone: 'Europe/Berlin',
          hours: [{ start: 540, end: 1020 }],
          days: [1, 2, 3, 4, 5],
        }),
    ],
    [
      'availability at',
      () =>
        getFreeBusy(capturing, {
          orgId,
          from: '2010-02-01T00:00:00.000Z',
          to: '2010-02-08T00:00:00.000Z',
          at: '2025-01-02T00:00:00.000000Z',
          timeZone: 'UTC',
        }),
    ],
    [
      'availability at, most rows recorded',
      () =>
        getFreeBusy(capturing, {
          orgId,
          from: '2020-02-03T00:00:00.000Z',
          to: '2020-02-10T00:00:00.000Z',
          at: '2026-12-31T00:00:00.000000Z',
          timeZone: 'UTC',
        }),
    ],
    ['one', () => getAppointment(capturing, orgId, 'a17')],
    ['one at', () => getAppointmentAt(capturing, orgId, 'a17', '2025-01-02T00:00:00.000000Z')],
    ['history', () => getAppointmentHistory(capturing, orgId, 'a17')],
    [
      'conflict lookup',
      () =>
        findOverlappingAppointment(capturing, {
          orgId,
          id: 'z',
          start: '2020-02-01T00:00:00.000Z',
          end: '2020-02-01T05:00:00.000Z',
          createdAt: '2020-01-01T00:00:00.000Z',
          updatedAt: '2020-01-01T00:00:00.000Z',
        }),
    ],
  ];
  for (const [name, run] of cases) {
    it.each(PLAN_MODES)(`${name}: no sequential scan (%s)`, async (mode) => {
      const plan = await planOf(mode, run);
      expect(seqScans(plan)).toEqual([]);
      expect(indexesUsed(plan).length).toBeGreaterThan(0);
      // availability expands opening hours with the built-in set functions (over days and ranges, not rows)
      const builtIn = name.startsWith('availability') ? [undefined, 'generate_series', 'unnest'] : [];
      expect(functionScans(plan).filter((f) => !builtIn.includes(f))).toEqual([]);
    });
  }

  // By that instant nearly every row of the table had been written, but none of this org's: none of
  // them may be read only to be dropped.
  it.each(PLAN_MODES)(
    "list at an instant before the org's current rows were written reads none of them (%s)",
    async (mode) => {
      const at = '2026-12-31T00:00:00.000000Z';
      const availability = () =>
        getFreeBusy(capturing, {
          orgId: 'late-org',
          from: '2020-03-01T00:00:00.000Z',
          to: '2020-03-08T00:00:00.000Z',
          at,
          timeZone: 'UTC',
        });
      for (const window of [
        {},
        { from: '2020-03-01T00:00:00.000Z' },
        { from: '2020-03-01T00:00:00.000Z', to: '2020-03-05T00:00:00.000Z' },
        'availability' as const,
      ]) {
        const plan = await planOf(mode, () =>
          window === 'availability'
            ? availability()
            : listAppointmentsAt(capturing, { orgId: 'late-org', limit: 100, at, ...window }),
        );
        const currentRowsRead = plan
          .filter((n) => n['Relation Name'] === 'appointments')
          .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0), 0);
        expect(currentRowsRead, JSON.stringify(window)).toBe(0);
      }
    },
  );

  it.each(PLAN_MODES)('availability: the current appointments are read through the start index (%s)', async (mode) => {
    const [, run] = cases.find(([name]) => name === 'availability')!;
    const plan = await planOf(mode, run);
    expect(indexesUsed(plan)).toContain('appointments_org_start');
    // the window's appointments and the last one before it: a week of one an hour, not the org
    const read = plan
      .filter((n) => n['Relation Name'] === 'appointments')
      .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0), 0);
    expect(read).toBeLessThanOrEqual(7 * 24 + 2);
  });

  it.each(PLAN_MODES)('list at: history is read through the timeline index, whatever the window (%s)', async (mode) => {
    for (const [, run] of cases.filter(([name]) => name.startsWith('list at') || name.startsWith('availability at'))) {
      expect(indexesUsed(await planOf(mode, run))).toContain('appointment_versions_timeline');
    }
  });
});

describe('refused writes', () => {
  // org-7's last appointment, a2000, runs 2020-03-24 08:00 to 08:30 (one an hour from 2020-01-01 01:00)
  const late = {
    orgId: 'org-7',
    start: '2020-03-24T08:10:00.000Z',
    end: '2020-03-24T09:10:00.000Z',
    createdAt: '2020-01-01T00:00:00.000Z',
    updatedAt: '2020-01-01T00:00:00.000Z',
  };

  it.each(PLAN_MODES)(
    'finding the appointment in the way reads a few index entries, not the org (%s)',
    async (mode) => {
      const plan = await planOf(mode, () => findOverlappingAppointment(capturing, { ...late, id: 'z' }));
      const read = plan
        .filter((n) => n['Index Name'])
        .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0), 0);
      expect(read).toBeLessThanOrEqual(3);
      expect(await findOverlappingAppointment(capturing, { ...late, id: 'z' })).toEqual({
        id: 'a2000',
        start: '2020-03-24T08:00:00.000Z',
        end: '2020-03-24T08:30:00.000Z',
      });
    },
  );

  // The write's own check, run inside upsert_appointment: each of its statements (logged as nested
  // ones) has the SQL functions inlined and reads a few index entries, however large the org.
  it.each(PLAN_MODES)('the check that refuses a create reads a few index entries, not the org (%s)', async (mode) => {
    await capturing`SET auto_explain.log_nested_statements = on`;
    try {
      await capturing.unsafe(`SET plan_cache_mode = ${mode}`);
      notices.length = 0;
      const refusal = await upsertAppointment(capturing, { ...late, id: 'z' }).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(AppointmentOverlapError);
      expect((refusal as AppointmentOverlapError).conflictsWith).toEqual({
        id: 'a2000',
        start: '2020-03-24T08:00:00.000Z',
        end: '2020-03-24T08:30:00.000Z',
      });
      const plans = notices.map((notice) =>
        nodes((JSON.parse(notice.slice(notice.indexOf('{'))) as { Plan: PlanNode }).Plan),
      );
      const nested = plans.slice(0, -1); // the last is the statement the service sent
      expect(nested.length).toBeGreaterThan(0);
      for (const plan of nested) {
        expect(functionScans(plan)).toEqual([]);
        expect(seqScans(plan)).toEqual([]);
        const read = plan
          .filter((n) => n['Index Name'])
          .reduce((sum, n) => sum + (n['Actual Rows'] ?? 0) + (n['Rows Removed by Filter'] ?? 0), 0);
        expect(read).toBeLessThanOrEqual(3);
      }
      expect(functionScans(plans.at(-1)!)).toEqual(['upsert_appointment']);
    } finally {
      await capturing`SET auto_explain.log_nested_statements = off`;
    }
  });

  // A refused INSERT leaves a dead row and dead index entries that every later check in that range
  // visits until a vacuum; a create in the way of a committed appointment must not insert at all.
  it('a create refused for a committed appointment in its way inserts no row, not even a dead one', async () => {
    const inserted = async () => {
      await capturing`SELECT pg_stat_force_next_flush()`;
      await capturing`SELECT pg_stat_clear_snapshot()`;
      const [row] = await capturing<
        { n: string }[]
      >`SELECT n_tup_ins::text AS n FROM pg_stat_user_tables WHERE relname = 'appointments'`;
      return Number(row!.n);
    };
    const before = await inserted();
    for (let i = 0; i < 5; i++) {
      await expect(upsertAppointment(capturing, { ...late, id: `refused-${i}` })).rejects.toBeInstanceOf(
        AppointmentOverlapError,
      );
    }
    expect(await inserted()).toBe(before);
    // the count does see an insert: a create in a free slot
    const free = { ...late, id: 'free', start: '2021-01-01T00:00:00.000Z', end: '2021-01-01T00:30:00.000Z' };
    expect((await upsertAppointment(capturing, free)).status).toBe('created');
    expect(await inserted()).toBe(before + 1);
  });
});
