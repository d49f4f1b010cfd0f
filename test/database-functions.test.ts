import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { AppointmentOverlapError, upsertAppointment } from '../src/db/appointments.js';
import { configWith } from '../src/config.js';
import { timeAsText } from '../src/db/client.js';
import { EXPECTED_FUNCTIONS_HASH, FUNCTIONS_DIR, migrate, schemaState } from '../src/db/migrations.js';
import { createTestDatabase } from './support/database.js';

// The functions of src/db/functions are applied by migrate() after the migrations, once per change of
// the files, and /ready tells when the database's functions are not this code's.

/** A copy of the function files, with `change` made to one of them. */
async function changedFunctions(file: string, change: (sql: string) => string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'appointments-functions-'));
  await cp(FUNCTIONS_DIR, dir, { recursive: true });
  const sql = await readFile(path.join(dir, file), 'utf8');
  const changed = change(sql);
  expect(changed).not.toBe(sql);
  await writeFile(path.join(dir, file), changed);
  return dir;
}

// The refused create answers with a status of another name: a change that shows in behaviour.
const renamedOverlap = () =>
  changedFunctions('upsert-appointment.sql', (sql) => sql.replace("status := 'overlap';", "status := 'in the way';"));

const applications = async (sql: Sql) =>
  sql<{ hash: string; files: string[] }[]>`SELECT hash, files FROM database_functions ORDER BY id`;

/** The status upsert_appointment answers for a create in the way of a committed appointment. */
async function refusedStatus(sql: Sql, orgId: string): Promise<string> {
  await sql`SELECT FROM upsert_appointment(${orgId}, 'a', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-01', '2020-09-01', false)`;
  const [row] = await sql<{ status: string }[]>`
    SELECT status FROM upsert_appointment(${orgId}, 'b', '2020-10-10 10:30', '2020-10-10 11:30', '2020-09-01', '2020-09-01', false)`;
  return row!.status;
}

const silent = () => {};

