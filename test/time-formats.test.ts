import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from 'postgres';
import { createSql, toMilliseconds } from '../src/db/client.js';
import { parseTime } from '../src/schemas/time.js';
import { shiftMicroseconds } from '../scripts/lib/time.js';
import { createTestDatabase } from './support/database.js';
import { CLASSIC, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// Times without a zone are UTC whatever the zone of the process (vitest.config.ts runs the tests in
// Pacific/Chatham, +13:45 in October); appointment times keep milliseconds (finer digits truncated),
// system times (recordedAt, validFrom, validTo, `at`) keep microseconds.

const MS_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const US_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

describe('parseTime: accepted forms', () => {
  it.each([
    // separators, seconds
    ['2020-10-10 20:20', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T20:20', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10 20:20:05', '2020-10-10T20:20:05.000Z'],
    ['2020-10-10T20:20:05', '2020-10-10T20:20:05.000Z'],
    ['2020-10-10 00:00:00', '2020-10-10T00:00:00.000Z'],
    ['2020-10-10 23:59:59', '2020-10-10T23:59:59.000Z'],
    // fractions of 1 to 9 digits, truncated (never rounded) to milliseconds
    ['2020-10-10 20:20:05.1', '2020-10-10T20:20:05.100Z'],
    ['2020-10-10 20:20:05.12', '2020-10-10T20:20:05.120Z'],
    ['2020-10-10 20:20:05.123', '2020-10-10T20:20:05.123Z'],
    ['2020-10-10 20:20:05.1234', '2020-10-10T20:20:05.123Z'],
    ['2020-10-10 20:20:00.123456', '2020-10-10T20:20:00.123Z'],
    ['2020-10-10 20:20:05.123456789', '2020-10-10T20:20:05.123Z'],
    ['2020-10-10 20:20:05.999999999', '2020-10-10T20:20:05.999Z'],
    ['2020-12-31 23:59:59.9999', '2020-12-31T23:59:59.999Z'],
    ['2020-10-10 20:20:05.0009', '2020-10-10T20:20:05.000Z'],
    // zones
    ['2020-10-10 20:20Z', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T20:20:00.000Z', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T22:20:00+02:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10 22:20+02:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T08:20:00-12:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-11T10:20:00+14:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-11T10:05:00+13:45', '2020-10-10T20:20:00.000Z'],
    ['2020-10-11T02:05:00+05:45', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T20:20:00+00:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T22:20:00.123456+02:00', '2020-10-10T20:20:00.123Z'],
    // an offset that moves the day, the month and the year
    ['2021-01-01 01:00+02:00', '2020-12-31T23:00:00.000Z'],
    ['2020-12-31 20:00-05:00', '2021-01-01T01:00:00.000Z'],
    ['2020-03-01 01:00+02:00', '2020-02-29T23:00:00.000Z'],
    // leap days
    ['2020-02-29 12:00', '2020-02-29T12:00:00.000Z'],
    ['2000-02-29 12:00', '2000-02-29T12:00:00.000Z'],
    ['2024-02-29T00:00', '2024-02-29T00:00:00.000Z'],
    // months of 30 and 31 days
    ['2020-04-30 10:00', '2020-04-30T10:00:00.000Z'],
    ['2020-12-31 10:00', '2020-12-31T10:00:00.000Z'],
    // the ends of the range, and years 1-99 (not 1900-1999)
    ['0001-01-01 00:00', '0001-01-01T00:00:00.000Z'],
    ['0001-01-01 00:00-00:01', '0001-01-01T00:01:00.000Z'],
    ['0050-06-15 12:00', '0050-06-15T12:00:00.000Z'],
    ['0099-12-31 23:59', '0099-12-31T23:59:00.000Z'],
    ['9999-12-31 23:59:59.999999', '9999-12-31T23:59:59.999Z'],
    ['9999-12-31 23:59+00:01', '9999-12-31T23:58:00.000Z'],
  ])('%s -> %s (milliseconds)', (text, expected) => {
    expect(parseTime(text, 3)).toBe(expected);
  });

  it.each([
    ['2020-10-10 20:20', '2020-10-10T20:20:00.000000Z'],
    ['2020-10-10 20:20:05', '2020-10-10T20:20:05.000000Z'],
    ['2020-10-10 20:20:05.1', '2020-10-10T20:20:05.100000Z'],
    ['2020-10-10 20:20:05.123', '2020-10-10T20:20:05.123000Z'],
    ['2020-10-10 20:20:05.1234', '2020-10-10T20:20:05.123400Z'],
    ['2020-10-10 20:20:00.123456', '2020-10-10T20:20:00.123456Z'],
    ['2020-10-10 20:20:05.1234567', '2020-10-10T20:20:05.123456Z'],
    ['2020-10-10 20:20:05.123456789', '2020-10-10T20:20:05.123456Z'],
    ['2020-10-10 20:20:05.999999999', '2020-10-10T20:20:05.999999Z'],
    ['2020-10-10 20:20:05.000999999', '2020-10-10T20:20:05.000999Z'],
    ['2020-10-10 20:20:05.0000009', '2020-10-10T20:20:05.000000Z'],
    ['2020-10-10T22:20:00.000001+02:00', '2020-10-10T20:20:00.000001Z'],
    ['2020-10-11T10:20:00.654321+14:00', '2020-10-10T20:20:00.654321Z'],
    ['2020-10-10T08:20:00.5-12:00', '2020-10-10T20:20:00.500000Z'],
    ['2026-11-22T14:05:00.123456Z', '2026-11-22T14:05:00.123456Z'],
    ['0001-01-01 00:00:00.000001', '0001-01-01T00:00:00.000001Z'],
    ['9999-12-31 23:59:59.999999', '9999-12-31T23:59:59.999999Z'],
  ])('%s -> %s (microseconds)', (text, expected) => {
    expect(parseTime(text, 6)).toBe(expected);
  });

  it('does not depend on the zone of the process', () => {
    expect(process.env.TZ).toBe('Pacific/Chatham');
    // the zone is in effect: local time in Chatham is not UTC
    expect(new Date('2020-10-10T20:20:00Z').getTimezoneOffset()).toBe(-825);
    expect(parseTime('2020-10-10 20:20', 3)).toBe('2020-10-10T20:20:00.000Z');
    expect(parseTime('2020-10-10 20:20', 6)).toBe('2020-10-10T20:20:00.000000Z');
  });
});

describe('parseTime: rejected forms', () => {
  it.each([
    // impossible dates and times
    '2020-02-30 10:00',
    '2021-02-29 10:00',
    '1900-02-29 10:00',
    '2100-02-29 10:00',
    '2020-04-31 10:00',
    '2020-06-31 10:00',
    '2020-13-01 10:00',
    '2020-00-10 10:00',
    '2020-10-00 10:00',
    '2020-10-32 10:00',
    '2020-10-10 25:61',
    '2020-10-10 24:00',
    '2020-10-10 24:00:00',
    '2020-10-10 10:60',
    '2020-12-31 23:59:60',
    '2020-10-10 99:99:99',
    '0000-10-10 10:00',
    '0000-01-01 00:00',
    // an offset that pushes the UTC year out of 1..9999
    '0001-01-01 00:00+00:01',
    '0001-01-01 00:59+01:00',
    '9999-12-31 23:59-00:01',
    '9999-12-31 23:00-01:00',
    // formats
    '2020-10-10',
    '10/10/2020 20:20',
    '2020/10/10 20:20',
    '20:20',
    '2020-10-10 20',
    '2020-10-10 20:2',
    '2020-10-10 2:20',
    '2020-1-10 20:20',
    '2020-10-1 20:20',
    '20-10-10 20:20',
    '12020-10-10 20:20',
    '+2020-10-10 20:20',
    '-2020-10-10 20:20',
    '20201010T2020',
    '2020-10-10 20:20x',
    '2020-10-10 20:20Zx',
    '2020-10-10 20:20:00 ',
    '2020-10-10 20:20\n',
    '\n2020-10-10 20:20',
    ' 2020-10-10 20:20',
    '2020-10-10  20:20',
    '2020-10-10\t20:20',
    '2020-10-10\u00a020:20',
    '2020-10-10_20:20',
    '2020-10-10 20:20 Z',
    '2020-10-10 20:20 +02:00',
    '2020-10-10 20:20+24:00',
    '2020-10-10 20:20-24:00',
    '2020-10-10 20:20+02:60',
    '2020-10-10 20:20+02',
    '2020-10-10 20:20+2:00',
    '2020-10-10 20:20Z+02:00',
    '2020-10-10 20:20+02:00Z',
    '2020-10-10 20:20:00.',
    '2020-10-10 20:20:00.1234567890',
    '2020-10-10 20:20.5',
    '2020-10-10 20:20:00,5',
    '2020-10-10 20:20:5',
    '２０２０-１０-１０ ２０:２０',
    '٢٠٢٠-١٠-١٠ ٢٠:٢٠',
    '2020-10-10 20:20:00.１２３',
    'tomorrow',
    'now',
    '',
    '1602361200000',
  ])('%j', (text) => {
    expect(parseTime(text, 3)).toBeNull();
    expect(parseTime(text, 6)).toBeNull();
  });
});

/** `YYYY-MM-DD` and `HH:MM:SS.mmm` of the UTC fields of a Date, the year padded to four digits. */
function wallClock(date: Date): { date: string; time: string; year: number } {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const year = date.getUTCFullYear();
  return {
    year,
    date: `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`,
    time: `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}`,
  };
}

const offsetText = (minutes: number) =>
  `${minutes < 0 ? '-' : '+'}${String(Math.floor(Math.abs(minutes) / 60)).padStart(2, '0')}:${String(Math.abs(minutes) % 60).padStart(2, '0')}`;

describe('parseTime: properties', () => {
  const instant = fc.date({
    min: new Date('0001-01-01T00:00:00.000Z'),
    max: new Date('9999-12-31T23:59:59.999Z'),
    noInvalidDate: true,
  });
  // every real offset, from -12:00 to +14:00, in quarter hours
  const offsetMinutes = fc.integer({ min: -48, max: 56 }).map((quarters) => quarters * 15);

  it('reads a wall-clock time with any offset as the instant it names, or refuses it when it falls outside the years 1..9999', () => {
    fc.assert(
      fc.property(
        instant,
        offsetMinutes,
        fc.constantFrom(' ', 'T'),
        fc.constantFrom('Z', '+00:00', ''),
        fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 6 }),
        (date, offset, separator, utcZone, finer) => {
          const wall = wallClock(new Date(date.getTime() + offset * 60_000));
          // milliseconds followed by 0 to 6 finer digits: 3 to 9 fraction digits
          const text = `${wall.date}${separator}${wall.time}${finer}${offset === 0 ? utcZone : offsetText(offset)}`;
          const inRange = wall.year >= 1 && wall.year <= 9999;
          expect(parseTime(text, 3)).toBe(inRange ? date.toISOString() : null);
          const micros = `${finer}000`.slice(0, 3);
          expect(parseTime(text, 6)).toBe(inRange ? `${date.toISOString().slice(0, 23)}${micros}Z` : null);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a UTC time (no zone, Z, +00:00 or -00:00) is the instant Date reads, whatever its year, fraction and separator', () => {
    fc.assert(
      fc.property(
        instant,
        fc.constantFrom(' ', 'T'),
        fc.constantFrom('Z', '+00:00', '-00:00', ''),
        fc.constantFrom(16, 19, 21, 23, 26, 29),
        (date, separator, zone, length) => {
          const iso = date.toISOString();
          const text = `${iso.slice(0, 10)}${separator}${`${iso.slice(11, 23)}456789`.slice(0, length - 11)}${zone}`;
          const seconds = length >= 19 ? iso.slice(17, 19) : '00';
          const fraction = length >= 21 ? `${iso.slice(20, 23)}456789`.slice(0, length - 20).padEnd(6, '0') : '000000';
          const expected = `${iso.slice(0, 17)}${seconds}.${fraction.slice(0, 3)}Z`;
          expect(parseTime(text, 3)).toBe(expected);
          expect(parseTime(text, 6)).toBe(`${expected.slice(0, 23)}${fraction.slice(3, 6)}Z`);
          expect(parseTime(text, 3)).toBe(new Date(expected).toISOString());
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('its answers are canonical: sortable, and read back as themselves', () => {
    fc.assert(
      fc.property(instant, instant, fc.integer({ min: 0, max: 999 }), (a, b, micro) => {
        const ta = parseTime(a.toISOString(), 3)!;
        const tb = parseTime(b.toISOString(), 3)!;
        expect(ta).toMatch(MS_ISO);
        expect(parseTime(ta, 3)).toBe(ta);
        // canonical strings compare like the instants they name
        expect(Math.sign(ta.localeCompare(tb, 'en'))).toBe(Math.sign(a.getTime() - b.getTime()));
        expect(ta < tb).toBe(a.getTime() < b.getTime());
        const us = parseTime(`${a.toISOString().slice(0, 23)}${String(micro).padStart(3, '0')}Z`, 6)!;
        expect(us).toMatch(US_ISO);
        expect(parseTime(us, 6)).toBe(us);
        expect(parseTime(us, 3)).toBe(ta);
      }),
      { numRuns: 500 },
    );
  });

  it('a time written without seconds is the minute it names', () => {
    fc.assert(
      fc.property(instant, offsetMinutes, (date, offset) => {
        const minute = new Date(Math.floor(date.getTime() / 60_000) * 60_000);
        const wall = wallClock(new Date(minute.getTime() + offset * 60_000));
        fc.pre(wall.year >= 1 && wall.year <= 9999);
        expect(parseTime(`${wall.date} ${wall.time.slice(0, 5)}${offsetText(offset)}`, 3)).toBe(minute.toISOString());
      }),
      { numRuns: 500 },
    );
  });
});

it('shiftMicroseconds borrows and carries across seconds', () => {
  expect(shiftMicroseconds('2020-01-01T00:00:00.000000Z', -1)).toBe('2019-12-31T23:59:59.999999Z');
  expect(shiftMicroseconds('2020-01-01T00:00:00.123457Z', -1)).toBe('2020-01-01T00:00:00.123456Z');
  expect(shiftMicroseconds('2020-01-01T00:00:00.999999Z', 1)).toBe('2020-01-01T00:00:01.000000Z');
});

describe('times from PostgreSQL', () => {
  // The service's pool has the driver print each timestamptz (client.ts); to_char() prints them as
  // the service once did.
  let sql: Sql;
  beforeAll(async () => {
    sql = createSql({ databaseUrl: await createTestDatabase(), poolMax: 1 });
  });
  afterAll(() => sql.end());

  it("read through the service's pool, a time is what to_char() prints, whatever its year and fraction", async () => {
    await sql`SELECT setseed(0.25)`;
    const rows = await sql<{ t: string; expected: string; ms: string; expectedMs: string }[]>`
      SELECT t, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS expected,
             date_trunc('milliseconds', t) AS ms, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "expectedMs"
      FROM (
        SELECT date_trunc(unit, timestamptz '0001-01-01 00:00:00+00' + random() * interval '3652058 days') AS t
        FROM generate_series(1, 1000), unnest(array['microseconds', 'milliseconds', 'second', 'minute', 'day']) AS unit
        UNION ALL
        SELECT unnest(array['0001-01-01 00:00:00+00', '9999-12-31 23:59:59.999999+00', '2020-10-10 20:20:00.5+00',
                            '2020-10-10 20:20:00.05+00', '2020-10-10 20:20:00.000001+00', '2020-10-10 20:20:00.1+00',
                            '2020-10-10 20:20:00.123+00', '2020-10-10 20:20:00.12345+00', '1999-12-31 23:59:59.99+00']::timestamptz[])
      ) AS times`;
    expect(rows.length).toBe(5009);
    for (const row of rows) {
      expect(row.t).toBe(row.expected);
      expect(row.t).toMatch(US_ISO);
      expect(toMilliseconds(row.ms)).toBe(row.expectedMs);
    }
  });
});

describe('times over HTTP', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  const body = (orgId: string, fields: Record<string, unknown> = {}) => ({ ...CLASSIC[0], orgId, ...fields });

  it('runs in a zone far from UTC', () => {
    expect(process.env.TZ).toBe('Pacific/Chatham');
    expect(new Date('2020-10-10T20:20:00Z').getTimezoneOffset()).toBe(-825);
  });

  it('a time without a zone is UTC, in the answer, the stored row, the reads and the history', async () => {
    const orgId = newOrg('utc');
    const res = await post(server.baseUrl, body(orgId));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const expected = {
      id: '1',
      orgId,
      start: '2020-10-10T20:20:00.000Z',
      end: '2020-10-10T20:30:00.000Z',
      createdAt: '2020-09-02T14:23:12.000Z',
      updatedAt: '2020-09-28T14:23:12.000Z',
      version: 1,
    };
    expect(res.body.appointment).toMatchObject(expected);

    const [stored] = await server.sql<
      { startIsUtc: boolean; endIsUtc: boolean; createdIsUtc: boolean; updatedIsUtc: boolean }[]
    >`
      SELECT start_at = '2020-10-10 20:20:00+00'::timestamptz AS "startIsUtc",
             end_at = '2020-10-10 20:30:00+00'::timestamptz AS "endIsUtc",
             created_at = '2020-09-02 14:23:12+00'::timestamptz AS "createdIsUtc",
             updated_at = '2020-09-28 14:23:12+00'::timestamptz AS "updatedIsUtc"
      FROM appointments WHERE org_id = ${orgId} AND id = '1'`;
    expect(stored).toEqual({ startIsUtc: true, endIsUtc: true, createdIsUtc: true, updatedIsUtc: true });

    const read = await http(server.baseUrl, 'GET', `/api/appointments/1?orgId=${orgId}`);
    expect(read.body).toMatchObject(expected);
    const list = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}`);
    expect(list.body).toHaveLength(1);
    expect(list.body[0]).toMatchObject(expected);
    const history = await http(server.baseUrl, 'GET', `/api/appointments/1/history?orgId=${orgId}`);
    expect(history.body).toEqual([
      {
        version: 1,
        start: expected.start,
        end: expected.end,
        createdAt: expected.createdAt,
        updatedAt: expected.updatedAt,
        validFrom: res.body.appointment.recordedAt,
        validTo: null,
        deleted: false,
      },
    ]);
  });

  // Each input as start, createdAt and updatedAt (the end far later), then as end (the start far earlier).
  it.each([
    ['2020-10-10 20:20', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T20:20', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10 20:20:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T20:20:00Z', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T22:20:00+02:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10T08:20:00-12:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-11T10:20:00+14:00', '2020-10-10T20:20:00.000Z'],
    ['2020-10-11T10:05:00+13:45', '2020-10-10T20:20:00.000Z'],
    ['2020-10-10 20:20:00.123456', '2020-10-10T20:20:00.123Z'],
    ['2020-10-10 20:20:00.1', '2020-10-10T20:20:00.100Z'],
    ['2020-10-10 20:20:59.9999', '2020-10-10T20:20:59.999Z'],
    ['2020-10-10T22:20:00.123456789+02:00', '2020-10-10T20:20:00.123Z'],
    ['2020-02-29 12:00', '2020-02-29T12:00:00.000Z'],
    ['2021-01-01 01:00+02:00', '2020-12-31T23:00:00.000Z'],
    ['0001-01-01 00:30', '0001-01-01T00:30:00.000Z'],
    ['0001-01-01T01:30+01:00', '0001-01-01T00:30:00.000Z'],
    ['0050-06-15 12:00', '0050-06-15T12:00:00.000Z'],
    ['9999-12-31 23:00', '9999-12-31T23:00:00.000Z'],
  ])('%s comes back as %s', async (text, expected) => {
    const orgId = newOrg('fmt');
    const asStart = await post(
      server.baseUrl,
      body(orgId, { start: text, end: '9999-12-31 23:59:59.999', createdAt: text, updatedAt: text }),
    );
    expect(asStart.status, JSON.stringify(asStart.body)).toBe(201);
    expect(asStart.body.appointment).toMatchObject({
      start: expected,
      createdAt: expected,
      updatedAt: expected,
      end: '9999-12-31T23:59:59.999Z',
    });

    // As the end of an appointment that the first one follows: adjacent only if both read the same instant.
    const asEnd = await post(server.baseUrl, body(orgId, { id: 2, start: '0001-01-01 00:00', end: text }));
    expect(asEnd.status, JSON.stringify(asEnd.body)).toBe(201);
    expect(asEnd.body.appointment).toMatchObject({ start: '0001-01-01T00:00:00.000Z', end: expected });
    const list = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}`);
    expect(list.body.map((a: { id: string; start: string; end: string }) => [a.id, a.start, a.end])).toEqual([
      ['2', '0001-01-01T00:00:00.000Z', expected],
      ['1', expected, '9999-12-31T23:59:59.999Z'],
    ]);
  });

  it('finer digits are not stored: two writes that differ below the millisecond are the same version', async () => {
    const orgId = newOrg('trunc');
    const first = await post(
      server.baseUrl,
      body(orgId, { start: '2020-10-10 20:20:00.123456', updatedAt: '2020-09-28 14:23:12.000001' }),
    );
    expect(first.status).toBe(201);
    const [stored] = await server.sql<{ start: string; updated: string }[]>`
      SELECT to_char(start_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS start,
             to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS updated
      FROM appointments WHERE org_id = ${orgId} AND id = '1'`;
    expect(stored).toEqual({ start: '2020-10-10T20:20:00.123000', updated: '2020-09-28T14:23:12.000000' });
    const again = await post(
      server.baseUrl,
      body(orgId, { start: '2020-10-10 20:20:00.123999', updatedAt: '2020-09-28 14:23:12.000999' }),
    );
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('unchanged');
    expect(again.body.appointment.version).toBe(1);
  });

  it('the same instants written in other zones are the same version', async () => {
    const orgId = newOrg('zones');
    expect((await post(server.baseUrl, body(orgId))).status).toBe(201);
    const again = await post(
      server.baseUrl,
      body(orgId, {
        start: '2020-10-10T22:20:00.000+02:00',
        end: '2020-10-10T08:30-12:00',
        createdAt: '2020-09-03T04:08:12+13:45',
        updatedAt: '2020-09-28T14:23:12Z',
      }),
    );
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('unchanged');
    expect(again.body.appointment).toMatchObject({
      version: 1,
      start: '2020-10-10T20:20:00.000Z',
      end: '2020-10-10T20:30:00.000Z',
    });
  });

  it('ranges written in different zones meet exactly: adjacent is fine, one millisecond more overlaps', async () => {
    const orgId = newOrg('adjacent');
    expect(
      (await post(server.baseUrl, body(orgId, { start: '2020-10-10 20:20', end: '2020-10-10 21:00' }))).status,
    ).toBe(201);
    const next = await post(
      server.baseUrl,
      body(orgId, { id: 2, start: '2020-10-10T23:00+02:00', end: '2020-10-10T23:30+02:00' }),
    );
    expect(next.status, JSON.stringify(next.body)).toBe(201);
    expect(next.body.appointment).toMatchObject({ start: '2020-10-10T21:00:00.000Z', end: '2020-10-10T21:30:00.000Z' });
    const overlapping = await post(
      server.baseUrl,
      body(orgId, { id: 3, start: '2020-10-10T22:59:59.999+02:00', end: '2020-10-10 21:00' }),
    );
    expect(overlapping.status).toBe(409);
    expect(overlapping.body.conflictsWith).toEqual({
      id: '1',
      start: '2020-10-10T20:20:00.000Z',
      end: '2020-10-10T21:00:00.000Z',
    });
    // finer digits are truncated, not rounded: 20:59:59.9999 is 20:59:59.999, still inside [20:20, 21:00)
    const truncated = await post(
      server.baseUrl,
      body(orgId, { id: 4, start: '2020-10-10T22:59:59.9999+02:00', end: '2020-10-10 21:00' }),
    );
    expect(truncated.status, JSON.stringify(truncated.body)).toBe(409);
  });

  it('from and to without a zone are UTC, and may carry an offset', async () => {
    const orgId = newOrg('window');
    expect((await post(server.baseUrl, body(orgId))).status).toBe(201);
    const ids = async (query: string) => {
      const res = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&${query}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.map((a: { id: string }) => a.id);
    };
    const q = (from: string, to: string) => `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    expect(await ids(q('2020-10-10 20:25', '2020-10-10 20:26'))).toEqual(['1']);
    expect(await ids(q('2020-10-10T22:25+02:00', '2020-10-10T22:26+02:00'))).toEqual(['1']);
    expect(await ids(q('2020-10-10 20:29:59.999', '2020-10-10 21:00'))).toEqual(['1']);
    // half-open: [20:20, 20:30) and [20:30, 21:00) do not meet
    expect(await ids(q('2020-10-10 20:30', '2020-10-10 21:00'))).toEqual([]);
    expect(await ids(q('2020-10-10T22:30+02:00', '2020-10-10 21:00'))).toEqual([]);
    expect(await ids(q('2020-10-10 20:00', '2020-10-10 20:20'))).toEqual([]);
    // 20:25 in Chatham is 06:40 UTC: reading a zone-less time as local would find nothing here
    expect(await ids(q('2020-10-10 06:30', '2020-10-10 06:50'))).toEqual([]);
  });

  it('recordedAt, validFrom and validTo carry six fraction digits, and the periods tile', async () => {
    const orgId = newOrg('system');
    const v1 = await post(server.baseUrl, body(orgId));
    const v2 = await post(server.baseUrl, body(orgId, { updatedAt: '2020-09-29 10:00' }));
    expect(v2.body.status).toBe('updated');
    expect(v1.body.appointment.recordedAt).toMatch(US_ISO);
    expect(v2.body.appointment.recordedAt).toMatch(US_ISO);
    expect(v2.body.appointment.recordedAt > v1.body.appointment.recordedAt).toBe(true);
    const read = await http(server.baseUrl, 'GET', `/api/appointments/1?orgId=${orgId}`);
    expect(read.body.recordedAt).toBe(v2.body.appointment.recordedAt);
    const history = await http(server.baseUrl, 'GET', `/api/appointments/1/history?orgId=${orgId}`);
    expect(
      history.body.map((h: { version: number; validFrom: string; validTo: string | null }) => [
        h.version,
        h.validFrom,
        h.validTo,
      ]),
    ).toEqual([
      [1, v1.body.appointment.recordedAt, v2.body.appointment.recordedAt],
      [2, v2.body.appointment.recordedAt, null],
    ]);
  });

  it("`at` has microsecond precision: exactly a version's recordedAt shows it, one microsecond before does not", async () => {
    const orgId = newOrg('at');
    const v1 = (await post(server.baseUrl, body(orgId))).body.appointment;
    const v2 = (
      await post(
        server.baseUrl,
        body(orgId, { start: '2020-10-10 20:40', end: '2020-10-10 20:50', updatedAt: '2020-09-29 10:00' }),
      )
    ).body.appointment;
    expect(v2.version).toBe(2);
    const one = (at: string) =>
      http(server.baseUrl, 'GET', `/api/appointments/1?orgId=${orgId}&at=${encodeURIComponent(at)}`);
    const list = async (at: string) => {
      const res = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&at=${encodeURIComponent(at)}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.map((a: { version: number; start: string }) => [a.version, a.start]);
    };

    const atV2 = await one(v2.recordedAt);
    expect(atV2.status).toBe(200);
    expect(atV2.body).toEqual(v2);
    expect(await list(v2.recordedAt)).toEqual([[2, '2020-10-10T20:40:00.000Z']]);

    const justBefore = shiftMicroseconds(v2.recordedAt, -1);
    const atV1 = await one(justBefore);
    expect(atV1.status).toBe(200);
    expect(atV1.body).toEqual(v1);
    expect(await list(justBefore)).toEqual([[1, '2020-10-10T20:20:00.000Z']]);

    // the first version, and nothing one microsecond before it
    expect((await one(v1.recordedAt)).body).toEqual(v1);
    const beforeAll = shiftMicroseconds(v1.recordedAt, -1);
    expect((await one(beforeAll)).status).toBe(404);
    expect(await list(beforeAll)).toEqual([]);

    // digits beyond the microsecond are truncated, not rounded up into the next version
    expect((await one(`${justBefore.slice(0, -1)}999Z`)).body.version).toBe(1);
    expect((await one(`${v2.recordedAt.slice(0, -1)}999Z`)).body.version).toBe(2);

    // the same instants without a zone (UTC, not the process's Chatham time) and with an offset
    const noZone = (t: string) => t.slice(0, -1).replace('T', ' ');
    expect((await one(noZone(v2.recordedAt))).body.version).toBe(2);
    expect((await one(noZone(justBefore))).body.version).toBe(1);
    const plusTwo = (t: string) => {
      const d = new Date(Date.parse(`${t.slice(0, 23)}Z`) + 2 * 3600_000).toISOString();
      return `${d.slice(0, 19)}.${t.slice(20, 26)}+02:00`;
    };
    expect((await one(plusTwo(v2.recordedAt))).body.version).toBe(2);
    expect((await one(plusTwo(justBefore))).body.version).toBe(1);
  });

  describe('property: the service accepts exactly the times parseTime accepts', () => {
    const valid = fc
      .record({
        date: fc.date({
          min: new Date('0001-01-01T00:00:00Z'),
          max: new Date('9999-12-30T00:00:00Z'),
          noInvalidDate: true,
        }),
        separator: fc.constantFrom(' ', 'T'),
        length: fc.constantFrom(16, 19, 21, 23, 24, 26, 29),
        zone: fc.constantFrom('', 'Z', '+02:00', '-12:00', '+14:00', '+13:45'),
      })
      .map(({ date, separator, length, zone }) => {
        // YYYY-MM-DD HH:MM, then :SS, then 1 to 9 fraction digits
        const { date: day, time } = wallClock(date);
        return `${`${day}${separator}${time}456789`.slice(0, length)}${zone}`;
      });
    const edit = fc.tuple(
      fc.constantFrom('replace', 'delete', 'insert'),
      fc.nat(),
      fc.constantFrom(...'0123456789-:T Z+.x'),
    );
    const mutated = fc.tuple(valid, fc.array(edit, { maxLength: 3 })).map(([text, edits]) =>
      edits.reduce((s, [kind, at, ch]) => {
        const i = s.length === 0 ? 0 : at % (s.length + (kind === 'insert' ? 1 : 0));
        if (kind === 'replace') return s.slice(0, i) + ch + s.slice(i + 1);
        if (kind === 'delete') return s.slice(0, i) + s.slice(i + 1);
        return s.slice(0, i) + ch + s.slice(i);
      }, text),
    );

    it('a mutated time as start is stored as parseTime reads it, or refused with 400 when parseTime refuses it', async () => {
      let accepted = 0;
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(mutated, async (text) => {
          const orgId = newOrg('fuzz');
          const res = await post(server.baseUrl, body(orgId, { start: text, end: '9999-12-31 23:59:59.999' }));
          const canonical = parseTime(text, 3);
          if (canonical === null || canonical >= '9999-12-31T23:59:59.999Z') {
            refused++;
            expect(res.status, JSON.stringify({ text, body: res.body })).toBe(400);
            expect(res.body.code).toBe('VALIDATION_ERROR');
          } else {
            accepted++;
            expect(res.status, JSON.stringify({ text, body: res.body })).toBe(201);
            expect(res.body.appointment.start).toBe(canonical);
          }
        }),
        { numRuns: 200 },
      );
      // both sides of the line are exercised
      expect(accepted).toBeGreaterThan(20);
      expect(refused).toBeGreaterThan(20);
    });
  });
});
