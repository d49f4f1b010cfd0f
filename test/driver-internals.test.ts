import { readFileSync } from 'node:fs';
import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../scripts/lib/time.js';
import { createTestDatabase } from './support/database.js';

// The pool's gate (boundedPool in src/db/client.ts) relies on postgres.js internals that the driver's
// documentation does not promise: the `handler` a query runs through when first awaited, and its own
// `reject`. package.json pins the driver's exact version; this file fails when an upgrade changes
// either, before the gate silently stops bounding the pool.

interface Internals {
  handler: (query: Internals) => unknown;
  reject(error: unknown): void;
}
const internals = (query: unknown) => query as Internals;
const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;

describe('the postgres.js internals the pool gate relies on', () => {
  let databaseUrl: string;
  let admin: Sql;
  beforeAll(async () => {
    databaseUrl = await createTestDatabase({ empty: true });
    admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  });
  afterAll(() => admin?.end());

  it('the installed driver is the exact version package.json pins', () => {
    const pinned = (readJson('package.json').dependencies as Record<string, string>).postgres;
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(readJson('node_modules/postgres/package.json').version).toBe(pinned);
  });

  it('a query runs through its own handler once, when first awaited; a fragment nested in another never', async () => {
    const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
    try {
      const calls: string[] = [];
      const spy = (query: unknown, name: string) => {
        const q = internals(query);
        expect(typeof q.handler).toBe('function');
        const run = q.handler;
        q.handler = (x) => {
          calls.push(name);
          return run(x);
        };
        return query;
      };
      const one = spy(sql`SELECT 1 AS one`, 'one') as ReturnType<Sql>;
      const fragment = spy(sql`2`, 'fragment') as ReturnType<Sql>;
      const two = spy(sql`SELECT ${fragment}::int AS two`, 'two') as ReturnType<Sql>;
      await sleep(20);
      expect(calls).toEqual([]);
      expect(await one).toEqual([{ one: 1 }]);
      expect(await one).toEqual([{ one: 1 }]);
      expect(await two).toEqual([{ two: 2 }]);
      expect(calls).toEqual(['one', 'two']);
    } finally {
      await sql.end();
    }
  });

  it('reject settles a query whose handler never ran, and nothing is sent for it', async () => {
    const sent: string[] = [];
    const sql = postgres(databaseUrl, {
      max: 1,
      onnotice: () => {},
      debug: (_connection, query) => sent.push(query),
    });
    try {
      const query = sql`SELECT 7 AS seven`;
      const q = internals(query);
      // what the gate does for a query refused before it reaches a connection
      q.handler = (x) => x.reject(new Error('refused'));
      await expect(query).rejects.toThrow('refused');
      await sleep(20);
      expect(sent).toEqual([]);
      // the pool serves the next query
      expect([...(await sql`SELECT 8 AS eight`)]).toEqual([{ eight: 8 }]);
    } finally {
      await sql.end();
    }
  });
});
