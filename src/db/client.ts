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

export function createSql({ databaseUrl, poolMax }: DatabaseOptions): Sql {
  return postgres(databaseUrl, {
    max: poolMax,
    prepare: true,
    connect_timeout: 5,
    onnotice: () => {},
    types: { timeAsText },
    connection: {
      application_name: 'appointments-service',
      TimeZone: 'UTC',
      // Two overlapping inserts can wait on each other inside the exclusion check; PostgreSQL breaks
      // such a deadlock only after deadlock_timeout (1 s by default), and we answer it as an overlap.
      deadlock_timeout: '50ms',
    },
  });
}

/** Decorates the app with `sql`, a postgres.js pool, and ends the pool when the app closes. */
export const databasePlugin = fp<DatabaseOptions>(
  async (app, options) => {
    const sql = createSql(options);
    app.decorate('sql', sql);
    app.addHook('onClose', async () => {
      await sql.end({ timeout: 5 });
    });
  },
  { name: 'database' },
);
