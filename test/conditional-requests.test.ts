import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appointmentEtag } from '../src/etags.js';
import type { HistoryEntry } from '../src/schemas/appointments.js';
import { runConcurrently } from './support/concurrency.js';
import { databaseDigest } from './support/database.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, type HttpResult } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// Conditional requests (RFC 9110, section 13): the ETag of every answer that carries one appointment,
// If-None-Match on a read (304), If-Match and If-None-Match: * on writes (412 with `current`), and the
// check and the write being one step under concurrency.

let server: TestServer;
beforeAll(async () => {
  // a pool smaller than the number of concurrent clients, as in production
  server = await startTestServer({ dbPoolMax: 10 });
});
afterAll(() => server.close());

const at = (orgId: string, id: string, query = '') => `/api/appointments/${id}?orgId=${orgId}${query}`;
const write = (orgId: string, body: object, headers: Record<string, string> = {}) =>
  http(server.baseUrl, 'POST', '/api/appointments', { ...body, orgId }, headers);
const read = (orgId: string, id: string, headers: Record<string, string> = {}, query = '') =>
  http(server.baseUrl, 'GET', at(orgId, id, query), undefined, headers);
const remove = (orgId: string, id: string, headers: Record<string, string> = {}) =>
  http(server.baseUrl, 'DELETE', at(orgId, id), undefined, headers);
