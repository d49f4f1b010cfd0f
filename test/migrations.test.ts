import { runner } from 'node-pg-migrate';
import pg from 'pg';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { EXPECTED_MIGRATIONS, MIGRATIONS_DIR, migrate, pendingMigrations } from '../src/db/migrations.js';
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
      expect(await pendingMigrations(sql)).toEqual([]);
      // and again later: nothing to do
      await migrate(url, () => {});
      expect(await sql`SELECT name FROM pgmigrations`).toHaveLength(EXPECTED_MIGRATIONS.length);
    } finally {
      await sql.end();
    }
  });

  it('report every migration pending on an empty database, and roll back cleanly', async () => {
    const url = await emptyDatabase();
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      expect(await pendingMigrations(sql)).toEqual(EXPECTED_MIGRATIONS);
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
      expect(await pendingMigrations(sql)).toEqual(EXPECTED_MIGRATIONS);
    } finally {
      await sql.end();
    }
  });
});
