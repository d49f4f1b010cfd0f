import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';
import type { Sql } from 'postgres';
import { hostLocator, parseDatabaseUrl } from './database-url.js';

// Both folders are found from the project root, two levels above this module: src/db/ when run from
// the sources, dist/db/ when compiled (tsc does not copy .sql files, so the service reads them in src/).
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));
export const FUNCTIONS_DIR = fileURLToPath(new URL('../../src/db/functions', import.meta.url));
const MIGRATIONS_TABLE = 'pgmigrations';
const FUNCTIONS_TABLE = 'database_functions';
// Any fixed number; shared by every instance of the service that migrates this database.
export const MIGRATION_LOCK_ID = 7_263_911_054;

/** The migrations of a folder, by name (file name without its extension), in order. */
const migrationNames = (dir: string): string[] =>
  readdirSync(dir)
    .filter((file) => /\.(sql|js|ts)$/.test(file))
    .map((file) => path.parse(file).name)
    .sort();

/** The migrations this code expects. */
export const EXPECTED_MIGRATIONS: readonly string[] = migrationNames(MIGRATIONS_DIR);

interface FunctionFile {
  name: string;
  sql: string;
}

/** The function files of a folder, in name order: the order they are applied in. */
function readFunctionFiles(dir: string): FunctionFile[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => ({ name, sql: readFileSync(path.join(dir, name), 'utf8') }));
}

/** sha256 over the files' names and contents, in name order. */
function hashOf(files: readonly FunctionFile[]): string {
  const hash = createHash('sha256');
  for (const file of files) hash.update(`${file.name}\0${file.sql}\0`);
  return hash.digest('hex');
}

/** The hash of the database functions this code expects (see schemaState). */
export const EXPECTED_FUNCTIONS_HASH = hashOf(readFunctionFiles(FUNCTIONS_DIR));

export interface MigrateOptions {
  /** The folder of the function files; a test points it at a changed copy. */
  functionsDir?: string;
  /** The folder of the migrations; a test adds one to a copy. */
  migrationsDir?: string;
  /**
   * Apply these function files even when a later application replaced them: a rollback to this
   * release, asked for by `npm run migrate`. The server's start never does (see applyFunctions).
   */
  restoreFunctions?: boolean;
}

export interface MigrateResult {
  /** What became of this code's function files; left: the database runs those of another release. */
  functions: 'applied' | 'unchanged' | 'left-to-a-later-release';
}

/**
 * Applies the pending migrations, then the database functions (one `CREATE OR REPLACE` a file in the
 * functions folder). Safe when several instances start together: each waits for the lock, and the later
 * ones find nothing left to do (node-pg-migrate's own lock would make them fail).
 */
