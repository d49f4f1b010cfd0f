import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import type { Sql } from 'postgres';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
const MIGRATIONS_TABLE = 'pgmigrations';
// Any fixed number; shared by every instance of the service that migrates this database.
const MIGRATION_LOCK_ID = 7_263_911_054;

/** The migrations this code expects, by name (file name without its extension), in order. */
export const EXPECTED_MIGRATIONS: readonly string[] = readdirSync(MIGRATIONS_DIR)
  .filter((file) => /\.(sql|js|ts)$/.test(file))
  .map((file) => path.parse(file).name)
  .sort();

/**
 * Applies the pending migrations. Safe when several instances start together: each waits for the
 * lock, and the later ones find nothing left to do (node-pg-migrate's own lock would make them fail).
 */
export async function migrate(databaseUrl: string, log: (message: string) => void): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'appointments-migrate' });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      migrationsTable: MIGRATIONS_TABLE,
      direction: 'up',
      noLock: true,
      checkOrder: true,
      log,
    });
  } finally {
    await client.end(); // ending the session releases the lock
  }
}

/** The expected migrations that the database has not applied. */
export async function pendingMigrations(sql: Sql): Promise<string[]> {
  const [{ exists }] = await sql<{ exists: boolean }[]>`SELECT to_regclass(${MIGRATIONS_TABLE}) IS NOT NULL AS exists`;
  if (!exists) return [...EXPECTED_MIGRATIONS];
  const applied = new Set(
    (await sql<{ name: string }[]>`SELECT name FROM ${sql(MIGRATIONS_TABLE)}`).map((row) => row.name),
  );
  return EXPECTED_MIGRATIONS.filter((name) => !applied.has(name));
}
