import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availabilityCase, hoursParameter, type AvailabilityCase } from './support/availability-arbitraries.js';
import { availabilityOracle } from './support/availability-oracle.js';
import { generateApiKey } from '../src/auth.js';
import { insertApiKey } from '../src/db/api-keys.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// GET /api/availability: the query string's rules, and the whole answer (busy, free, slots) against the
// brute-force oracle (test/support/availability-oracle.ts) for the zones issue 13 names.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const get = (query: Record<string, string | number>) =>
  server.app.inject({
    method: 'GET',
    url: `/api/availability?${new URLSearchParams(query as Record<string, string>)}`,
  });

async function writeCalendar(orgId: string, appointments: AvailabilityCase['appointments']) {
  let n = 0;
  for (const { start, end } of appointments) {
    const res = await server.app.inject({
      method: 'POST',
      url: '/api/appointments',
      payload: { ...appointment(`a${n++}`, start, end), orgId },
    });
    expect(res.statusCode).toBe(201);
  }
}

const queryOf = (orgId: string, c: AvailabilityCase) => ({
  orgId,
  from: c.from,
  to: c.to,
  timeZone: c.timeZone,
  ...(c.hours === undefined ? {} : { hours: hoursParameter(c.hours) }),
  ...(c.days === undefined ? {} : { days: c.days.join(',') }),
  ...(c.duration === undefined ? {} : { duration: c.duration }),
  ...(c.step === undefined ? {} : { step: c.step }),
});

describe('GET /api/availability', () => {
  it('answers busy, free and slots of a Berlin week with opening hours', async () => {
    const orgId = newOrg('av');
    await writeCalendar(orgId, [
      { start: '2026-03-23T08:00:00.000Z', end: '2026-03-23T09:00:00.000Z' },
      { start: '2026-03-23T09:00:00.000Z', end: '2026-03-23T09:30:00.000Z' },
    ]);
    const res = await get({
      orgId,
      from: '2026-03-23T00:00:00+01:00',
      to: '2026-03-24 00:00',
      timeZone: 'europe/berlin',
      hours: '09:00-12:00,13:00-14:00',
      days: 'mon',
      duration: 60,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      orgId,
      from: '2026-03-22T23:00:00.000Z',
      to: '2026-03-24T00:00:00.000Z',
      busy: [{ start: '2026-03-23T08:00:00.000Z', end: '2026-03-23T09:30:00.000Z' }],
      free: [
        { start: '2026-03-23T09:30:00.000Z', end: '2026-03-23T11:00:00.000Z' },
        { start: '2026-03-23T12:00:00.000Z', end: '2026-03-23T13:00:00.000Z' },
      ],
      // the grid from 23:00Z every hour: 09:00Z starts before the free time, 11:00Z is closed
      slots: [
        { start: '2026-03-23T10:00:00.000Z', end: '2026-03-23T11:00:00.000Z' },
        { start: '2026-03-23T12:00:00.000Z', end: '2026-03-23T13:00:00.000Z' },
      ],
    });
  });

  it('echoes at with microseconds', async () => {
    const res = await get({ from: '2026-01-01', to: '2026-01-02 00:00', at: '2026-01-01 00:00:00.1234567' });
    expect(res.statusCode).toBe(400);
    const ok = await get({ from: '2026-01-01 00:00', to: '2026-01-02 00:00', at: '2026-01-01 00:00:00.1234567' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({
      orgId: 'default',
      from: '2026-01-01T00:00:00.000Z',
      to: '2026-01-02T00:00:00.000Z',
      at: '2026-01-01T00:00:00.123456Z',
      busy: [],
      free: [{ start: '2026-01-01T00:00:00.000Z', end: '2026-01-02T00:00:00.000Z' }],
    });
    expect(ok.json().slots).toBeUndefined();
  });

  it.each([
    [{ from: '' }, 'from'],
    [{ to: '2026-01-02' }, 'to'],
    [{ from: '2026-01-02 00:00', to: '2026-01-02 00:00' }, 'from'],
    [{ from: '2026-01-01 00:00', to: '2027-01-02 00:00:00.001' }, 'to'],
    [{ timeZone: 'PST' }, 'timeZone'],
    [{ timeZone: 'UTC+3' }, 'timeZone'],
    [{ timeZone: '+05:30' }, 'timeZone'],
    [{ timeZone: 'posix/Europe/Berlin' }, 'timeZone'],
    [{ timeZone: 'localtime' }, 'timeZone'],
    [{ hours: '09:00-09:00' }, 'hours'],
    [{ hours: '17:00-09:00' }, 'hours'],
    [{ hours: '24:00-24:00' }, 'hours'],
    [{ hours: '9:00-17:00' }, 'hours'],
    [{ hours: '09:00-17:00,' }, 'hours'],
    [{ hours: '22:00-06:00' }, 'hours'],
    [{ days: 'Mon' }, 'days'],
    [{ days: 'mon,,tue' }, 'days'],
    [{ duration: 0 }, 'duration'],
    [{ duration: 1441 }, 'duration'],
    [{ duration: 30, step: 0 }, 'step'],
    [{ step: 30 }, 'step'],
    [{ limit: 3 }, 'limit'],
    [{ from: '2026-01-01 00:00', to: '2026-01-08 00:00', duration: 1, step: 1 }, 'step'],
  ] as [Record<string, string | number>, string][])('400 for %o, naming %s', async (query, name) => {
    const res = await get({ from: '2026-01-01 00:00', to: '2026-01-02 00:00', ...query });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'VALIDATION_ERROR' });
    expect(res.json().message).toContain(name);
  });

  it('400 without from or to', async () => {
    for (const [query, name] of [
      [{ to: '2026-01-02 00:00' }, 'from'],
      [{ from: '2026-01-01 00:00' }, 'to'],
    ] as const) {
      const res = await get(query);
      expect(res.statusCode).toBe(400);
      expect(res.json().message).toContain(name);
    }
  });

  it('answers at the ends of the years the service keeps, in zones far from UTC', async () => {
    for (const [from, to] of [
      ['0001-01-01 00:00', '0001-01-03 00:00'],
      ['9999-12-30 00:00', '9999-12-31 23:59:59.999'],
    ]) {
      for (const timeZone of ['Pacific/Kiritimati', 'Pacific/Pago_Pago']) {
        const res = await get({ from, to, timeZone, hours: '00:00-12:00,20:00-24:00', duration: 60, step: 720 });
        expect(res.statusCode, `${from} ${timeZone}`).toBe(200);
        expect(res.json().free.length).toBeGreaterThan(0);
      }
    }
  });

  it('allows a window of exactly 366 days and exactly 10,000 slots', async () => {
    expect((await get({ from: '2026-01-01 00:00', to: '2027-01-02 00:00' })).statusCode).toBe(200);
    const res = await get({ from: '2026-01-01 00:00', to: '2026-01-07 22:40', duration: 1 });
    expect(res.statusCode).toBe(200);
    expect(res.json().slots).toHaveLength(10_000);
  });

  it('equals the oracle on random calendars, windows, zones, hours, days, durations and steps', async () => {
    await fc.assert(
      fc.asyncProperty(availabilityCase, async (c) => {
        const orgId = newOrg('avp');
        await writeCalendar(orgId, c.appointments);
        const expected = availabilityOracle(c);
        const res = await get(queryOf(orgId, c));
        if ((expected.slots?.length ?? 0) > 10_000) {
          expect(res.statusCode).toBe(400);
          return;
        }
        expect(res.statusCode).toBe(200);
        expect(res.json()).toEqual({ orgId, from: c.from, to: c.to, ...expected });
      }),
      { numRuns: 150 },
    );
  });
});

