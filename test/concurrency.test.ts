import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../src/schemas/appointments.js';
import { overlappingPairs } from '../scripts/lib/overlaps.js';
import { seededRandom, shuffle } from '../scripts/lib/random.js';
import { sleep } from '../scripts/lib/time.js';
import { runConcurrently } from './support/concurrency.js';
import { appointment, CLASSIC, newOrg } from './support/fixtures.js';
import { http, post, type HttpResult } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  // a pool smaller than the number of concurrent clients, as in production
  server = await startTestServer({ dbPoolMax: 10 });
});
afterAll(() => server.close());

interface Stored {
  id: string;
  start: string;
  end: string;
  updatedAt: string;
  version: number;
  recordedAt: string;
}

const list = async (orgId: string, query = ''): Promise<Stored[]> => {
  const res = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&limit=1000${query}`);
  expect(res.status).toBe(200);
  return res.body;
};
const historyOf = async (orgId: string, id: string): Promise<HistoryEntry[]> => {
  const res = await http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`);
  return res.status === 404 ? [] : res.body;
};

describe('the seven-payload workload', () => {
  it('keeps every rule over many rounds in random order, 10 to 50 requests in parallel', async () => {
    const seed = Date.now();
    const random = seededRandom(seed);
    const rounds = 24;
    for (let round = 0; round < rounds; round++) {
      const orgId = newOrg('classic');
      const picks = Array.from({ length: 40 + Math.floor(random() * 40) }, () => Math.floor(random() * 7));
      const parallel = 10 + Math.floor(random() * 41);
      const results = await runConcurrently(
        picks.map((p) => () => post(server.baseUrl, { ...CLASSIC[p]!, orgId })),
        parallel,
      );
      const context = `seed ${seed}, round ${round}, ${parallel} in parallel`;
      picks.forEach((p, i) => {
        const status = results[i]!.status;
        const allowed = p === 4 ? [400] : [0, 1, 2].includes(p) ? [200, 201, 409] : [200, 201];
        expect(allowed, `${context}: payload ${p + 1} got ${status}`).toContain(status);
      });
      const stored = await list(orgId);
      const ids = stored.map((a) => a.id);
      expect(overlappingPairs(stored), context).toEqual([]);
      expect(ids, context).not.toContain('5');
      if (picks.includes(3)) expect(ids, context).toContain('4');
      if (picks.includes(5)) expect(ids, context).toContain('6');
      if (picks.includes(6)) expect(stored.find((a) => a.id === '1')?.start, context).toBe('2020-10-17T14:40:00.000Z');
      expect(ids.includes('2') && ids.includes('3'), context).toBe(false);
      // Exactly one 201 per stored id: a create is acknowledged once.
      for (const id of ids) {
        const creates = results.filter((r) => r.status === 201 && r.body.appointment.id === id);
        expect(creates, `${context}: creates of ${id}`).toHaveLength(1);
      }
    }
  });
});

