import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import postgres, { type Sql } from 'postgres';
import { buildApp } from '../../src/app.js';
import { configWith, type Config } from '../../src/config.js';
import { createTestDatabase } from './database.js';

export interface TestServer {
  app: FastifyInstance;
  /** http://127.0.0.1:port */
  baseUrl: string;
  /** The server's database, a copy of the migrated template of its own. */
  databaseUrl: string;
  /** A direct connection to the server's database, for assertions on what is stored. */
  sql: Sql;
  close(): Promise<void>;
}

/** The real app on a real port, against a database of its own. */
export async function startTestServer(options: Partial<Config> = {}): Promise<TestServer> {
  const databaseUrl = await createTestDatabase();
  const app = await buildApp({
    ...configWith({ dbPoolMax: 20, ...options }),
    databaseUrl,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const sql = postgres(databaseUrl, {
    max: 4,
    onnotice: () => {},
    // timestamptz exactly as PostgreSQL prints it, unlike the service's pool (db/client.ts), so that
    // tests read what is stored without the service's formatting in between
    types: { rawTimestamptz: { to: 1184, from: [1184], serialize: String, parse: (x: string) => x } },
  });
  return {
    app,
    baseUrl: `http://127.0.0.1:${port}`,
    databaseUrl,
    sql,
    async close() {
      await app.close();
      await sql.end();
    },
  };
}