export async function migrate(
  databaseUrl: string,
  log: (message: string) => void,
  { functionsDir = FUNCTIONS_DIR, migrationsDir = MIGRATIONS_DIR, restoreFunctions = false }: MigrateOptions = {},
): Promise<MigrateResult> {
  const functions = readFunctionFiles(functionsDir);
  // pg reads one host only: with several, the one that answers as target_session_attrs asks
  const url = parseDatabaseUrl(databaseUrl);
  const connectionString = url.hosts.length <= 1 ? databaseUrl : url.forHost(await hostLocator(url).locate());
  const client = new pg.Client({ connectionString, application_name: 'appointments-migrate' });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
    const ran = await runner({
      dbClient: client,
      dir: migrationsDir,
      migrationsTable: MIGRATIONS_TABLE,
      direction: 'up',
      noLock: true,
      checkOrder: true,
      log,
    });
    // A newer release has migrated this database (an older instance starting during a rolling
    // upgrade, or a rollback of the code alone): its functions fit that schema, these files may not.
    // They are left alone, and /ready says that the functions are not this code's.
    const known = new Set(migrationNames(migrationsDir));
    const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`);
    const newer = rows.map((row) => row.name).filter((name) => !known.has(name));
    if (newer.length > 0) {
      log(`the database has migrations this code does not know (${newer.join(', ')}): functions left as they are`);
      return { functions: 'left-to-a-later-release' };
    }
    // After a migration the files are applied whatever the recorded hash says: it may have dropped or
    // replaced a function they define (a migration's Down and Up again, a table dropped with CASCADE).
    const when = ran.length > 0 ? 'always' : restoreFunctions ? 'unless-last' : 'if-new';
    return { functions: await applyFunctions(client, functions, when, log) };
  } finally {
    await client.end(); // ending the session releases the lock
  }
}

/**
 * When the function files are applied, in one transaction, and logged with their hash:
 * - `always`: after a migration, whatever the log says (it may have dropped or replaced a function);
 * - `unless-last`: unless their hash is the last one logged (`npm run migrate`, also a rollback);
 * - `if-new`: only when their hash was never logged (the server's start). An instance of the release
 *   before, restarting during a rolling upgrade, then leaves the newer release's functions in place
 *   instead of taking them back from every instance of that release; its /ready accepts them.
 * Called under the migration lock, so two instances never both apply.
 */
async function applyFunctions(
  client: pg.Client,
  files: readonly FunctionFile[],
  when: 'always' | 'unless-last' | 'if-new',
  log: (message: string) => void,
): Promise<MigrateResult['functions']> {
  const hash = hashOf(files);
  const { rows } = await client.query<{ last: string | null; logged: boolean }>(
    `SELECT (SELECT hash FROM ${FUNCTIONS_TABLE} ORDER BY id DESC LIMIT 1) AS last,
            EXISTS (SELECT FROM ${FUNCTIONS_TABLE} WHERE hash = $1) AS logged`,
    [hash],
  );
  const { last, logged } = rows[0]!;
  if (when === 'unless-last' && last === hash) return 'unchanged';
  if (when === 'if-new' && logged) return last === hash ? 'unchanged' : 'left-to-a-later-release';
  await client.query('BEGIN');
  try {
    for (const file of files) {
      log(`> Applying ${file.name}`);
      try {
        await client.query(file.sql);
      } catch (error) {
        throw new Error(`${file.name}: ${(error as Error).message}`, { cause: error });
      }
    }
    await client.query(`INSERT INTO ${FUNCTIONS_TABLE} (hash, files) VALUES ($1, $2)`, [
      hash,
      files.map((file) => file.name),
    ]);
    await client.query('COMMIT');
    return 'applied';
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

export interface SchemaState {
  /** The expected migrations that the database has not applied. */
  pendingMigrations: string[];
  /**
   * Whose functions the database runs: this code's files (`current`), those of the release just after
   * or before it, applied last while this code's were the ones before (`adjacent`: a rolling upgrade
   * or a rollback, which function files keep compatible for one release), or others.
   */
  functions: 'current' | 'adjacent' | 'other';
}

/** What /ready asks of the database, in two short queries. */
export async function schemaState(sql: Sql): Promise<SchemaState> {
  const [tables] = await sql<{ migrations: boolean; functions: boolean }[]>`
    SELECT to_regclass(${MIGRATIONS_TABLE}) IS NOT NULL AS migrations,
           to_regclass(${FUNCTIONS_TABLE}) IS NOT NULL AS functions`;
  if (!tables.migrations) return { pendingMigrations: [...EXPECTED_MIGRATIONS], functions: 'other' };
  // the last hash logged, and the last one logged before it that differs from it
  const hashes = tables.functions
    ? sql`(WITH last AS (SELECT hash FROM ${sql(FUNCTIONS_TABLE)} ORDER BY id DESC LIMIT 1)
           SELECT ARRAY[(SELECT hash FROM last),
                        (SELECT hash FROM ${sql(FUNCTIONS_TABLE)} WHERE hash <> (SELECT hash FROM last)
                          ORDER BY id DESC LIMIT 1)])`
    : sql`ARRAY[]::text[]`;
  const [state] = await sql<{ applied: string[]; hashes: Array<string | null> }[]>`
    SELECT array(SELECT name FROM ${sql(MIGRATIONS_TABLE)}) AS applied, ${hashes} AS hashes`;
  const applied = new Set(state.applied);
  const [last, before] = state.hashes;
  return {
    pendingMigrations: EXPECTED_MIGRATIONS.filter((name) => !applied.has(name)),
    functions: last === EXPECTED_FUNCTIONS_HASH ? 'current' : before === EXPECTED_FUNCTIONS_HASH ? 'adjacent' : 'other',
  };
}