describe('contention on one slot and one id', () => {
  it('30 concurrent creates of one slot: exactly one 201, the rest 409 naming it', async () => {
    const orgId = newOrg('slot');
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        post(server.baseUrl, { ...appointment(`c${i}`, '2020-10-10 10:00', '2020-10-10 11:00'), orgId }),
      ),
    );
    const created = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 409);
    expect(created).toHaveLength(1);
    expect(refused).toHaveLength(29);
    const winner = created[0]!.body.appointment.id;
    for (const r of refused) {
      expect(r.body.code).toBe('APPOINTMENT_OVERLAP');
      expect(r.body.conflictsWith).toEqual({
        id: winner,
        start: '2020-10-10T10:00:00.000Z',
        end: '2020-10-10T11:00:00.000Z',
      });
    }
    expect((await list(orgId)).map((a) => a.id)).toEqual([winner]);
  });

  it('30 concurrent creates of ranges that all share one minute: exactly one is stored', async () => {
    const orgId = newOrg('shared-minute');
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        post(server.baseUrl, {
          ...appointment(
            `s${i}`,
            `2020-10-10 ${String(10 - (i % 10)).padStart(2, '0')}:00`,
            `2020-10-10 ${String(11 + (i % 7)).padStart(2, '0')}:00`,
          ),
          orgId,
        }),
      ),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(29);
    expect(await list(orgId)).toHaveLength(1);
  });

  it("a write that lost a deadlock is sent again alone: it waits for the org's writes in flight, then gets its answer", async () => {
    // Another writer's transaction writes a, the service's write of b waits for it inside the
    // exclusion check, and the same transaction then writes c, which waits for b. The service's
    // connection checks for a deadlock 50 ms after it began to wait, so it is the one aborted when c
    // comes in time; on a slow machine c may come later and be aborted instead: then try again.
    const b = (orgId: string) => ({ ...appointment('b', '2020-10-10 10:30', '2020-10-10 11:30'), orgId });
    const waitOfB = async (orgId: string) => {
      const [row] = await server.sql<{ wait: string | null }[]>`
        SELECT wait_event AS wait FROM pg_stat_activity
        WHERE query LIKE '%upsert_appointment(%' AND query NOT LIKE '%pg_stat_activity%' AND state = 'active'
          AND pid NOT IN (SELECT pid FROM pg_stat_activity WHERE application_name = ${orgId})`;
      return row?.wait ?? null;
    };
    const waitUntil = async (orgId: string, event: string) => {
      for (let i = 0; i < 1_000 && (await waitOfB(orgId)) !== event; i++) await sleep(5);
      return waitOfB(orgId);
    };
    const resolvedDeadlocks = async () =>
      (await server.app.metrics.deadlocksResolved.get()).values.find((v) => v.labels.operation === 'upsert')?.value ??
      0;
    for (let attempt = 1; ; attempt++) {
      const orgId = newOrg('deadlock');
      const resolvedBefore = await resolvedDeadlocks();
      let answer: Promise<HttpResult> | undefined;
      let waitWhileHeld: string | null = null;
      try {
        await server.sql.begin(async (tx) => {
          await tx`SELECT set_config('application_name', ${orgId}, true), set_config('deadlock_timeout', '1s', true)`;
          await tx`SELECT 1 FROM upsert_appointment(${orgId}, 'a', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-01', '2020-09-01', false)`;
          answer = post(server.baseUrl, b(orgId));
          expect(await waitUntil(orgId, 'transactionid')).toBe('transactionid');
          await tx`SELECT 1 FROM upsert_appointment(${orgId}, 'c', '2020-10-10 11:15', '2020-10-10 11:20', '2020-09-01', '2020-09-01', false)`;
          // b lost the deadlock; no appointment is committed in its way, so it is sent again, alone
          waitWhileHeld = await waitUntil(orgId, 'advisory');
        });
      } catch (error) {
        await answer;
        if (error instanceof postgres.PostgresError && error.code === '40P01' && attempt < 5) continue;
        throw error;
      }
      expect(waitWhileHeld).toBe('advisory');
      const res = await answer!;
      expect(res.status).toBe(409);
      expect(res.body.conflictsWith).toEqual({
        id: 'a',
        start: '2020-10-10T10:00:00.000Z',
        end: '2020-10-10T11:00:00.000Z',
      });
      expect((await list(orgId)).map((x) => x.id)).toEqual(['a', 'c']);
      // the metrics count it as a deadlock the second try resolved (its answer: the overlap)
      expect((await resolvedDeadlocks()) - resolvedBefore).toBe(1);
      return;
    }
  });

  it('30 concurrent first creates of one new id: one created, the rest updated, unchanged or stale', async () => {
    const orgId = newOrg('same-id');
    const minutes = shuffle(Array.from({ length: 30 }, (_, i) => i));
    const results = await Promise.all(
      minutes.map((m) =>
        post(server.baseUrl, {
          ...appointment('new', '2020-10-10 10:00', '2020-10-10 11:00', `2020-09-28 14:${String(m).padStart(2, '0')}`),
          orgId,
        }),
      ),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(
      results.every((r) => r.status === 201 || (r.status === 200 && ['updated', 'stale'].includes(r.body.status))),
    ).toBe(true);
    const [stored] = await list(orgId);
    expect(stored!.updatedAt).toBe('2020-09-28T14:29:00.000Z');
  });

  it('30 concurrent updates of one id converge on the greatest updatedAt; history increases and tiles', async () => {
    const orgId = newOrg('updates');
    await post(server.baseUrl, {
      ...appointment('hot', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 00:00'),
      orgId,
    });
    const minutes = shuffle(Array.from({ length: 30 }, (_, i) => i + 1));
    const results = await Promise.all(
      minutes.map((m) =>
        post(server.baseUrl, {
          ...appointment(
            'hot',
            `2020-10-${String(10 + (m % 5)).padStart(2, '0')} 10:00`,
            `2020-10-${String(10 + (m % 5)).padStart(2, '0')} 11:00`,
            `2020-09-28 00:${String(m).padStart(2, '0')}`,
          ),
          orgId,
        }),
      ),
    );
    expect(results.every((r) => r.status === 200 && ['updated', 'stale'].includes(r.body.status))).toBe(true);
    const [current] = await list(orgId);
    expect(current!.updatedAt).toBe('2020-09-28T00:30:00.000Z');

    const history = await historyOf(orgId, 'hot');
    expect(history.map((v) => v.version)).toEqual(history.map((_, i) => i + 1));
    for (let i = 1; i < history.length; i++) {
      expect(history[i]!.updatedAt > history[i - 1]!.updatedAt).toBe(true);
      expect(history[i]!.validFrom).toBe(history[i - 1]!.validTo);
      expect(history[i - 1]!.validFrom < history[i - 1]!.validTo!).toBe(true);
    }
    expect(history.at(-1)!.validTo).toBeNull();
    // a stale answer shows the version that won, which is newer than the request
    minutes.forEach((m, i) => {
      const r = results[i]!;
      if (r.body.status === 'stale')
        expect(r.body.appointment.updatedAt > `2020-09-28T00:${String(m).padStart(2, '0')}:00.000Z`).toBe(true);
    });
    // each acknowledged update is a version of the history, with the content acknowledged
    const updates = results.filter((r) => r.body.status === 'updated');
    expect(history).toHaveLength(updates.length + 1);
    for (const r of updates) {
      const a = r.body.appointment;
      expect(history[a.version - 1]).toMatchObject({
        start: a.start,
        end: a.end,
        updatedAt: a.updatedAt,
        validFrom: a.recordedAt,
      });
    }
  });
});

