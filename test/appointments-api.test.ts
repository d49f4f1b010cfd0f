import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { microsecondBefore as before } from '../scripts/lib/time.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const list = (orgId: string, query = '') => http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}${query}`);
const history = (orgId: string, id: string) =>
  http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`);

describe('POST /api/appointments: create or update', () => {
  it('creates: 201, status created, the stored state, a Location header', async () => {
    const orgId = newOrg();
    const res = await post(server.baseUrl, { ...appointment(1, '2020-10-10 20:20', '2020-10-10 20:30'), orgId });
    expect(res.status).toBe(201);
    expect(res.headers.location).toBe(`/api/appointments/1?orgId=${orgId}`);
    expect(res.body).toEqual({
      status: 'created',
      appointment: {
        id: '1',
        orgId,
        start: '2020-10-10T20:20:00.000Z',
        end: '2020-10-10T20:30:00.000Z',
        createdAt: '2020-09-01T10:00:00.000Z',
        updatedAt: '2020-09-28T14:23:12.000Z',
        version: 1,
        recordedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
      },
    });
    const read = await http(server.baseUrl, 'GET', res.headers.location as string);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(res.body.appointment);
  });

  it('uses the org "default" when orgId is absent', async () => {
    const id = newOrg('default-org-id');
    const res = await post(server.baseUrl, appointment(id, '1999-01-01 10:00', '1999-01-01 11:00'));
    expect(res.status).toBe(201);
    expect(res.body.appointment.orgId).toBe('default');
    expect((await http(server.baseUrl, 'GET', `/api/appointments/${id}`)).status).toBe(200);
  });

  it('treats 1 and "1" as the same appointment', async () => {
    const orgId = newOrg();
    expect(
      (await post(server.baseUrl, { ...appointment(1, '2020-10-10 20:20', '2020-10-10 20:30'), orgId })).status,
    ).toBe(201);
    const again = await post(server.baseUrl, { ...appointment('1', '2020-10-10 20:20', '2020-10-10 20:30'), orgId });
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('unchanged');
  });

  it('updates with a newer updatedAt: 200 updated, version + 1, the old version in history', async () => {
    const orgId = newOrg();
    const first = await post(server.baseUrl, {
      ...appointment('a', '2020-10-10 20:20', '2020-10-10 20:30', '2020-09-28 14:23:12'),
      orgId,
    });
    const second = await post(server.baseUrl, {
      ...appointment('a', '2020-10-17 14:40', '2020-10-17 15:30', '2020-09-28 14:24:12'),
      orgId,
    });
    expect(second.status).toBe(200);
    expect(second.body.status).toBe('updated');
    expect(second.body.appointment).toMatchObject({ start: '2020-10-17T14:40:00.000Z', version: 2 });
    const h = await history(orgId, 'a');
    expect(h.body).toEqual([
      {
        version: 1,
        start: '2020-10-10T20:20:00.000Z',
        end: '2020-10-10T20:30:00.000Z',
        createdAt: '2020-09-01T10:00:00.000Z',
        updatedAt: '2020-09-28T14:23:12.000Z',
        validFrom: first.body.appointment.recordedAt,
        validTo: second.body.appointment.recordedAt,
        deleted: false,
      },
      {
        version: 2,
        start: '2020-10-17T14:40:00.000Z',
        end: '2020-10-17T15:30:00.000Z',
        createdAt: '2020-09-01T10:00:00.000Z',
        updatedAt: '2020-09-28T14:24:12.000Z',
        validFrom: second.body.appointment.recordedAt,
        validTo: null,
        deleted: false,
      },
    ]);
  });

  it('answers an older updatedAt as stale with the stored state, and writes nothing', async () => {
    const orgId = newOrg();
    const stored = await post(server.baseUrl, {
      ...appointment('s', '2020-10-10 20:20', '2020-10-10 20:30', '2020-09-28 14:24:12'),
      orgId,
    });
    const late = await post(server.baseUrl, {
      ...appointment('s', '2021-01-01 10:00', '2021-01-01 11:00', '2020-09-28 14:23:12'),
      orgId,
    });
    expect(late.status).toBe(200);
    expect(late.body).toEqual({ status: 'stale', appointment: stored.body.appointment });
    expect((await history(orgId, 's')).body).toHaveLength(1);
  });

  it('answers the same version again as unchanged and writes nothing (a safe retry)', async () => {
    const orgId = newOrg();
    const body = { ...appointment('u', '2020-10-10 20:20', '2020-10-10 20:30'), orgId };
    const first = await post(server.baseUrl, body);
    const retry = await post(server.baseUrl, body);
    expect(retry.status).toBe(200);
    expect(retry.body).toEqual({ status: 'unchanged', appointment: first.body.appointment });
    expect((await history(orgId, 'u')).body).toHaveLength(1);
  });

  it('breaks a tie on updatedAt by the greater (start, end, createdAt), whatever the arrival order', async () => {
    const small = appointment('t', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 14:23:12');
    const large = appointment('t', '2020-10-10 12:00', '2020-10-10 13:00', '2020-09-28 14:23:12');
    for (const order of [
      [small, large],
      [large, small],
    ]) {
      const orgId = newOrg();
      const results = [];
      for (const body of order) results.push(await post(server.baseUrl, { ...body, orgId }));
      const read = await http(server.baseUrl, 'GET', `/api/appointments/t?orgId=${orgId}`);
      expect(read.body.start).toBe('2020-10-10T12:00:00.000Z');
      const loser = results[order.indexOf(small)]!;
      if (order[0] === small) expect(loser.body.status).toBe('created');
      else expect(loser.body).toMatchObject({ status: 'stale', appointment: { start: '2020-10-10T12:00:00.000Z' } });
    }
    // createdAt decides when start and end are equal too
    const orgId = newOrg();
    await post(server.baseUrl, { ...small, createdAt: '2020-09-02 00:00', orgId });
    const older = await post(server.baseUrl, { ...small, createdAt: '2020-09-01 00:00', orgId });
    expect(older.body.status).toBe('stale');
    const newer = await post(server.baseUrl, { ...small, createdAt: '2020-09-03 00:00', orgId });
    expect(newer.body.status).toBe('updated');
  });

  it('requires no order between createdAt and updatedAt', async () => {
    const orgId = newOrg();
    const res = await post(server.baseUrl, {
      id: 3,
      start: '2020-10-10 20:25',
      end: '2020-10-10 20:35',
      createdAt: '2020-10-01 13:23:12',
      updatedAt: '2020-09-28 14:23:12',
      orgId,
    });
    expect(res.status).toBe(201);
  });
});

describe('overlaps', () => {
  it('refuses an overlap with 409 APPOINTMENT_OVERLAP naming the appointment in the way', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment(1, '2020-10-10 20:20', '2020-10-10 20:30'), orgId });
    const res = await post(server.baseUrl, { ...appointment(3, '2020-10-10 20:25', '2020-10-10 20:35'), orgId });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({
      statusCode: 409,
      error: 'Conflict',
      code: 'APPOINTMENT_OVERLAP',
      message: expect.any(String),
      conflictsWith: { id: '1', start: '2020-10-10T20:20:00.000Z', end: '2020-10-10T20:30:00.000Z' },
    });
    expect(JSON.stringify(res.body)).not.toMatch(/appointments_no_overlap|exclusion|tstzrange/i);
    expect((await list(orgId)).body.map((a: { id: string }) => a.id)).toEqual(['1']);
    expect((await history(orgId, '3')).status).toBe(404);
  });

  it('refuses an update that moves into another appointment, and keeps the stored version', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    await post(server.baseUrl, { ...appointment('y', '2020-10-10 12:00', '2020-10-10 13:00'), orgId });
    const res = await post(server.baseUrl, {
      ...appointment('y', '2020-10-10 10:30', '2020-10-10 11:30', '2020-09-29 00:00'),
      orgId,
    });
    expect(res.status).toBe(409);
    expect(res.body.conflictsWith.id).toBe('x');
    expect((await http(server.baseUrl, 'GET', `/api/appointments/y?orgId=${orgId}`)).body).toMatchObject({
      start: '2020-10-10T12:00:00.000Z',
      version: 1,
    });
  });

  it('treats ranges as half-open: one ending at 11:00 and one starting at 11:00 both fit', async () => {
    const orgId = newOrg();
    expect(
      (await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId })).status,
    ).toBe(201);
    expect(
      (await post(server.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 12:00'), orgId })).status,
    ).toBe(201);
    expect(
      (await post(server.baseUrl, { ...appointment('c', '2020-10-10 09:00', '2020-10-10 10:00:00.000+00:00'), orgId }))
        .status,
    ).toBe(201);
    expect(
      (await post(server.baseUrl, { ...appointment('d', '2020-10-10 10:59:59.999', '2020-10-10 11:00:00.001'), orgId }))
        .status,
    ).toBe(409);
  });

  it('allows the same range in another org', async () => {
    const body = appointment('same', '2020-10-10 10:00', '2020-10-10 11:00');
    expect((await post(server.baseUrl, { ...body, orgId: newOrg() })).status).toBe(201);
    expect((await post(server.baseUrl, { ...body, id: 'other', orgId: newOrg() })).status).toBe(201);
  });

  it('lets an update overlap its own earlier version', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('m', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const res = await post(server.baseUrl, {
      ...appointment('m', '2020-10-10 10:30', '2020-10-10 11:30', '2020-09-29 00:00'),
      orgId,
    });
    expect(res.body.status).toBe('updated');
  });

  it('decides staleness first: a stale write that would overlap is answered stale, not 409', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, {
      ...appointment('p', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-29 00:00'),
      orgId,
    });
    await post(server.baseUrl, { ...appointment('q', '2020-10-10 12:00', '2020-10-10 13:00'), orgId });
    const res = await post(server.baseUrl, {
      ...appointment('p', '2020-10-10 12:30', '2020-10-10 13:30', '2020-09-28 00:00'),
      orgId,
    });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('stale');
  });
});

describe('DELETE /api/appointments/:id', () => {
  it('deletes (204), keeps the history, and a second delete is 404', async () => {
    const orgId = newOrg();
    const created = await post(server.baseUrl, { ...appointment('d', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const del = await http(server.baseUrl, 'DELETE', `/api/appointments/d?orgId=${orgId}`);
    expect(del.status).toBe(204);
    expect(del.body).toBeUndefined();
    expect((await http(server.baseUrl, 'GET', `/api/appointments/d?orgId=${orgId}`)).status).toBe(404);
    expect((await list(orgId)).body).toEqual([]);
    const h = await history(orgId, 'd');
    expect(h.body).toHaveLength(1);
    expect(h.body[0]).toMatchObject({ version: 1, validFrom: created.body.appointment.recordedAt, deleted: true });
    expect(h.body[0].validTo > h.body[0].validFrom).toBe(true);
    const again = await http(server.baseUrl, 'DELETE', `/api/appointments/d?orgId=${orgId}`);
    expect(again.status).toBe(404);
    expect(again.body.code).toBe('NOT_FOUND');
    // the slot is free again
    expect(
      (await post(server.baseUrl, { ...appointment('e', '2020-10-10 10:00', '2020-10-10 11:00'), orgId })).status,
    ).toBe(201);
  });

  it('a read at a time before the delete still shows the appointment', async () => {
    const orgId = newOrg();
    const created = await post(server.baseUrl, { ...appointment('d', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    await http(server.baseUrl, 'DELETE', `/api/appointments/d?orgId=${orgId}`);
    const at = created.body.appointment.recordedAt;
    expect((await list(orgId, `&at=${at}`)).body).toEqual([created.body.appointment]);
    expect((await http(server.baseUrl, 'GET', `/api/appointments/d?orgId=${orgId}&at=${at}`)).body).toEqual(
      created.body.appointment,
    );
  });

  it('re-creates with a newer updatedAt (201, next version); an older or equal one is stale', async () => {
    const orgId = newOrg();
    const body = { ...appointment('r', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 14:23:12'), orgId };
    await post(server.baseUrl, body);
    await http(server.baseUrl, 'DELETE', `/api/appointments/r?orgId=${orgId}`);

    const retry = await post(server.baseUrl, body);
    expect(retry.status).toBe(200);
    expect(retry.body.status).toBe('stale');
    expect(retry.body.appointment.deletedAt).toMatch(/Z$/);
    const older = await post(server.baseUrl, { ...body, updatedAt: '2020-09-27 00:00' });
    expect(older.body.status).toBe('stale');
    expect((await http(server.baseUrl, 'GET', `/api/appointments/r?orgId=${orgId}`)).status).toBe(404);

    const recreated = await post(server.baseUrl, { ...body, updatedAt: '2020-09-29 00:00' });
    expect(recreated.status).toBe(201);
    expect(recreated.body.status).toBe('created');
    expect(recreated.body.appointment.version).toBe(2);
    expect(recreated.headers.location).toBe(`/api/appointments/r?orgId=${orgId}`);
    const h = (await history(orgId, 'r')).body;
    expect(
      h.map((v: { version: number; deleted: boolean; validTo: string | null }) => [
        v.version,
        v.deleted,
        v.validTo === null,
      ]),
    ).toEqual([
      [1, true, false],
      [2, false, true],
    ]);
    expect(h[1].validFrom >= h[0].validTo).toBe(true);
  });
});

describe('GET /api/appointments', () => {
  it('lists the current appointments of one org by start, then id', async () => {
    const orgId = newOrg();
    for (const [id, start, end] of [
      ['b', '2020-10-12 10:00', '2020-10-12 11:00'],
      ['z', '2020-10-10 10:00', '2020-10-10 11:00'],
      ['a', '2020-10-11 10:00', '2020-10-11 11:00'],
    ] as const) {
      await post(server.baseUrl, { ...appointment(id, start, end), orgId });
    }
    await post(server.baseUrl, {
      ...appointment('elsewhere', '2020-10-10 10:00', '2020-10-10 11:00'),
      orgId: newOrg(),
    });
    const res = await list(orgId);
    expect(res.status).toBe(200);
    expect(res.body.map((a: { id: string }) => a.id)).toEqual(['z', 'a', 'b']);
    expect(res.headers.link).toBeUndefined();
  });

  it('filters by [from, to): appointments overlapping the window', async () => {
    const orgId = newOrg();
    for (const [id, start, end] of [
      ['early', '2020-10-10 08:00', '2020-10-10 09:00'],
      ['across-from', '2020-10-10 09:30', '2020-10-10 10:30'],
      ['inside', '2020-10-10 11:00', '2020-10-10 12:00'],
      ['across-to', '2020-10-10 12:30', '2020-10-10 13:30'],
      ['late', '2020-10-10 14:00', '2020-10-10 15:00'],
    ] as const) {
      await post(server.baseUrl, { ...appointment(id, start, end), orgId });
    }
    const ids = async (query: string) => (await list(orgId, query)).body.map((a: { id: string }) => a.id);
    expect(await ids('&from=2020-10-10 10:00&to=2020-10-10 13:00')).toEqual(['across-from', 'inside', 'across-to']);
    expect(await ids('&from=2020-10-10 09:00')).toEqual(['across-from', 'inside', 'across-to', 'late']);
    expect(await ids('&to=2020-10-10 09:30')).toEqual(['early']);
    expect(await ids('&from=2020-10-10 10:30&to=2020-10-10 11:00')).toEqual([]);
    expect(await ids('&from=2020-10-10 15:00')).toEqual([]);
  });

  it('pages with limit and an opaque cursor in the Link header, every item exactly once', async () => {
    const orgId = newOrg();
    const expected: string[] = [];
    for (let i = 0; i < 23; i++) {
      const id = `p${String(i).padStart(2, '0')}`;
      // pairs share a start minute only across ids with no overlap: consecutive 10-minute slots
      await post(server.baseUrl, {
        ...appointment(
          id,
          `2020-10-10 ${String(8 + Math.floor(i / 6)).padStart(2, '0')}:${String((i % 6) * 10).padStart(2, '0')}`,
          `2020-10-10 ${String(8 + Math.floor(i / 6)).padStart(2, '0')}:${String((i % 6) * 10 + 9).padStart(2, '0')}`,
        ),
        orgId,
      });
      expected.push(id);
    }
    const seen: string[] = [];
    let path: string | undefined = `/api/appointments?orgId=${orgId}&limit=5`;
    let pages = 0;
    while (path) {
      const res = await http(server.baseUrl, 'GET', path);
      expect(res.status).toBe(200);
      expect(res.body.length).toBeLessThanOrEqual(5);
      seen.push(...res.body.map((a: { id: string }) => a.id));
      pages++;
      const link = res.headers.link as string | undefined;
      path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
    }
    expect(seen).toEqual(expected);
    expect(pages).toBe(5);
  });

  it('pages a point-in-time read too', async () => {
    const orgId = newOrg();
    for (let i = 0; i < 7; i++)
      await post(server.baseUrl, { ...appointment(`k${i}`, `2020-10-1${i} 10:00`, `2020-10-1${i} 11:00`), orgId });
    const [{ now }] = await server.sql<{ now: string }[]>`
      SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`;
    await post(server.baseUrl, { ...appointment('k9', '2020-10-19 10:00', '2020-10-19 11:00'), orgId });
    const first = await list(orgId, `&at=${now}&limit=4`);
    expect(first.body.map((a: { id: string }) => a.id)).toEqual(['k0', 'k1', 'k2', 'k3']);
    const next = /^<([^>]+)>; rel="next"$/.exec(first.headers.link as string)![1]!;
    expect(next).toContain('at=');
    const second = await http(server.baseUrl, 'GET', next);
    expect(second.body.map((a: { id: string }) => a.id)).toEqual(['k4', 'k5', 'k6']);
    expect(second.headers.link).toBeUndefined();
  });
});

describe('point-in-time reads', () => {
  it('shows each version at, between and after its changes; nothing before the first', async () => {
    const orgId = newOrg();
    const v1 = (
      await post(server.baseUrl, {
        ...appointment('h', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 10:00'),
        orgId,
      })
    ).body.appointment;
    const v2 = (
      await post(server.baseUrl, {
        ...appointment('h', '2020-10-10 12:00', '2020-10-10 13:00', '2020-09-28 11:00'),
        orgId,
      })
    ).body.appointment;
    const other = (await post(server.baseUrl, { ...appointment('i', '2020-10-10 10:00', '2020-10-10 11:00'), orgId }))
      .body.appointment;
    await http(server.baseUrl, 'DELETE', `/api/appointments/h?orgId=${orgId}`);
    const [{ deletedAt }] = await server.sql<{ deletedAt: string }[]>`
      SELECT to_char(deleted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "deletedAt"
      FROM appointments WHERE org_id = ${orgId} AND id = 'h'`;

    const at = async (instant: string) => (await list(orgId, `&at=${instant}`)).body;
    expect(await at('2000-01-01 00:00')).toEqual([]);
    expect(await at(before(v1.recordedAt))).toEqual([]);
    expect(await at(v1.recordedAt)).toEqual([v1]);
    expect(await at(before(v2.recordedAt))).toEqual([v1]);
    expect(await at(v2.recordedAt)).toEqual([v2]);
    expect(await at(other.recordedAt)).toEqual([other, v2]);
    expect(await at(before(deletedAt))).toEqual([other, v2]);
    expect(await at(deletedAt)).toEqual([other]);
    expect(await at('9999-12-31 23:59')).toEqual([other]);
    // combined with a window
    expect(await at(`${v2.recordedAt}&from=2020-10-10 11:30`)).toEqual([v2]);
    expect(await at(`${v2.recordedAt}&to=2020-10-10 11:30`)).toEqual([]);

    const one = (instant: string) => http(server.baseUrl, 'GET', `/api/appointments/h?orgId=${orgId}&at=${instant}`);
    expect((await one(v1.recordedAt)).body).toEqual(v1);
    expect((await one(v2.recordedAt)).body).toEqual(v2);
    expect((await one(deletedAt)).status).toBe(404);
    expect((await one(before(v1.recordedAt))).status).toBe(404);
  });
});

describe('history', () => {
  it('404 for an id that never existed in the org, also when it exists in another org', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('only-here', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const res = await history(newOrg(), 'only-here');
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('NOT_FOUND');
  });
});
