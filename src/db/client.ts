import fp from 'fastify-plugin';
import postgres, { type Sql } from 'postgres';

declare module 'fastify' {
  interface FastifyInstance {
    sql: Sql;
  }
}

export interface DatabaseOptions {
  databaseUrl: string;
  poolMax: number;
}

/** Times travel as text both ways: no JavaScript Date, so no lost microseconds and no local time zone. */
const timeAsText = {
  to: 1184,
  from: [1082, 1114, 1184],
  serialize: (value: unknown) => (value instanceof Date ? value.toISOString() : String(value)),
  parse: (value: string) => value,
};

// Two overlapping inserts can wait on each other inside the exclusion check; PostgreSQL breaks such a
// deadlock only after deadlock_timeout (1 s by default), and we answer it as an overlap. Only a
// superuser (or, from PostgreSQL 15, a role granted SET on it) may change it: for another role an
// administrator can run ALTER ROLE ... SET deadlock_timeout = '50ms'.
const DEADLOCK_TIMEOUT = '50ms';

export function createSql({ databaseUrl, poolMax }: DatabaseOptions, setDeadlockTimeout = false): Sql {
  return postgres(databaseUrl, {
    max: poolMax,
    prepare: true,
    connect_timeout: 5,
    onnotice: () => {},
    types: { timeAsText },
    connection: {
      application_name: 'appointments-service',
      TimeZone: 'UTC',
      ...(setDeadlockTimeout ? { deadlock_timeout: DEADLOCK_TIMEOUT } : {}),
    },
  });
}

/** Whether this role may set deadlock_timeout; a connection asking for a setting it may not have fails. */
async function maySetDeadlockTimeout(databaseUrl: string): Promise<boolean> {
  const probe = postgres(databaseUrl, { max: 1, connect_timeout: 5, onnotice: () => {} });
  try {
    const [{ superuser, version }] = await probe<{ superuser: boolean; version: number }[]>`
      SELECT current_setting('is_superuser') = 'on' AS superuser, current_setting('server_version_num')::int AS version`;
    if (superuser) return true;
    if (version < 150000) return false;
    const [{ granted }] = await probe<{ granted: boolean }[]>`SELECT has_parameter_privilege('deadlock_timeout', 'SET') AS granted`;
    return granted;
  } finally {
    await probe.end();
  }
}

/** Decorates the app with `sql`, a postgres.js pool, and ends the pool when the app closes. */
export const databasePlugin = fp<DatabaseOptions>(
  async (app, options) => {
    let setDeadlockTimeout = false;
    try {
      setDeadlockTimeout = await maySetDeadlockTimeout(options.databaseUrl);
      if (!setDeadlockTimeout) app.log.warn("this role may not set deadlock_timeout: writers that deadlock wait for the server's setting");
    } catch (error) {
      app.log.warn({ err: error }, 'could not check the database role; deadlock_timeout stays as the server sets it');
    }
    const sql = createSql(options, setDeadlockTimeout);
    app.decorate('sql', sql);
    app.addHook('onClose', async () => {
      await sql.end({ timeout: 5 });
    });
  },
  { name: 'database' },
);