describe('a random concurrent mix of creates, updates and deletes', () => {
  it('keeps every snapshot free of overlaps, every acknowledged version in history, and periods tiled', async () => {
    const seed = Date.now();
    const random = seededRandom(seed);
    const orgs = [newOrg('mix'), newOrg('mix'), newOrg('mix')];
    const ids = Array.from({ length: 12 }, (_, i) => `m${i}`);
    // 8 one-hour slots and 2-hour ranges across them: plenty of moves into just-vacated slots
    const range = () => {
      const startHour = 8 + Math.floor(random() * 8);
      const hours = 1 + Math.floor(random() * 2);
      return [
        `2020-10-10 ${String(startHour).padStart(2, '0')}:00`,
        `2020-10-10 ${String(startHour + hours).padStart(2, '0')}:00`,
      ] as const;
    };
    let clock = 0;
    type Op = {
      kind: 'write' | 'delete' | 'list';
      orgId: string;
      id?: string;
      body?: Record<string, unknown>;
      result?: HttpResult;
    };
    const ops: Op[] = Array.from({ length: 900 }, () => {
      const orgId = orgs[Math.floor(random() * orgs.length)]!;
      const id = ids[Math.floor(random() * ids.length)]!;
      const roll = random();
      if (roll < 0.1) return { kind: 'delete', orgId, id };
      if (roll < 0.2) return { kind: 'list', orgId };
      const [start, end] = range();
      clock++;
      // mostly newer, sometimes an older updatedAt, so that stale answers happen too
      const minute = random() < 0.85 ? clock : Math.max(0, clock - 50);
      const updatedAt = new Date(Date.UTC(2020, 8, 28) + minute * 60_000).toISOString();
      return { kind: 'write', orgId, id, body: { ...appointment(id, start, end, updatedAt), orgId } };
    });

    await runConcurrently(
      ops.map((op) => async () => {
        if (op.kind === 'write') op.result = await post(server.baseUrl, op.body);
        else if (op.kind === 'delete')
          op.result = await http(server.baseUrl, 'DELETE', `/api/appointments/${op.id}?orgId=${op.orgId}`);
        else op.result = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${op.orgId}&limit=1000`);
      }),
      50,
    );

    const context = `seed ${seed}`;
    for (const op of ops) {
      const allowed = op.kind === 'write' ? [200, 201, 409] : op.kind === 'delete' ? [204, 404] : [200];
      expect(allowed, `${context}: ${op.kind} got ${op.result!.status} ${JSON.stringify(op.result!.body)}`).toContain(
        op.result!.status,
      );
      if (op.kind === 'list') expect(overlappingPairs(op.result!.body), context).toEqual([]);
    }

    for (const orgId of orgs) {
      const histories = new Map<string, HistoryEntry[]>();
      for (const id of ids) histories.set(id, await historyOf(orgId, id));

      // every acknowledged write is a version with the acknowledged content and start
      for (const op of ops) {
        if (op.orgId !== orgId || op.kind !== 'write' || !['created', 'updated'].includes(op.result!.body.status))
          continue;
        const a = op.result!.body.appointment;
        const version = histories.get(a.id)![a.version - 1];
        expect(version, `${context}: ${a.id} v${a.version} missing`).toMatchObject({
          version: a.version,
          start: a.start,
          end: a.end,
          updatedAt: a.updatedAt,
          validFrom: a.recordedAt,
        });
      }
      // nothing in history that no request asked for: each version matches some write of that id
      for (const [id, versions] of histories) {
        for (const v of versions) {
          const asked = ops.some(
            (op) =>
              op.kind === 'write' &&
              op.orgId === orgId &&
              op.id === id &&
              op.result!.status !== 409 &&
              (op.body!.updatedAt as string) === v.updatedAt &&
              v.start === `${(op.body!.start as string).replace(' ', 'T')}:00.000Z`,
          );
          expect(asked, `${context}: ${id} v${v.version} was never asked for`).toBe(true);
        }
        // periods of one id: non-empty, in order, touching except across a delete
        for (let i = 0; i < versions.length; i++) {
          const v = versions[i]!;
          expect(v.version).toBe(i + 1);
          if (v.validTo !== null)
            expect(v.validFrom < v.validTo, `${context}: ${id} v${v.version} empty period`).toBe(true);
          if (i > 0) {
            const prev = versions[i - 1]!;
            if (prev.deleted) expect(v.validFrom >= prev.validTo!, `${context}: ${id} v${v.version}`).toBe(true);
            else
              expect(v.validFrom, `${context}: ${id} v${v.version} does not follow v${prev.version}`).toBe(
                prev.validTo,
              );
          }
        }
      }

      // the snapshot at every version boundary, derived from history, is free of overlaps
      const all = [...histories.entries()].flatMap(([id, versions]) => versions.map((v) => ({ ...v, id })));
      const instants = [...new Set(all.flatMap((v) => (v.validTo ? [v.validFrom, v.validTo] : [v.validFrom])))].sort();
      for (const t of instants) {
        const snapshot = all.filter((v) => v.validFrom <= t && (v.validTo === null || t < v.validTo));
        expect(overlappingPairs(snapshot), `${context}: overlap in the snapshot at ${t} of ${orgId}`).toEqual([]);
      }
      // and the API's point-in-time read agrees with the history at a sample of those instants
      for (const t of instants.filter((_, i) => i % 15 === 0)) {
        const derived = all
          .filter((v) => v.validFrom <= t && (v.validTo === null || t < v.validTo))
          .map((v) => `${v.id}@${v.version}`)
          .sort();
        const read = (await list(orgId, `&at=${t}`)).map((a) => `${a.id}@${a.version}`).sort();
        expect(read, `${context}: at ${t}`).toEqual(derived);
      }

      // the final state is the last version of each id that is not deleted
      const current = await list(orgId);
      expect(overlappingPairs(current), context).toEqual([]);
      const expected = [...histories.entries()]
        .filter(([, versions]) => versions.length > 0 && versions.at(-1)!.validTo === null)
        .map(([id, versions]) => `${id}@${versions.at(-1)!.version}`)
        .sort();
      expect(current.map((a) => `${a.id}@${a.version}`).sort(), context).toEqual(expected);
    }
  });
});
