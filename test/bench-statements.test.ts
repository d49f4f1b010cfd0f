import type { Sql } from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { createSql } from '../src/db/client.js';
import { baselineSender, createBaseline, PIECES, removePieces } from '../scripts/bench/statements.js';
import { directSender, type ScenarioRequest } from '../scripts/bench/load.js';
import { createTestDatabase } from './support/database.js';

// scripts/bench/statements.ts compares the service's write with a baseline that must keep the core
// rules (last writer wins, the tie-break, the old row kept in versions), and takes the service's
// pieces out one by one: both must still do what the benchmark says they do.

const pools: Sql[] = [];
afterAll(async () => {
  await Promise.all(pools.map((sql) => sql.end({ timeout: 5 })));
});
const open = async (empty: boolean) => {
  const sql = createSql({ databaseUrl: await createTestDatabase({ empty }), poolMax: 2 }, true);
  pools.push(sql);
  return sql;
};

const write = (id: string, start: string, end: string, updatedAt: string): ScenarioRequest => ({
  method: 'POST',
  path: '/api/appointments',
  body: { orgId: 'o', id, start, end, createdAt: '2030-01-01T00:00:00.000Z', updatedAt },
  expected: [200, 201],
});

describe('the statements baseline', () => {
  it('keeps last writer wins with the tie-break, and the old row in the versions table', async () => {
    const sql = await open(true);
    await createBaseline(sql);
    const send = baselineSender(sql);
    const [s, e, later] = ['2030-01-02T10:00:00.000Z', '2030-01-02T11:00:00.000Z', '2030-01-02T12:00:00.000Z'];
    expect(await send(write('a', s, e, '2030-01-01T01:00:00.000Z'))).toBe(201);
    // older: stale, nothing written
    expect(await send(write('a', s, later, '2030-01-01T00:30:00.000Z'))).toBe(200);
    // same updatedAt, smaller end: loses the tie-break
    expect(await send(write('a', s, '2030-01-02T10:30:00.000Z', '2030-01-01T01:00:00.000Z'))).toBe(200);
    // same updatedAt, greater end: wins it
    expect(await send(write('a', s, later, '2030-01-01T01:00:00.000Z'))).toBe(200);
    // newer: wins
    expect(await send(write('a', s, e, '2030-01-01T02:00:00.000Z'))).toBe(200);
    const rows = await sql`SELECT end_at AS "end", updated_at AS "updatedAt", version FROM appointments`;
    expect(rows).toEqual([
      { end: '2030-01-02T11:00:00.000000Z', updatedAt: '2030-01-01T02:00:00.000000Z', version: 3 },
    ]);
    const versions = await sql`
      SELECT version, end_at AS "end", valid_from < valid_to AS "nonEmpty" FROM appointment_versions ORDER BY version`;
    expect(versions).toEqual([
      { version: 1, end: '2030-01-02T11:00:00.000000Z', nonEmpty: true },
      { version: 2, end: '2030-01-02T12:00:00.000000Z', nonEmpty: true },
    ]);
  });

  it.each(PIECES.map((p) => [p.name, p] as const))(
    'takes out the piece "%s", and the write still answers',
    async (_, piece) => {
      const sql = await open(false);
      await removePieces(sql, [piece]);
      const send = directSender(sql);
      const [s, e] = ['2030-01-02T10:00:00.000Z', '2030-01-02T11:00:00.000Z'];
      expect(await send(write('a', s, e, '2030-01-01T01:00:00.000Z'))).toBe(201);
      expect(await send(write('a', s, e, '2030-01-01T02:00:00.000Z'))).toBe(200);
      const [{ versions }] = await sql<
        { versions: number }[]
      >`SELECT count(*)::int AS versions FROM appointment_versions`;
      expect(versions).toBe(1);
      if (piece.edit) {
        // the clause is gone from the function as stored: nothing left to take out
        const [{ body }] = await sql<{ body: string }[]>`
          SELECT prosrc AS body FROM pg_proc WHERE proname = 'upsert_appointment'`;
        expect(() => piece.edit!(body)).toThrow(/no longer has/);
      }
    },
  );

  it('finds every clause it takes out in the function as the migrations install it', async () => {
    const sql = await open(false);
    const [{ body }] = await sql<
      { body: string }[]
    >`SELECT prosrc AS body FROM pg_proc WHERE proname = 'upsert_appointment'`;
    for (const piece of PIECES.filter((p) => p.edit)) expect(piece.edit!(body)).not.toBe(body);
  });
});