describe('database functions', () => {
  let url: string;
  let sql: Sql;
  beforeAll(async () => {
    url = await createTestDatabase();
    sql = postgres(url, { max: 2, onnotice: silent });
  });
  afterAll(() => sql.end());

  it('are applied again on the next start when a file has changed, and only then', async () => {
    expect(await applications(sql)).toEqual([expect.objectContaining({ hash: EXPECTED_FUNCTIONS_HASH })]);
    expect(await refusedStatus(sql, 'before')).toBe('overlap');

    const dir = await renamedOverlap();
    const log: string[] = [];
    await migrate(url, (message) => log.push(message), { functionsDir: dir });
    expect(log).toContain('> Applying upsert-appointment.sql');
    const [, changed] = await applications(sql);
    expect(changed!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(changed!.hash).not.toBe(EXPECTED_FUNCTIONS_HASH);
    expect(changed!.files).toEqual([
      'appointment-etag.sql',
      'appointments-feed-position.sql',
      'appointments-record-version.sql',
      'last-appointment-starting-before.sql',
      'lock-org-writes.sql',
      'overlapping-appointment.sql',
      'restart-change-feed.sql',
      'upsert-appointment-batch.sql',
      'upsert-appointment.sql',
    ]);
    const [{ source }] = await sql<{ source: string }[]>`
      SELECT prosrc AS source FROM pg_proc WHERE proname = 'upsert_appointment'`;
    expect(source).toContain("status := 'in the way';");
    expect(await refusedStatus(sql, 'changed')).toBe('in the way');
    expect((await schemaState(sql)).functions).toBe('adjacent');

    // the same files again: nothing to do
    log.length = 0;
    await migrate(url, (message) => log.push(message), { functionsDir: dir });
    expect(log.filter((line) => line.includes('Applying'))).toEqual([]);
    expect(await applications(sql)).toHaveLength(2);

    // this code starting again, as an instance of the release before does during a rolling upgrade,
    // leaves the later release's functions in place
    log.length = 0;
    expect(await migrate(url, (message) => log.push(message))).toEqual({ functions: 'left-to-a-later-release' });
    expect(log.filter((line) => line.includes('Applying'))).toEqual([]);
    expect(await refusedStatus(sql, 'restarted')).toBe('in the way');
    expect((await schemaState(sql)).functions).toBe('adjacent');

    // and `npm run migrate` of this code brings its own functions back (a rollback)
    expect(await migrate(url, silent, { restoreFunctions: true })).toEqual({ functions: 'applied' });
    expect((await applications(sql)).map((a) => a.hash)).toEqual([
      EXPECTED_FUNCTIONS_HASH,
      changed!.hash,
      EXPECTED_FUNCTIONS_HASH,
    ]);
    expect(await refusedStatus(sql, 'after')).toBe('overlap');
    expect((await schemaState(sql)).functions).toBe('current');
    expect(await migrate(url, silent, { restoreFunctions: true })).toEqual({ functions: 'unchanged' });
    expect(await migrate(url, silent)).toEqual({ functions: 'unchanged' });
  });

  it('are applied once when two instances start together with changed files', async () => {
    const before = (await applications(sql)).length;
    // files never applied before: a start applies only those
    const dir = await changedFunctions('lock-org-writes.sql', (text) => `${text}\n-- two instances\n`);
    await Promise.all([migrate(url, silent, { functionsDir: dir }), migrate(url, silent, { functionsDir: dir })]);
    const after = await applications(sql);
    expect(after).toHaveLength(before + 1);
    await migrate(url, silent, { restoreFunctions: true });
    expect(await applications(sql)).toHaveLength(before + 2);
    expect((await schemaState(sql)).functions).toBe('current');
  });

  it('are applied in one transaction: a file that fails leaves every function as it was', async () => {
    const before = await applications(sql);
    // a change to the first file, which applies, and a broken later one
    const dir = await changedFunctions('appointments-record-version.sql', (text) =>
      text.replace('RETURN OLD;', 'RETURN OLD; -- changed'),
    );
    await writeFile(
      path.join(dir, 'upsert-appointment.sql'),
      (await readFile(path.join(dir, 'upsert-appointment.sql'), 'utf8')).replace('RETURN NEXT;', 'RETURN NEXTT;'),
    );
    await expect(migrate(url, silent, { functionsDir: dir })).rejects.toThrow(/^upsert-appointment\.sql: /);
    const [{ source }] = await sql<{ source: string }[]>`
      SELECT prosrc AS source FROM pg_proc WHERE proname = 'appointments_record_version'`;
    expect(source).not.toContain('-- changed');
    expect(await applications(sql)).toEqual(before);
    expect(await refusedStatus(sql, 'unbroken')).toBe('overlap');
  });

  it('are left alone by code older than the database: a newer release has migrated it', async () => {
    const before = await applications(sql);
    const newer = '9999999999999_a-later-release';
    await sql`INSERT INTO pgmigrations (name, run_on) VALUES (${newer}, now())`;
    try {
      const log: string[] = [];
      await migrate(url, (message) => log.push(message), { functionsDir: await renamedOverlap() });
      expect(log.filter((line) => line.includes('Applying'))).toEqual([]);
      expect(log.join('\n')).toContain(newer);
      expect(await applications(sql)).toEqual(before);
      expect(await refusedStatus(sql, 'newer')).toBe('overlap');
    } finally {
      await sql`DELETE FROM pgmigrations WHERE name = ${newer}`;
    }
  });
});

describe('/ready and the database functions', () => {
  let url: string;
  let sql: Sql;
  let app: Awaited<ReturnType<typeof buildApp>>;
  beforeAll(async () => {
    url = await createTestDatabase();
    sql = postgres(url, { max: 1, onnotice: silent });
    app = await buildApp({ ...configWith({ dbPoolMax: 2 }), databaseUrl: url, logger: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    await app?.close();
    await sql?.end();
  });
  const ready = async () => {
    const res = await app.inject({ method: 'GET', url: '/ready' });
    return { status: res.statusCode, body: res.json() as unknown };
  };
  const differ = { status: 503, body: { status: 'unavailable', reason: 'database functions differ' } };
  const isReady = { status: 200, body: { status: 'ready' } };

  it('answers 200 beside the release just after or before, 503 beside any other release', async () => {
    expect(await ready()).toEqual(isReady);
    // a rolling upgrade: the next release applies its functions; this one keeps serving
    await migrate(url, silent, { functionsDir: await renamedOverlap() });
    expect(await ready()).toEqual(isReady);
    // and the one after it: two releases ahead
    await migrate(url, silent, {
      functionsDir: await changedFunctions('lock-org-writes.sql', (text) => `${text}\n-- a later release\n`),
    });
    expect(await ready()).toEqual(differ);
    // a rollback to this release: the next one's instances would be ready beside it, and this one is
    await migrate(url, silent, { restoreFunctions: true });
    expect(await ready()).toEqual(isReady);
  });

  it('answers 503 while the recorded hash is not the files’ one, and 200 after they are applied', async () => {
    await sql`UPDATE database_functions SET hash = repeat('0', 64) WHERE id = (SELECT max(id) FROM database_functions)`;
    expect(await ready()).toEqual(differ);
    await migrate(url, silent, { restoreFunctions: true });
    expect(await ready()).toEqual(isReady);
    await sql`DELETE FROM database_functions`;
    expect(await ready()).toEqual(differ);
    await migrate(url, silent);
    expect(await ready()).toEqual(isReady);
  });
});

describe('a refused create', () => {
  it('takes one statement: the write answers with the appointment in its way', async () => {
    const statements: string[] = [];
    const sql = postgres(await createTestDatabase(), {
      max: 1,
      onnotice: silent,
      types: { timeAsText },
      connection: { TimeZone: 'UTC', DateStyle: 'ISO' },
      debug: (_connection, query) => statements.push(query),
    });
    try {
      const write = {
        orgId: 'one-trip',
        createdAt: '2020-09-01T00:00:00.000Z',
        updatedAt: '2020-09-01T00:00:00.000Z',
      };
      await upsertAppointment(sql, {
        ...write,
        id: 'a',
        start: '2020-10-10T10:00:00.000Z',
        end: '2020-10-10T10:30:00.000Z',
      });
      await upsertAppointment(sql, {
        ...write,
        id: 'b',
        start: '2020-10-10T10:40:00.000Z',
        end: '2020-10-10T11:00:00.000Z',
      });
      statements.length = 0;
      const refusal = await upsertAppointment(sql, {
        ...write,
        id: 'c',
        start: '2020-10-10T10:15:00.000Z',
        end: '2020-10-10T10:50:00.000Z',
      }).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(AppointmentOverlapError);
      // the first in the way by start, although b is the one the check meets first
      expect((refusal as AppointmentOverlapError).conflictsWith).toEqual({
        id: 'a',
        start: '2020-10-10T10:00:00.000Z',
        end: '2020-10-10T10:30:00.000Z',
      });
      expect(statements).toHaveLength(1);
    } finally {
      await sql.end();
    }
  });
});
