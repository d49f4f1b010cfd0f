import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const batch = (items: unknown[], query = '') =>
  http(server.baseUrl, 'POST', `/api/appointments/batch${query}`, { appointments: items });
const get = (orgId: string, id: string) => http(server.baseUrl, 'GET', `/api/appointments/${id}?orgId=${orgId}`);
const history = (orgId: string, id: string) =>
  http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`);
const stored = async (orgId: string) =>
  (await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&limit=1000`)).body as Array<{ id: string }>;

describe('POST /api/appointments/batch: items in order, each as a single POST', () => {
  it('answers each item as a single POST would, in order, with its ETag', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('u', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    await post(server.baseUrl, { ...appointment('s', '2020-10-10 12:00', '2020-10-10 13:00'), orgId });
    const res = await batch([
      { ...appointment('n', '2020-10-10 08:00', '2020-10-10 09:00'), orgId },
      { ...appointment('u', '2020-10-10 10:00', '2020-10-10 11:30', '2020-09-29 10:00'), orgId },
      { ...appointment('u', '2020-10-10 10:00', '2020-10-10 11:30', '2020-09-29 10:00'), orgId },
      { ...appointment('s', '2020-10-10 12:00', '2020-10-10 12:30', '2020-09-01 10:00'), orgId },
      { ...appointment(7, '2020-10-10 10:30', '2020-10-10 10:45'), orgId },
    ]);
    expect(res.status).toBe(200);
    const results = res.body.results as Array<Record<string, any>>;
    expect(results.map((r) => r.status)).toEqual(['created', 'updated', 'unchanged', 'stale', 'rejected']);
    expect(results[0]!.appointment).toMatchObject({ id: 'n', orgId, version: 1, start: '2020-10-10T08:00:00.000Z' });
    expect(results[1]!.appointment).toMatchObject({ id: 'u', version: 2, end: '2020-10-10T11:30:00.000Z' });
    expect(results[2]!.appointment).toEqual(results[1]!.appointment);
    expect(results[3]!.appointment).toMatchObject({ id: 's', version: 1, end: '2020-10-10T13:00:00.000Z' });
    expect(results[4]).toEqual({
      status: 'rejected',
      error: {
        statusCode: 409,
        code: 'APPOINTMENT_OVERLAP',
        message: 'The appointment overlaps another appointment of the organization',
        conflictsWith: { id: 'u', start: '2020-10-10T10:00:00.000Z', end: '2020-10-10T11:30:00.000Z' },
      },
    });
    // the ETag of each written result names the stored version, as the database prints it
    for (const r of results.slice(0, 4)) {
      const [row] = await server.sql<Array<{ etag: string }>>`
        SELECT appointment_etag(version, recorded_at) AS etag FROM appointments
        WHERE org_id = ${orgId} AND id = ${r.appointment.id as string}`;
      expect(r.etag).toBe(row!.etag);
    }
    expect(results[0]!.etag).toMatch(/^"1-\d+"$/);
    expect((await get(orgId, '7')).status).toBe(404);
  });

  it('two overlapping new items: the first wins, the second names it', async () => {
    const orgId = newOrg();
    const res = await batch([
      { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId },
      { ...appointment('b', '2020-10-10 10:30', '2020-10-10 11:30'), orgId },
    ]);
    expect(res.body.results[0].status).toBe('created');
    expect(res.body.results[1]).toMatchObject({
      status: 'rejected',
      error: { statusCode: 409, code: 'APPOINTMENT_OVERLAP', conflictsWith: { id: 'a' } },
    });
    expect((await stored(orgId)).map((a) => a.id)).toEqual(['a']);
  });

  it('one id twice: two POSTs in a row (created, then updated, two versions in history)', async () => {
    const orgId = newOrg();
    const res = await batch([
      { ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00'), orgId },
      { ...appointment('x', '2020-10-10 12:00', '2020-10-10 13:00', '2020-09-29 00:00'), orgId },
    ]);
    expect(res.body.results.map((r: { status: string }) => r.status)).toEqual(['created', 'updated']);
    expect(res.body.results[1].appointment.version).toBe(2);
    const h = await history(orgId, 'x');
    expect(h.body.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    expect(h.body[0].validTo).toBe(h.body[1].validFrom);
    // and an item moving out of a range frees it for the next item
    const moved = await batch([
      { ...appointment('x', '2020-10-10 14:00', '2020-10-10 15:00', '2020-09-30 00:00'), orgId },
      { ...appointment('y', '2020-10-10 12:00', '2020-10-10 13:00'), orgId },
    ]);
    expect(moved.body.results.map((r: { status: string }) => r.status)).toEqual(['updated', 'created']);
  });

  it('a malformed item is rejected by its index and property; the others are written', async () => {
    const orgId = newOrg();
    const res = await batch([
      { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId },
      { ...appointment('b', '2020-10-10 12:00', '2020-10-10 11:00'), orgId },
      { ...appointment('c', '2020-10-10 12:00', 'soon'), orgId },
      { ...appointment('d', '2020-10-10 12:00', '2020-10-10 13:00'), orgId, colour: 'red' },
      'not an object',
      { ...appointment('e', '2020-10-10 14:00', '2020-10-10 15:00'), orgId },
    ]);
    expect(res.status).toBe(200);
    const errors = res.body.results.map((r: { error?: { message: string } }) => r.error);
    expect(res.body.results.map((r: { status: string }) => r.status)).toEqual([
      'created',
      'rejected',
      'rejected',
      'rejected',
      'rejected',
      'created',
    ]);
    expect(errors[1]).toEqual({
      statusCode: 400,
      code: 'VALIDATION_ERROR',
      message: 'body/appointments/1/end must be after body/appointments/1/start',
    });
    expect(errors[2].message).toMatch(/^body\/appointments\/2\/end must be a real date and time/);
    expect(errors[3].message).toBe("body/appointments/3 must not have the property 'colour'");
    expect(errors[4].message).toBe('body/appointments/4 must be object');
    expect((await stored(orgId)).map((a) => a.id)).toEqual(['a', 'e']);
  });

  it('accepts the item ids and times a single POST accepts (1 and "1" are one id)', async () => {
    const orgId = newOrg();
    const res = await batch([
      { ...appointment(1, '2020-10-10T12:00:00+02:00', '2020-10-10 11:00:00.5'), orgId },
      { ...appointment('1', '2020-10-10 10:00', '2020-10-10 11:00:00.500'), orgId },
    ]);
    expect(res.body.results.map((r: { status: string }) => r.status)).toEqual(['created', 'unchanged']);
    expect(res.body.results[0].appointment).toMatchObject({
      id: '1',
      start: '2020-10-10T10:00:00.000Z',
      end: '2020-10-10T11:00:00.500Z',
    });
  });

  it('uses the org "default" for items without orgId', async () => {
    const id = newOrg('batch-default');
    const res = await batch([appointment(id, '1998-01-01 10:00', '1998-01-01 11:00')]);
    expect(res.body.results[0].appointment.orgId).toBe('default');
  });
});