const history = async (orgId: string, id: string): Promise<HistoryEntry[]> => {
  const res = await http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`);
  return res.status === 404 ? [] : res.body;
};
const digest = () => databaseDigest(server.sql);

/** appointment_etag() in SQL of every version of an appointment, by version number. */
async function storedEtags(orgId: string, id: string): Promise<Map<number, string>> {
  const rows = await server.sql<Array<{ version: number; etag: string }>>`
    SELECT version, appointment_etag(version, valid_from) AS etag
    FROM appointment_versions WHERE org_id = ${orgId} AND id = ${id}
    UNION
    SELECT version, appointment_etag(version, recorded_at) FROM appointments WHERE org_id = ${orgId} AND id = ${id}`;
  const etags = new Map(rows.map((r) => [r.version, r.etag]));
  expect(etags.size, 'one tag per version').toBe(rows.length);
  return etags;
}

/** The tag of the stored row (a tombstone's is that of the version it deleted), by appointment_etag(). */
async function currentRowEtag(orgId: string, id: string): Promise<string | undefined> {
  const [row] = await server.sql<Array<{ etag: string }>>`
    SELECT appointment_etag(version, recorded_at) AS etag FROM appointments WHERE org_id = ${orgId} AND id = ${id}`;
  return row?.etag;
}

/** An answer's ETag, which must be the tag of the appointment it carries. */
function etagOf(res: HttpResult, carried = res.body.appointment): string {
  const etag = res.headers.etag;
  expect(typeof etag, `${res.status} ${res.text}`).toBe('string');
  expect(etag).toBe(appointmentEtag(carried));
  return etag as string;
}

const first = (updatedAt = '2020-09-28 14:23:12') =>
  appointment('a', '2020-10-10 09:00', '2020-10-10 10:00', updatedAt);
const moved = (updatedAt: string) => appointment('a', '2020-10-10 11:00', '2020-10-10 12:00', updatedAt);

describe('ETags', () => {
  it('change with every version over the whole life, and equal appointment_etag() in SQL', async () => {
    const orgId = newOrg('etag-life');
    const created = await write(orgId, first());
    expect(created.status).toBe(201);
    const v1 = etagOf(created);
    expect(v1).toMatch(/^"[\x21\x23-\x7e]+"$/);
    expect(v1).toBe(await currentRowEtag(orgId, 'a'));

    const again = await write(orgId, first());
    expect(again.body.status).toBe('unchanged');
    expect(etagOf(again)).toBe(v1);

    const updated = await write(orgId, moved('2020-09-29 09:00'));
    expect([updated.status, updated.body.status]).toEqual([200, 'updated']);
    const v2 = etagOf(updated);
    expect(v2).toBe(await currentRowEtag(orgId, 'a'));

    const stale = await write(orgId, first('2020-09-28 00:00'));
    expect(stale.body.status).toBe('stale');
    expect(etagOf(stale)).toBe(v2);

    const got = await read(orgId, 'a');
    expect(got.status).toBe(200);
    expect(etagOf(got, got.body)).toBe(v2);
    // a point-in-time read carries the tag of the version it shows
    const past = await read(orgId, 'a', {}, `&at=${encodeURIComponent(created.body.appointment.recordedAt)}`);
    expect([past.status, past.body.version]).toEqual([200, 1]);
    expect(etagOf(past, past.body)).toBe(v1);

    const deleted = await remove(orgId, 'a');
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect(deleted.headers.etag, 'a delete carries the tag of the version it deleted').toBe(v2);
    const gone = await read(orgId, 'a');
    expect(gone.status).toBe(404);
    expect(gone.headers.etag).toBeUndefined();

    // a stale write about the deleted appointment: the tag of the deleted version
    const late = await write(orgId, moved('2020-09-29 09:00'));
    expect([late.status, late.body.status]).toEqual([200, 'stale']);
    expect(late.body.appointment.deletedAt).toEqual(expect.any(String));
    expect(etagOf(late)).toBe(v2);
    expect(await currentRowEtag(orgId, 'a')).toBe(v2);

    const recreated = await write(orgId, first('2020-09-30 09:00'));
    expect([recreated.status, recreated.body.status, recreated.body.appointment.version]).toEqual([201, 'created', 3]);
    const v3 = etagOf(recreated);
    const moreRecent = await write(orgId, moved('2020-10-01 09:00'));
    const v4 = etagOf(moreRecent);

    const seen = [v1, v2, v3, v4];
    expect(new Set(seen).size, seen.join(' ')).toBe(4);
    // the tags the API gave are exactly the tags SQL prints for the stored versions
    expect([...(await storedEtags(orgId, 'a')).entries()].sort(([a], [b]) => a - b)).toEqual(
      seen.map((etag, i) => [i + 1, etag]),
    );
    const versions = await history(orgId, 'a');
    expect(versions.map((v) => appointmentEtag({ version: v.version, recordedAt: v.validFrom }))).toEqual(seen);
  });
  it('appointmentEtag() prints what appointment_etag() prints, for any instant from 1970 to 9999', async () => {
    const samples = fc.sample(
      fc.record({ version: fc.integer({ min: 1, max: 2 ** 31 - 1 }), micros: fc.bigInt(0n, 253_402_300_799_999_999n) }),
      { numRuns: 2000, seed: 12 },
    );
    samples.push({ version: 1, micros: 0n }, { version: 7, micros: 1_795_356_370_654_321n });
    const text = ({ micros }: { micros: bigint }) =>
      `${new Date(Number(micros / 1000n)).toISOString().slice(0, 23)}${String(micros % 1000n).padStart(3, '0')}Z`;
    // recordedAt as the service reads it: through its own pool, which formats times
    const rows = await server.app.sql<Array<{ version: number; recordedAt: string; etag: string }>>`
      SELECT version, at AS "recordedAt", appointment_etag(version, at) AS etag
      FROM unnest(${samples.map((s) => s.version)}::int[], ${samples.map(text)}::timestamptz[])
           WITH ORDINALITY AS u(version, at, n)
      ORDER BY n`;
    expect(rows.map((r) => r.recordedAt)).toEqual(samples.map(text));
    for (const row of rows) expect(appointmentEtag(row), row.recordedAt).toBe(row.etag);
    expect(rows.map((r) => r.etag)).toEqual(samples.map((s) => `"${s.version}-${s.micros}"`));
  });
});

describe('If-None-Match on GET /api/appointments/{id}', () => {
  it('answers 304 with the ETag and no body when a tag matches, 200 otherwise', async () => {
    const orgId = newOrg('none-match');
    const v1 = etagOf(await write(orgId, first()));
    for (const value of [v1, `"other", ${v1}`, `W/${v1}`, '*', ` ${v1} `, `${v1},`]) {
      const res = await read(orgId, 'a', { 'if-none-match': value });
      expect(res.status, value).toBe(304);
      expect(res.text, value).toBe('');
      expect(res.headers.etag, value).toBe(v1);
      const head = await http(server.baseUrl, 'HEAD', at(orgId, 'a'), undefined, { 'if-none-match': value });
      expect([head.status, head.headers.etag], `HEAD ${value}`).toEqual([304, v1]);
    }
    for (const value of ['"other"', '"other", W/"else"', '""']) {
      const res = await read(orgId, 'a', { 'if-none-match': value });
      expect(res.status, value).toBe(200);
      expect(etagOf(res, res.body)).toBe(v1);
    }

    const v2 = etagOf(await write(orgId, moved('2020-09-29 09:00')));
    const changed = await read(orgId, 'a', { 'if-none-match': v1 });
    expect(changed.status).toBe(200);
    expect(changed.body.version).toBe(2);
    expect(etagOf(changed, changed.body)).toBe(v2);
    expect((await read(orgId, 'a', { 'if-none-match': v2 })).status).toBe(304);

    // at an instant: the version read then
    const past = `&at=${encodeURIComponent((await history(orgId, 'a'))[0]!.validFrom)}`;
    const old = await read(orgId, 'a', { 'if-none-match': v1 }, past);
    expect([old.status, old.headers.etag, old.text]).toEqual([304, v1, '']);
    expect((await read(orgId, 'a', { 'if-none-match': v2 }, past)).status).toBe(200);
  });

  it('is a 404 for an appointment that is not there, `*` included', async () => {
    const orgId = newOrg('none-match-404');
    expect((await write(orgId, first())).status).toBe(201);
    expect((await remove(orgId, 'a')).status).toBe(204);
    for (const id of ['a', 'never']) {
      const res = await read(orgId, id, { 'if-none-match': '*' });
      expect([res.status, res.body.code], id).toEqual([404, 'NOT_FOUND']);
      expect(res.headers.etag).toBeUndefined();
    }
  });

  it('refuses a malformed value with 400 VALIDATION_ERROR', async () => {
    const orgId = newOrg('none-match-400');
    expect((await write(orgId, first())).status).toBe(201);
    for (const value of ['abc', '"unterminated', 'W/', '"a", junk', '*, "a"', '', 'W/ "a"']) {
      const res = await read(orgId, 'a', { 'if-none-match': value });
      expect([res.status, res.body.code], value).toEqual([400, 'VALIDATION_ERROR']);
      expect(res.body.message, value).toContain('if-none-match');
    }
  });
});

describe('If-Match on POST /api/appointments', () => {
  it('writes when the stored version has the tag; otherwise 412 with `current`, its ETag, and nothing written', async () => {
    const orgId = newOrg('if-match');
    const v1 = etagOf(await write(orgId, first()));
    const updated = await write(orgId, moved('2020-09-29 09:00'), { 'if-match': v1 });
    expect([updated.status, updated.body.status]).toEqual([200, 'updated']);
    const v2 = etagOf(updated);

    const before = await digest();
    for (const value of [v1, `"nope", ${v1}`, `W/${v2}`, `W/${v1}, W/${v2}`, '""']) {
      const refused = await write(orgId, first('2020-09-30 09:00'), { 'if-match': value });
      expect([refused.status, refused.body.code], value).toEqual([412, 'PRECONDITION_FAILED']);
      expect(refused.body.current, value).toEqual(updated.body.appointment);
      expect(refused.headers.etag, value).toBe(v2);
    }
    expect(await digest(), 'a 412 writes nothing').toEqual(before);

    // one of a list is enough
    const listed = await write(orgId, first('2020-09-30 09:00'), { 'if-match': `"nope", ${v2}, W/"x"` });
    expect([listed.status, listed.body.status, listed.body.appointment.version]).toEqual([200, 'updated', 3]);
    expect(await history(orgId, 'a')).toHaveLength(3);
  });

  it('never creates: 412 with `current: null` and no ETag for an id never written, or deleted', async () => {
    const orgId = newOrg('if-match-create');
    const v1 = etagOf(await write(orgId, first()));
    expect((await remove(orgId, 'a')).headers.etag).toBe(v1);
    const before = await digest();
    for (const [id, value] of [
      ['a', v1],
      ['a', '*'],
      ['new', '*'],
      ['new', v1],
    ] as const) {
      const res = await write(orgId, { ...first('2020-10-05 09:00'), id }, { 'if-match': value });
      expect([res.status, res.body.code, res.body.current], `${id} ${value}`).toEqual([
        412,
        'PRECONDITION_FAILED',
        null,
      ]);
      expect(res.headers.etag, `${id} ${value}`).toBeUndefined();
    }
    expect(await digest()).toEqual(before);
    expect((await read(orgId, 'a')).status).toBe(404);
    expect((await read(orgId, 'new')).status).toBe(404);
  });

  it('`*` updates any live version and only that', async () => {
    const orgId = newOrg('if-match-any');
    expect((await write(orgId, first())).status).toBe(201);
    const res = await write(orgId, moved('2020-09-29 09:00'), { 'if-match': '*' });
    expect([res.status, res.body.status, res.body.appointment.version]).toEqual([200, 'updated', 2]);
    etagOf(res);
  });

  it('that holds does not bypass the other rules: an older updatedAt is still stale, the same version unchanged', async () => {
    const orgId = newOrg('if-match-stale');
    const created = await write(orgId, moved('2020-09-29 09:00'));
    const v1 = etagOf(created);
    const before = await digest();
    for (const value of [v1, '*']) {
      const stale = await write(orgId, first('2020-09-28 09:00'), { 'if-match': value });
      expect([stale.status, stale.body.status], value).toEqual([200, 'stale']);
      expect(stale.body.appointment).toEqual(created.body.appointment);
      expect(etagOf(stale)).toBe(v1);
      const unchanged = await write(orgId, moved('2020-09-29 09:00'), { 'if-match': value });
      expect([unchanged.status, unchanged.body.status], value).toEqual([200, 'unchanged']);
      expect(etagOf(unchanged)).toBe(v1);
    }
    expect(await digest()).toEqual(before);
  });

  it('that holds does not bypass the overlap rule', async () => {
    const orgId = newOrg('if-match-overlap');
    const v1 = etagOf(await write(orgId, first()));
    expect((await write(orgId, { ...moved('2020-09-28 14:23:12'), id: 'b' })).status).toBe(201);
    const res = await write(orgId, moved('2020-09-29 09:00'), { 'if-match': v1 });
    expect([res.status, res.body.code, res.body.conflictsWith?.id]).toEqual([409, 'APPOINTMENT_OVERLAP', 'b']);
  });

  it('of 30 concurrent writers with the same tag, exactly one writes; 29 get 412 with the winner as `current`', async () => {
    const orgId = newOrg('if-match-race');
    const v1 = etagOf(await write(orgId, first()));
    const results = await runConcurrently(
      Array.from(
        { length: 30 },
        (_, i) => () => write(orgId, first(`2020-09-29 09:${String(i).padStart(2, '0')}`), { 'if-match': v1 }),
      ),
      30,
    );
    const won = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 412);
    expect(won, results.map((r) => r.status).join(' ')).toHaveLength(1);
    expect(refused).toHaveLength(29);
    const winner = won[0]!.body.appointment;
    expect([won[0]!.body.status, winner.version]).toEqual(['updated', 2]);
    for (const r of refused) {
      expect(r.body.code).toBe('PRECONDITION_FAILED');
      expect(r.body.current).toEqual(winner);
      expect(r.headers.etag).toBe(appointmentEtag(winner));
    }
    const versions = await history(orgId, 'a');
    expect(versions.map((v) => [v.version, v.updatedAt])).toEqual([
      [1, '2020-09-28T14:23:12.000Z'],
      [2, winner.updatedAt],
    ]);
  });
});

describe('If-None-Match: * on POST /api/appointments', () => {
  it('creates only: 412 with `current` when a live appointment has the id, creates over a tombstone', async () => {
    const orgId = newOrg('none-match-create');
    const created = await write(orgId, first(), { 'if-none-match': '*' });
    expect([created.status, created.body.status]).toEqual([201, 'created']);
    const v1 = etagOf(created);

    const before = await digest();
    for (const body of [moved('2020-09-29 09:00'), first(), first('2020-09-01 00:00')]) {
      const res = await write(orgId, body, { 'if-none-match': '*' });
      expect([res.status, res.body.code]).toEqual([412, 'PRECONDITION_FAILED']);
      expect(res.body.current).toEqual(created.body.appointment);
      expect(res.headers.etag).toBe(v1);
    }
    expect(await digest()).toEqual(before);

    expect((await remove(orgId, 'a')).status).toBe(204);
    // over the tombstone the usual rule holds: an older updatedAt is stale, a newer one creates it again
    const stale = await write(orgId, first('2020-09-01 00:00'), { 'if-none-match': '*' });
    expect([stale.status, stale.body.status]).toEqual([200, 'stale']);
    expect(etagOf(stale)).toBe(v1);
    const again = await write(orgId, moved('2020-09-29 09:00'), { 'if-none-match': '*' });
    expect([again.status, again.body.status, again.body.appointment.version]).toEqual([201, 'created', 2]);
    expect(etagOf(again)).not.toBe(v1);
  });

  it('of 30 concurrent creates of one id, exactly one creates', async () => {
    const orgId = newOrg('none-match-race');
    const results = await runConcurrently(
      Array.from(
        { length: 30 },
        (_, i) => () => write(orgId, first(`2020-09-29 09:${String(i).padStart(2, '0')}`), { 'if-none-match': '*' }),
      ),
      30,
    );
    const created = results.filter((r) => r.status === 201);
    expect(created, results.map((r) => r.status).join(' ')).toHaveLength(1);
    expect(results.filter((r) => r.status === 412)).toHaveLength(29);
    for (const r of results.filter((r) => r.status === 412))
      expect(r.body.current).toEqual(created[0]!.body.appointment);
    expect(await history(orgId, 'a')).toHaveLength(1);
  });

  it('takes only `*`, and not together with If-Match: 400, nothing written', async () => {
    const orgId = newOrg('none-match-only-star');
    const v1 = etagOf(await write(orgId, first()));
    const before = await digest();
    for (const headers of <Array<Record<string, string>>>[
      { 'if-none-match': v1 },
      { 'if-none-match': `${v1}, "b"` },
      { 'if-none-match': `W/${v1}` },
      { 'if-none-match': '*', 'if-match': v1 },
      { 'if-none-match': '*', 'if-match': '*' },
    ]) {
      const res = await write(orgId, { ...first('2020-10-01 00:00'), id: 'b' }, headers);
      expect([res.status, res.body.code], JSON.stringify(headers)).toEqual([400, 'VALIDATION_ERROR']);
    }
    expect(await digest()).toEqual(before);
  });
});

describe('If-Match on DELETE /api/appointments/{id}', () => {
  it('deletes when the stored version has the tag; otherwise 412 with `current`, nothing written', async () => {
    const orgId = newOrg('delete-if-match');
    const v1 = etagOf(await write(orgId, first()));
    const updated = await write(orgId, moved('2020-09-29 09:00'));
    const v2 = etagOf(updated);

    const before = await digest();
    for (const value of [v1, `W/${v2}`, '"nope"']) {
      const res = await remove(orgId, 'a', { 'if-match': value });
      expect([res.status, res.body.code], value).toEqual([412, 'PRECONDITION_FAILED']);
      expect(res.body.current).toEqual(updated.body.appointment);
      expect(res.headers.etag).toBe(v2);
    }
    expect(await digest()).toEqual(before);

    const deleted = await remove(orgId, 'a', { 'if-match': `"nope", ${v2}` });
    expect([deleted.status, deleted.headers.etag]).toEqual([204, v2]);
    expect((await read(orgId, 'a')).status).toBe(404);

    // nothing to delete: 412 with `current: null` (If-Match needs a live version), not 404
    const tombstone = await digest();
    for (const [id, value] of [
      ['a', v2],
      ['a', '*'],
      ['never', '*'],
    ] as const) {
      const res = await remove(orgId, id, { 'if-match': value });
      expect([res.status, res.body.code, res.body.current], `${id} ${value}`).toEqual([
        412,
        'PRECONDITION_FAILED',
        null,
      ]);
      expect(res.headers.etag).toBeUndefined();
    }
    expect(await digest()).toEqual(tombstone);
  });

  it('`*` deletes any live version', async () => {
    const orgId = newOrg('delete-any');
    const v1 = etagOf(await write(orgId, first()));
    const res = await remove(orgId, 'a', { 'if-match': '*' });
    expect([res.status, res.headers.etag]).toEqual([204, v1]);
    expect((await history(orgId, 'a')).map((v) => v.deleted)).toEqual([true]);
  });

  it('refuses If-None-Match and malformed If-Match with 400, nothing written', async () => {
    const orgId = newOrg('delete-400');
    const v1 = etagOf(await write(orgId, first()));
    const before = await digest();
    for (const headers of <Array<Record<string, string>>>[
      { 'if-none-match': '*' },
      { 'if-none-match': v1 },
      { 'if-match': 'abc' },
      { 'if-match': '' },
    ]) {
      const res = await remove(orgId, 'a', headers);
      expect([res.status, res.body.code], JSON.stringify(headers)).toEqual([400, 'VALIDATION_ERROR']);
    }
    expect(await digest()).toEqual(before);
  });

  it('of 30 concurrent deletes with the same tag, exactly one deletes; 29 get 412 with `current: null`', async () => {
    const orgId = newOrg('delete-race');
    expect((await write(orgId, first())).status).toBe(201);
    const v2 = etagOf(await write(orgId, moved('2020-09-29 09:00')));
    const results = await runConcurrently(
      Array.from({ length: 30 }, () => () => remove(orgId, 'a', { 'if-match': v2 })),
      30,
    );
    const deleted = results.filter((r) => r.status === 204);
    const refused = results.filter((r) => r.status === 412);
    expect(deleted, results.map((r) => r.status).join(' ')).toHaveLength(1);
    expect(deleted[0]!.headers.etag).toBe(v2);
    expect(refused).toHaveLength(29);
    for (const r of refused) {
      expect([r.body.code, r.body.current]).toEqual(['PRECONDITION_FAILED', null]);
      expect(r.headers.etag).toBeUndefined();
    }
    expect((await history(orgId, 'a')).map((v) => [v.version, v.deleted])).toEqual([
      [1, false],
      [2, true],
    ]);
  });
});

describe('a sync job', () => {
  it('reads, updates with If-Match, loses a race, reads `current` from the 412 and tries again', async () => {
    const orgId = newOrg('sync-job');
    expect((await write(orgId, first())).status).toBe(201);
    const mine = await read(orgId, 'a');
    const tag = etagOf(mine, mine.body);
    // someone else writes in between
    expect((await write(orgId, moved('2020-09-29 09:00'))).status).toBe(200);
    const lost = await write(orgId, first('2020-09-30 09:00'), { 'if-match': tag });
    expect(lost.status).toBe(412);
    const retry = await write(orgId, first('2020-09-30 09:00'), { 'if-match': lost.headers.etag as string });
    expect([retry.status, retry.body.status, retry.body.appointment.version]).toEqual([200, 'updated', 3]);
    // and polls cheaply: nothing changed since its last read
    const poll = await read(orgId, 'a', { 'if-none-match': etagOf(retry) });
    expect(poll.status).toBe(304);
  });
});

describe('the OpenAPI document', () => {
  it('declares the precondition headers, the ETag of each answer that has one, 304 and 412', async () => {
    const doc = (await http(server.baseUrl, 'GET', '/api/docs/json')).body;
    const headerParameters = (op: { parameters?: Array<{ in: string; name: string }> }) =>
      (op.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
    const responseHeaders = (op: { responses: Record<string, { headers?: object }> }, status: string) =>
      Object.keys(op.responses[status]?.headers ?? {});
    const write = doc.paths['/api/appointments'].post;
    const item = doc.paths['/api/appointments/{id}'];
    expect(headerParameters(write)).toEqual(['If-Match', 'If-None-Match']);
    expect(headerParameters(item.get)).toEqual(['If-None-Match']);
    expect(headerParameters(item.delete)).toEqual(['If-Match']);
    for (const [op, status] of [
      [write, '201'],
      [write, '200'],
      [write, '412'],
      [item.get, '200'],
      [item.get, '304'],
      [item.delete, '204'],
      [item.delete, '412'],
    ])
      expect(responseHeaders(op, status), status).toContain('ETag');
    expect(item.get.responses['304'].content, 'a 304 has no body').toBeUndefined();
    expect(write.responses['412'].content['application/json'].example.code).toBe('PRECONDITION_FAILED');
    // no examples on the request headers: Swagger UI would send them with "Try it out"
    for (const op of [write, item.get, item.delete])
      for (const p of op.parameters.filter((p: { in: string }) => p.in === 'header'))
        expect([p.example, p.examples, p.schema.examples], p.name).toEqual([undefined, undefined, undefined]);
  });
});
