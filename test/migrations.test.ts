import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import {
  EXPECTED_FUNCTIONS_HASH,
  EXPECTED_MIGRATIONS,
  MIGRATIONS_DIR,
  migrate,
  schemaState,
} from '../src/db/migrations.js';
import { createTestDatabase } from './support/database.js';

const emptyDatabase = () => createTestDatabase({ empty: true });

describe('migrations', () => {
  it('apply once when several instances migrate one empty database at the same moment', async () => {
    const url = await emptyDatabase();
    await Promise.all([migrate(url, () => {}), migrate(url, () => {}), migrate(url, () => {})]);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const applied = await sql<{ name: string }[]>`SELECT name FROM pgmigrations ORDER BY id`;
      expect(applied.map((m) => m.name)).toEqual(EXPECTED_MIGRATIONS);
      expect((await schemaState(sql)).pendingMigrations).toEqual([]);
      // the functions too, once
      expect(await sql`SELECT hash FROM database_functions`).toEqual([{ hash: EXPECTED_FUNCTIONS_HASH }]);
      expect(await schemaState(sql)).toEqual({ pendingMigrations: [], functions: 'current' });
      // and again later: nothing to do
      await migrate(url, () => {});
      expect(await sql`SELECT name FROM pgmigrations`).toHaveLength(EXPECTED_MIGRATIONS.length);
      expect(await sql`SELECT hash FROM database_functions`).toHaveLength(1);
    } finally {
      await sql.end();
    }
  });

  it('report every migration pending on an empty database, and roll back cleanly', async () => {
    const url = await emptyDatabase();
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      expect((await schemaState(sql)).pendingMigrations).toEqual(EXPECTED_MIGRATIONS);
      await migrate(url, () => {});
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await runner({
          dbClient: client,
          dir: MIGRATIONS_DIR,
          migrationsTable: 'pgmigrations',
          direction: 'down',
          count: Infinity,
          log: () => {},
        });
      } finally {
        await client.end();
      }
      const [{ tables }] = await sql<{ tables: number }[]>`
        SELECT count(*)::int AS tables FROM pg_tables WHERE tablename IN ('appointments', 'appointment_versions')`;
      expect(tables).toBe(0);
      const [{ functions }] = await sql<{ functions: number }[]>`
        SELECT count(*)::int AS functions FROM pg_proc p
        WHERE pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') -- btree_gist's stay`;
      expect(functions).toBe(0);
      expect((await schemaState(sql)).pendingMigrations).toEqual(EXPECTED_MIGRATIONS);
    } finally {
      await sql.end();
    }
  });

  it('roll the last migrations back to the schemas of the releases before, and forward again', async () => {
    const url = await emptyDatabase();
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    const client = new pg.Client({ connectionString: url });
    const down = () =>
      runner({
        dbClient: client,
        dir: MIGRATIONS_DIR,
        migrationsTable: 'pgmigrations',
        direction: 'down',
        count: 1,
        log: () => {},
      });
    const webhookTables = async () =>
      (
        await sql<{ tablename: string }[]>`
          SELECT tablename FROM pg_tables WHERE tablename LIKE 'webhook%' ORDER BY tablename`
      ).map((t) => t.tablename);
    try {
      await migrate(url, () => {});
      expect(await webhookTables()).toEqual(['webhook_attempts', 'webhook_endpoints', 'webhook_messages']);
      await client.connect();
      // the overlap constraint's org key goes back to the column's collation
      const overlapConstraint = async () =>
        (
          await sql<{ def: string }[]>`
            SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'appointments_no_overlap'`
        )[0]!.def;
      expect(await overlapConstraint()).toMatch(/^EXCLUDE USING gist \(org_id COLLATE "C" WITH =,/);
      await down();
      expect(await overlapConstraint()).toMatch(/^EXCLUDE USING gist \(org_id WITH =,/);
      // the webhooks go, the change feed stays
      await down();
      expect(await webhookTables()).toEqual([]);
      const [{ feedColumns }] = await sql<{ feedColumns: number }[]>`
        SELECT count(*)::int AS "feedColumns" FROM information_schema.columns
        WHERE table_name = 'appointments' AND column_name LIKE 'feed%'`;
      expect(feedColumns).toBe(2);
      await down();
      // the previous release's tables and trigger, as they were: an update still moves its version to history
      const [{ columns }] = await sql<{ columns: number }[]>`
        SELECT count(*)::int AS columns FROM information_schema.columns WHERE column_name LIKE '%feed%'`;
      expect(columns).toBe(0);
      await sql`
        INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
        VALUES ('o', 'a', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-01', '2020-09-01', 1, '2026-01-01')`;
      await sql`UPDATE appointments SET version = 2, updated_at = '2020-09-02', recorded_at = '2026-01-02'`;
      await sql`UPDATE appointments SET deleted_at = '2026-01-03'`;
      expect(await sql`SELECT version, deleted FROM appointment_versions ORDER BY version`).toEqual([
        { version: 1, deleted: false },
        { version: 2, deleted: true },
      ]);

      // forward again: the history written before gets feed positions in the order it was recorded
      await migrate(url, () => {});
      expect(await schemaState(sql)).toEqual({ pendingMigrations: [], functions: 'current' });
      const positions = await sql<{ kind: string; xid: string; seq: string }[]>`
        SELECT 'begin ' || version AS kind, feed_xid::text AS xid, feed_seq::text AS seq FROM appointment_versions
        UNION ALL
        SELECT 'delete ' || version, deleted_feed_xid::text, deleted_feed_seq::text FROM appointment_versions WHERE deleted
        UNION ALL
        SELECT 'row', feed_xid::text, feed_seq::text FROM appointments
        ORDER BY seq, kind`;
      expect(positions).toEqual([
        { kind: 'begin 1', xid: '1', seq: '1' },
        { kind: 'begin 2', xid: '1', seq: '2' },
        { kind: 'delete 2', xid: '1', seq: '3' },
        { kind: 'row', xid: '1', seq: '3' },
      ]);
      const [refused] = await sql<{ status: string }[]>`
        SELECT status FROM upsert_appointment('o', 'b', '2020-10-10 10:30', '2020-10-10 11:30', '2020-09-01', '2020-09-01', false)`;
      expect(refused).toEqual({ status: 'created' });
      const [next] = await sql<{ seq: string }[]>`SELECT feed_seq::text AS seq FROM appointments WHERE id = 'b'`;
      expect(Number(next!.seq)).toBeGreaterThan(3);
    } finally {
      await client.end();
      await sql.end();
    }
  });

  // A migration can drop what the files define (a table dropped with CASCADE, a Down and its Up again)
  // while the files stay as they were: after any migration they are applied, whatever the hash says.
  it('apply the functions after any migration, even when the files are unchanged', async () => {
    const url = await emptyDatabase();
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(url, () => {});
      const migrationsDir = await mkdtemp(path.join(os.tmpdir(), 'appointments-migrations-'));
      await cp(MIGRATIONS_DIR, migrationsDir, { recursive: true });
      await writeFile(
        path.join(migrationsDir, '9999999999999_drop-a-function.sql'),
        '-- Up Migration\nDROP FUNCTION overlapping_appointment(text, timestamptz, timestamptz, text);\n',
      );
      await migrate(url, () => {}, { migrationsDir });
      const [{ exists }] = await sql<{ exists: boolean }[]>`
        SELECT to_regprocedure('overlapping_appointment(text, timestamptz, timestamptz, text)') IS NOT NULL AS exists`;
      expect(exists).toBe(true);
      expect(await sql`SELECT hash FROM database_functions`).toEqual([
        { hash: EXPECTED_FUNCTIONS_HASH },
        { hash: EXPECTED_FUNCTIONS_HASH },
      ]);
    } finally {
      await sql.end();
    }
  });
});