describe('availability is advice, not a lock', () => {
  it('a slot shown free and booked by two clients at once: exactly one gets 201', async () => {
    const orgId = newOrg('race');
    const window = { orgId, from: '2026-05-04T07:00:00Z', to: '2026-05-04T09:00:00Z', duration: 60 };
    const shown = await get(window);
    expect(shown.json().slots).toEqual([
      { start: '2026-05-04T07:00:00.000Z', end: '2026-05-04T08:00:00.000Z' },
      { start: '2026-05-04T08:00:00.000Z', end: '2026-05-04T09:00:00.000Z' },
    ]);
    const slot = shown.json().slots[0];
    for (let round = 0; round < 5; round++) {
      const from = new Date(Date.parse(slot.start) + round * 86_400_000).toISOString();
      const to = new Date(Date.parse(slot.end) + round * 86_400_000).toISOString();
      const answers = await Promise.all(
        ['first', 'second'].map((client) =>
          post(server.baseUrl, { ...appointment(`${client}-${round}`, from, to), orgId }),
        ),
      );
      expect(answers.map((a) => a.status).sort()).toEqual([201, 409]);
      const after = await get({ ...window, from, to: new Date(Date.parse(to) + 3_600_000).toISOString() });
      expect(after.json().busy).toEqual([{ start: from, end: to }]);
      expect(after.json().slots).toEqual([{ start: to, end: new Date(Date.parse(to) + 3_600_000).toISOString() }]);
    }
  });
});

describe('availability with API keys (AUTH=required)', () => {
  let keyed: TestServer;
  const auth: Record<string, Record<string, string>> = {};
  beforeAll(async () => {
    keyed = await startTestServer({ auth: 'required' });
    for (const org of ['avail-alpha', 'avail-bravo']) {
      const key = generateApiKey();
      await insertApiKey(keyed.sql, { keyId: key.keyId, orgId: org, secretHash: key.secretHash, label: org });
      auth[org] = { authorization: `Bearer ${key.key}` };
    }
    const created = await http(
      keyed.baseUrl,
      'POST',
      '/api/appointments',
      appointment('alpha-1', '2026-05-04 08:00', '2026-05-04 09:00'),
      auth['avail-alpha'],
    );
    expect(created.status).toBe(201);
  });
  afterAll(() => keyed.close());

  const window = 'from=2026-05-04T00:00:00Z&to=2026-05-05T00:00:00Z';

  it("answers for the key's organization, and 403 for another", async () => {
    const own = await http(keyed.baseUrl, 'GET', `/api/availability?${window}`, undefined, auth['avail-alpha']);
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({
      orgId: 'avail-alpha',
      busy: [{ start: '2026-05-04T08:00:00.000Z', end: '2026-05-04T09:00:00.000Z' }],
    });
    const other = await http(
      keyed.baseUrl,
      'GET',
      `/api/availability?${window}&orgId=avail-alpha`,
      undefined,
      auth['avail-bravo'],
    );
    expect(other.status).toBe(403);
    expect(other.body).toMatchObject({ code: 'FORBIDDEN' });
    const bravo = await http(keyed.baseUrl, 'GET', `/api/availability?${window}`, undefined, auth['avail-bravo']);
    expect(bravo.body).toMatchObject({ orgId: 'avail-bravo', busy: [] });
    const none = await http(keyed.baseUrl, 'GET', `/api/availability?${window}`);
    expect(none.status).toBe(401);
  });
});
