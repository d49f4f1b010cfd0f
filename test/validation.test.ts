import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseDigest } from './support/database.js';
import { CLASSIC, newOrg } from './support/fixtures.js';
import { http, post, raw as rawRequest, type HttpResult } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// Every malformed request is answered with its 4xx and a stable code, in Fastify's error shape, and
// changes nothing in the database. Each case works in an org of its own, seeded with appointment 5,
// so that a request wrongly accepted would show up as a new row, a new version or a deleted row.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  // Other orgs' data, so that the tables are not empty when a case compares them.
  const other = newOrg('bystander');
  for (const [id, start, end] of [
    [1, '2020-10-10 20:20', '2020-10-10 20:30'],
    ['b', '2020-10-11 10:00', '2020-10-11 11:30'],
  ] as const) {
    expect((await post(server.baseUrl, { ...validBody(other), id, start, end })).status).toBe(201);
  }
});
afterAll(() => server.close());

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
};

/** The documented error codes a client can cause, by status. */
const CODE_OF_STATUS: Record<number, string> = {
  400: 'VALIDATION_ERROR',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'APPOINTMENT_OVERLAP',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
};

/** Payload 5 of the classic workload with valid times, in the given org. */
function validBody(orgId: string): Record<string, unknown> {
  return { ...CLASSIC[4], end: '2020-10-12 12:27', orgId };
}

const withField = (orgId: string, field: string, value: unknown) => ({ ...validBody(orgId), [field]: value });

function withoutField(orgId: string, field: string) {
  const body = validBody(orgId);
  delete body[field];
  return body;
}

/** The JSON text of a valid body with extra raw members spliced in before the others. */
const rawBody = (orgId: string, members: string) =>
  `{${members}${members ? ',' : ''}${JSON.stringify(validBody(orgId)).slice(1)}`;

/** A request exactly as given: no content type is added, the body is sent as it is. */
const raw = (
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: string | Buffer | Readable,
  headers: Record<string, string> = {},
) => rawRequest(server.baseUrl, method, path, body, headers);

/** Everything stored, in a form that changes with any insert, update or delete. */
const databaseState = () => databaseDigest(server.sql);

/** Words that only an internal error would show: SQL, constraint and table names, stack frames. */
const LEAKS = [
  /\b(SELECT|INSERT|UPDATE|DELETE FROM|ON CONFLICT|RETURNING)\b/,
  /constraint|sqlstate|postgres|syntax error at|violates/i,
  /appointments_|appointment_versions|_pkey|upsert_appointment|write_appointment|api_time|timestamptz/,
  /\n\s+at |node_modules|\.[jt]s:\d+/,
  /"stack"/,
];

function expectErrorBody(res: HttpResult, status: number, code: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  // an overlap names the appointment in the way; no other error has more than these four
  const keys = ['code', 'error', 'message', 'statusCode', ...(status === 409 ? ['conflictsWith'] : [])];
  expect(Object.keys(res.body).sort()).toEqual(keys.sort());
  expect(res.body).toMatchObject({ statusCode: status, error: STATUS_TEXT[status], code });
  expect(typeof res.body.message).toBe('string');
  expect(res.body.message.length).toBeGreaterThan(0);
  const text = JSON.stringify(res.body);
  for (const leak of LEAKS) expect(text).not.toMatch(leak);
}

interface BadRequestCase {
  name: string;
  send: (orgId: string) => Promise<HttpResult>;
  status: number;
  code: string;
  /** Text the message must contain, such as the name of the offending property. */
  mentions?: string;
  /** The Allow header of a 405. */
  allow?: string;
}

/**
 * Runs each case in a fresh org holding appointment 5 (an older version of the valid body), and checks
 * the answer and that the database is exactly as before.
 */
function runCases(cases: BadRequestCase[]) {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const orgId = newOrg('bad');
    const seeded = await post(server.baseUrl, { ...validBody(orgId), updatedAt: '2020-01-01 00:00' });
    expect(seeded.status).toBe(201);
    const before = await databaseState();
    const res = await c.send(orgId);
    expectErrorBody(res, c.status, c.code);
    if (c.mentions !== undefined) expect(res.body.message).toContain(c.mentions);
    expect(res.headers.allow).toBe(c.allow);
    expect(await databaseState()).toEqual(before);
  });
}

const postBody = (body: unknown) => (orgId: string) =>
  post(server.baseUrl, typeof body === 'function' ? body(orgId) : body);
/** POST a JSON text as it is, with content type application/json. */
const postJsonText = (text: (orgId: string) => string) => (orgId: string) =>
  http(server.baseUrl, 'POST', '/api/appointments', text(orgId));

const FIELDS = ['id', 'start', 'end', 'createdAt', 'updatedAt'] as const;
const TIME_FIELDS = ['start', 'end', 'createdAt', 'updatedAt'] as const;

/** With a bad start or end, the other end as far away as it goes, so that the order of the two cannot be the reason for the 400. */
const OTHER_END_OF_RANGE: Record<string, Record<string, string>> = {
  start: { end: '9999-12-31 23:59:59.999' },
  end: { start: '0001-01-01 00:00' },
};

const BAD_TIMES: Array<[string, unknown]> = [
  // impossible dates and times
  ['February 30th', '2020-02-30 10:00'],
  ['February 29th of a common year', '2021-02-29 10:00'],
  ['February 29th of 1900 (not a leap year)', '1900-02-29 10:00'],
  ['April 31st', '2020-04-31 10:00'],
  ['month 13', '2020-13-01 10:00'],
  ['month 00', '2020-00-10 10:00'],
  ['day 00', '2020-10-00 10:00'],
  ['25:61', '2020-10-10 25:61'],
  ['minute 60', '2020-10-10 10:60'],
  ['24:00', '2020-10-10 24:00'],
  ['a leap second 23:59:60', '2020-12-31 23:59:60'],
  ['year 0000', '0000-10-10 10:00'],
  ['an offset that takes the UTC year to 0000', '0001-01-01 00:00+00:01'],
  ['an offset that takes the UTC year to 10000', '9999-12-31 23:59-00:01'],
  // formats that are not accepted
  ['a date without a time', '2020-10-10'],
  ['a US date', '10/10/2020 20:20'],
  ['a time without a date', '20:20'],
  ['trailing garbage', '2020-10-10 20:20x'],
  ['trailing garbage after Z', '2020-10-10 20:20Zx'],
  ['a trailing space', '2020-10-10 20:20 '],
  ['a trailing newline', '2020-10-10 20:20\n'],
  ['a leading space', ' 2020-10-10 20:20'],
  ['two spaces', '2020-10-10  20:20'],
  ['a space before the offset', '2020-10-10 20:20 +02:00'],
  ['offset +24:00', '2020-10-10 20:20+24:00'],
  ['offset +02:60', '2020-10-10 20:20+02:60'],
  ['an offset without minutes', '2020-10-10 20:20+02'],
  ['Z and an offset', '2020-10-10 20:20Z+02:00'],
  ['a dot without fraction digits', '2020-10-10 20:20:00.'],
  ['ten fraction digits', '2020-10-10 20:20:00.1234567890'],
  ['a fraction without seconds', '2020-10-10 20:20.5'],
  ['a comma as decimal sign', '2020-10-10 20:20:00,5'],
  ['one-digit hour', '2020-10-10 2:20'],
  ['one-digit month', '2020-1-10 20:20'],
  ['two-digit year', '20-10-10 20:20'],
  ['five-digit year', '12020-10-10 20:20'],
  ['a signed year', '+2020-10-10 20:20'],
  ['compact ISO', '20201010T2020'],
  ['full-width digits', '２０２０-１０-１０ ２０:２０'],
  ['Arabic-Indic digits', '٢٠٢٠-١٠-١٠ ٢٠:٢٠'],
  ['a non-breaking space', '2020-10-10\u00a020:20'],
  ['a word', 'tomorrow'],
  ['an empty string', ''],
  ['epoch milliseconds as a number', 1602361200000],
  ['epoch milliseconds as a string', '1602361200000'],
  ['null', null],
  ['true', true],
  ['an object', { date: '2020-10-10', time: '20:20' }],
  ['an array', ['2020-10-10 20:20']],
];

describe('POST /api/appointments: bad bodies', () => {
  runCases([
    {
      name: 'end before start (payload 5 of the classic workload)',
      send: postBody(CLASSIC[4]),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'end before start, in an org',
      send: postBody((orgId: string) => withField(orgId, 'end', '2020-10-10 12:27')),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'end',
    },
    {
      name: 'end equal to start',
      send: postBody((orgId: string) => withField(orgId, 'end', '2020-10-12 11:27')),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'end',
    },
    {
      name: 'end equal to start, written in another zone',
      send: postBody((orgId: string) => withField(orgId, 'end', '2020-10-12T13:27:00.000+02:00')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'end one millisecond before start',
      send: postBody((orgId: string) => ({
        ...withField(orgId, 'start', '2020-10-12 11:27:00.001'),
        end: '2020-10-12 11:27',
      })),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'end after start by less than a millisecond (both truncate to the same instant)',
      send: postBody((orgId: string) => ({
        ...withField(orgId, 'start', '2020-10-12 11:27:00.0001'),
        end: '2020-10-12 11:27:00.0009',
      })),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    ...FIELDS.map((field) => ({
      name: `missing ${field}`,
      send: postBody((orgId: string) => withoutField(orgId, field)),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: field,
    })),
    { name: 'an empty object', send: postBody({}), status: 400, code: 'VALIDATION_ERROR' },
    {
      name: 'an unknown property',
      send: postBody((orgId: string) => withField(orgId, 'colour', 'blue')),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'colour',
    },
    {
      name: 'an unknown property in snake_case (start_at)',
      send: postBody((orgId: string) => withField(orgId, 'start_at', '2020-10-12 11:27')),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'start_at',
    },
    {
      name: 'an unknown property that the response has (version)',
      send: postBody((orgId: string) => withField(orgId, 'version', 7)),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'version',
    },
    {
      name: 'an unknown property with a null value',
      send: postBody((orgId: string) => withField(orgId, 'deletedAt', null)),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'deletedAt',
    },
    ...(
      [
        ['id -1', -1],
        ['id 0', 0],
        ['id 1.5', 1.5],
        ['id -0.5', -0.5],
        ['id true', true],
        ['id false', false],
        ['id null', null],
        ['id ""', ''],
        ['id of 129 characters', 'a'.repeat(129)],
        ['id with a space', 'a b'],
        ['id with a slash', 'a/b'],
        ['id with a question mark', 'a?b'],
        ['id with a percent sign', 'a%20b'],
        ['id with unicode', 'rendez-vous-é'],
        ['id with an emoji', 'appt-😀'],
        ['id with a NUL character', 'a\u0000b'],
        ['id with a trailing newline', 'abc\n'],
        ['id 2^53 + 2', 2 ** 53 + 2],
        ['id 1e21', 1e21],
        ['id as an object', { id: 1 }],
        ['id as an array', [1]],
      ] as Array<[string, unknown]>
    ).map(([name, id]) => ({
      name,
      send: postBody((orgId: string) => withField(orgId, 'id', id)),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'id',
    })),
    {
      name: 'id 2^53 + 1 written in the JSON text (parses to 2^53)',
      send: postJsonText((orgId) => rawBody(orgId, '"id":9007199254740993').replace(/,"id":5/, '')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'id 1e400 written in the JSON text (parses to Infinity)',
      send: postJsonText((orgId) => rawBody(orgId, '"id":1e400').replace(/,"id":5/, '')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'id with bytes that are not UTF-8',
      send: (orgId) =>
        raw(
          'POST',
          '/api/appointments',
          Buffer.concat([
            Buffer.from(`{"id":"a`),
            Buffer.from([0xff, 0xfe]),
            Buffer.from(`",${JSON.stringify(validBody(orgId)).slice(8)}`),
          ]),
          { 'content-type': 'application/json' },
        ),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    ...(
      [
        ['orgId ""', ''],
        ['orgId with a space', 'acme corp'],
        ['orgId with a slash', 'acme/eu'],
        ['orgId with unicode', 'société'],
        ['orgId of 129 characters', 'o'.repeat(129)],
        ['orgId as a number', 42],
        ['orgId null', null],
        ['orgId as an array', ['acme']],
      ] as Array<[string, unknown]>
    ).map(([name, orgId]) => ({
      name,
      send: postBody((org: string) => withField(org, 'orgId', orgId)),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'orgId',
    })),
    ...TIME_FIELDS.flatMap((field) =>
      BAD_TIMES.map(([name, value]) => ({
        name: `${field}: ${name} (${JSON.stringify(value)})`,
        send: postBody((orgId: string) => ({ ...withField(orgId, field, value), ...OTHER_END_OF_RANGE[field] })),
        status: 400,
        code: 'VALIDATION_ERROR',
        mentions: field,
      })),
    ),
  ]);
});

describe('POST /api/appointments: bodies that are not a JSON object', () => {
  const json = { 'content-type': 'application/json' };
  runCases([
    {
      name: 'broken JSON',
      send: postJsonText((orgId) => rawBody(orgId, '').slice(0, -5)),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'JSON with a trailing comma',
      send: postJsonText((orgId) => `${rawBody(orgId, '').slice(0, -1)},}`),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    { name: 'JSON with single quotes', send: postJsonText(() => "{'id': 5}"), status: 400, code: 'VALIDATION_ERROR' },
    {
      name: 'two JSON objects',
      send: postJsonText((orgId) => rawBody(orgId, '').repeat(2)),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'an empty body with application/json',
      send: () => raw('POST', '/api/appointments', '', json),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'whitespace only with application/json',
      send: () => raw('POST', '/api/appointments', '  \n', json),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'no body at all and no content type',
      send: () => raw('POST', '/api/appointments'),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'a JSON array of a valid body',
      send: postJsonText((orgId) => `[${rawBody(orgId, '')}]`),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    { name: 'an empty JSON array', send: postJsonText(() => '[]'), status: 400, code: 'VALIDATION_ERROR' },
    {
      name: 'a JSON string',
      send: postJsonText((orgId) => JSON.stringify(rawBody(orgId, ''))),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    { name: 'a JSON number', send: postJsonText(() => '5'), status: 400, code: 'VALIDATION_ERROR' },
    { name: 'JSON null', send: postJsonText(() => 'null'), status: 400, code: 'VALIDATION_ERROR' },
    { name: 'JSON true', send: postJsonText(() => 'true'), status: 400, code: 'VALIDATION_ERROR' },
    {
      name: 'a __proto__ key',
      send: postJsonText((orgId) => rawBody(orgId, '"__proto__":{"isAdmin":true}')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'a __proto__ key holding a valid id',
      send: postJsonText((orgId) => rawBody(orgId, '"__proto__":{"id":6}').replace(/,"id":5/, '')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'a constructor.prototype key',
      send: postJsonText((orgId) => rawBody(orgId, '"constructor":{"prototype":{"isAdmin":true}}')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'a constructor key (an unknown property)',
      send: postJsonText((orgId) => rawBody(orgId, '"constructor":"x"')),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'constructor',
    },
    {
      name: 'a nested __proto__ key in a field',
      send: postJsonText((orgId) => rawBody(orgId, '"start":{"__proto__":{"x":1}}').replace(/,"start":"[^"]*"/, '')),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
  ]);
});

describe('POST /api/appointments: media types and sizes', () => {
  runCases([
    {
      name: 'text/plain holding valid JSON',
      send: (orgId) =>
        raw('POST', '/api/appointments', JSON.stringify(validBody(orgId)), { 'content-type': 'text/plain' }),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a body without a content type',
      send: (orgId) => raw('POST', '/api/appointments', JSON.stringify(validBody(orgId))),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'application/x-www-form-urlencoded',
      send: (orgId) =>
        raw('POST', '/api/appointments', new URLSearchParams(validBody(orgId) as Record<string, string>).toString(), {
          'content-type': 'application/x-www-form-urlencoded',
        }),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'multipart/form-data',
      send: () =>
        raw('POST', '/api/appointments', '--x\r\nContent-Disposition: form-data; name="id"\r\n\r\n5\r\n--x--\r\n', {
          'content-type': 'multipart/form-data; boundary=x',
        }),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'application/xml',
      send: () => raw('POST', '/api/appointments', '<appointment id="5"/>', { 'content-type': 'application/xml' }),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'text/json',
      send: (orgId) =>
        raw('POST', '/api/appointments', JSON.stringify(validBody(orgId)), { 'content-type': 'text/json' }),
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'a body over 1 MiB (with a content length)',
      send: (orgId) =>
        http(server.baseUrl, 'POST', '/api/appointments', rawBody(orgId, `"padding":"${'x'.repeat(1024 * 1024)}"`)),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      name: 'a body of 1 MiB + 1 byte',
      send: (orgId) => http(server.baseUrl, 'POST', '/api/appointments', padTo(rawBody(orgId, ''), 1024 * 1024 + 1)),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      name: 'a body over 1 MiB sent chunked (no content length)',
      send: (orgId) =>
        raw(
          'POST',
          '/api/appointments',
          Readable.from(
            (function* () {
              // {"padding":"xxx…x","id":5,…}: the padding alone is over 1 MiB
              yield Buffer.from('{"padding":"');
              for (let i = 0; i < 17; i++) yield Buffer.alloc(64 * 1024, 'x');
              yield Buffer.from(`",${JSON.stringify(validBody(orgId)).slice(1)}`);
            })(),
          ),
          { 'content-type': 'application/json' },
        ),
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
  ]);
});

/** A JSON object text padded with an unknown property to exactly `bytes` bytes. */
function padTo(objectText: string, bytes: number): string {
  const prefix = '{"padding":"';
  const suffix = `",${objectText.slice(1)}`;
  const text = `${prefix}${'x'.repeat(bytes - prefix.length - suffix.length)}${suffix}`;
  expect(Buffer.byteLength(text)).toBe(bytes);
  return text;
}

describe('GET /api/appointments: bad query strings', () => {
  const list = (query: (orgId: string) => string) => (orgId: string) =>
    http(server.baseUrl, 'GET', `/api/appointments?orgId=${encodeURIComponent(orgId)}&${query(orgId)}`);
  const cursorOf = (value: string) => Buffer.from(value).toString('base64url');
  runCases([
    ...['0', '1001', '-1', 'abc', '1.5', '', '10abc', '0x10', 'Infinity', 'null'].map((limit) => ({
      name: `limit=${limit}`,
      send: list(() => `limit=${encodeURIComponent(limit)}`),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'limit',
    })),
    { name: 'limit given twice', send: list(() => 'limit=10&limit=20'), status: 400, code: 'VALIDATION_ERROR' },
    {
      name: 'from equal to to',
      send: list(() => 'from=2020-10-10%2020:20&to=2020-10-10%2020:20'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'from',
    },
    {
      name: 'from after to',
      send: list(() => 'from=2020-10-11%2020:20&to=2020-10-10%2020:20'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'from',
    },
    {
      name: 'from equal to to, written in different zones',
      send: list(
        () => `from=${encodeURIComponent('2020-10-10T22:20+02:00')}&to=${encodeURIComponent('2020-10-10 20:20')}`,
      ),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    ...['2020-02-30 10:00', '2020-10-10', 'yesterday', '2020-10-10 25:00', '2020-10-10 20:20+24:00'].flatMap((time) =>
      (['from', 'to'] as const).map((param) => ({
        name: `${param}=${time}`,
        send: list(() => `${param}=${encodeURIComponent(time)}`),
        status: 400,
        code: 'VALIDATION_ERROR',
        mentions: param,
      })),
    ),
    {
      name: 'from given twice',
      send: list(() => 'from=2020-10-10%2020:20&from=2020-10-11%2020:20'),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    ...['yesterday', '2020-02-30 10:00', '2020-10-10', '2020-10-10 20:20:00.1234567890', '0000-01-01 00:00', ''].map(
      (at) => ({
        name: `at=${JSON.stringify(at)}`,
        send: list(() => `at=${encodeURIComponent(at)}`),
        status: 400,
        code: 'VALIDATION_ERROR',
        mentions: 'at',
      }),
    ),
    ...(
      [
        ['random base64url', 'q83vEjRWeJq83vEjRWeJ'],
        ['base64url of text that is not JSON', cursorOf('{not json')],
        ['base64url of a JSON object', cursorOf('{"start":"2020-10-10T20:20:00.000Z","id":"1"}')],
        ['base64url of a one-element array', cursorOf('["2020-10-10T20:20:00.000Z"]')],
        ['base64url of an array of numbers', cursorOf('[1,2]')],
        ['base64url of an impossible time', cursorOf('["2020-02-30T20:20:00.000Z","1"]')],
        ['base64url of a bad id', cursorOf('["2020-10-10T20:20:00.000Z","a b"]')],
        ['base64url of an id of 129 characters', cursorOf(`["2020-10-10T20:20:00.000Z","${'a'.repeat(129)}"]`)],
        ['characters outside base64url', 'a+b/c='],
        ['an empty cursor', ''],
        ['a cursor of 2000 characters', 'A'.repeat(2000)],
      ] as Array<[string, string]>
    ).map(([name, cursor]) => ({
      name: `cursor: ${name}`,
      send: list(() => `cursor=${encodeURIComponent(cursor)}`),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'cursor',
    })),
    {
      name: 'an unknown query parameter',
      send: list(() => 'colour=blue'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'colour',
    },
    {
      name: 'a misspelt query parameter (org)',
      send: () => http(server.baseUrl, 'GET', '/api/appointments?org=acme'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'org',
    },
    {
      name: 'orgId with a space',
      send: () => http(server.baseUrl, 'GET', '/api/appointments?orgId=a%20b'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'orgId',
    },
    {
      name: 'orgId empty',
      send: () => http(server.baseUrl, 'GET', '/api/appointments?orgId='),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'orgId',
    },
    {
      name: 'orgId given twice',
      send: (orgId) => http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&orgId=${orgId}`),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'orgId of 129 characters',
      send: () => http(server.baseUrl, 'GET', `/api/appointments?orgId=${'o'.repeat(129)}`),
      status: 400,
      code: 'VALIDATION_ERROR',
    },
  ]);
});

describe('GET and DELETE /api/appointments/:id: bad path values and query strings', () => {
  const one =
    (method: 'GET' | 'DELETE', path: string, query = '') =>
    (orgId: string) =>
      http(server.baseUrl, method, `/api/appointments/${path}?orgId=${encodeURIComponent(orgId)}${query}`);
  const badIds: Array<[string, string]> = [
    ['a space', 'a%20b'],
    ['an encoded slash', 'a%2Fb'],
    ['unicode', 'caf%C3%A9'],
    ['129 characters', 'a'.repeat(129)],
    ['1000 characters', 'a'.repeat(1000)],
    ['a broken percent escape', 'a%ZZb'],
    ['an encoded NUL', 'a%00b'],
  ];
  runCases([
    ...badIds.flatMap(([name, id]) => [
      { name: `GET an id with ${name}`, send: one('GET', id), status: 400, code: 'VALIDATION_ERROR' },
      { name: `DELETE an id with ${name}`, send: one('DELETE', id), status: 400, code: 'VALIDATION_ERROR' },
      {
        name: `GET the history of an id with ${name}`,
        send: one('GET', `${id}/history`),
        status: 400,
        code: 'VALIDATION_ERROR',
      },
    ]),
    {
      name: 'GET with a malformed at',
      send: one('GET', '5', '&at=yesterday'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'at',
    },
    {
      name: 'GET with an impossible at',
      send: one('GET', '5', '&at=2020-02-30%2010:00'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'at',
    },
    {
      name: 'GET with an unknown query parameter',
      send: one('GET', '5', '&colour=blue'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'colour',
    },
    {
      name: 'GET the history with an unknown query parameter',
      send: one('GET', '5/history', '&from=2020-10-10%2020:20'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'from',
    },
    {
      name: 'GET the history at an instant that is no time',
      send: one('GET', '5/history', '&at=2020-13-10%2020:20'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'at',
    },
    {
      name: 'DELETE with an unknown query parameter',
      send: one('DELETE', '5', '&force=true'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'force',
    },
    {
      name: 'DELETE with a malformed orgId',
      send: () => http(server.baseUrl, 'DELETE', '/api/appointments/5?orgId=a%20b'),
      status: 400,
      code: 'VALIDATION_ERROR',
      mentions: 'orgId',
    },
  ]);
});

describe('unknown routes and missing appointments', () => {
  runCases([
    ...(
      [
        ['GET', '/api/nope'],
        ['GET', '/nope'],
        ['GET', '/api'],
        ['GET', '/api/appointments/5/history/1'],
        ['GET', '/api/appointments/5/nope'],
        ['GET', '/api/appointments/'],
        ['POST', '/api/appointments/'],
        ['DELETE', '/api/appointments/'],
        ['GET', '/api/appointments//history'],
        ['GET', '/health/'],
      ] as const
    ).map(([method, path]) => ({
      name: `${method} ${path}`,
      send: (orgId: string) =>
        http(
          server.baseUrl,
          method,
          `${path}?orgId=${orgId}`,
          method === 'GET' || method === 'DELETE' ? undefined : validBody(orgId),
        ),
      status: 404,
      code: 'NOT_FOUND',
    })),
    // A known path with a method it does not serve: 405, and Allow lists the methods it does serve.
    ...(
      [
        ['POST', '/api/appointments/5', 'GET, HEAD, DELETE'],
        ['PUT', '/api/appointments/5', 'GET, HEAD, DELETE'],
        ['PATCH', '/api/appointments/5', 'GET, HEAD, DELETE'],
        ['DELETE', '/api/appointments', 'GET, HEAD, POST'],
        ['PUT', '/api/appointments', 'GET, HEAD, POST'],
        ['PATCH', '/api/appointments', 'GET, HEAD, POST'],
        ['POST', '/api/appointments/5/history', 'GET, HEAD'],
        ['DELETE', '/api/appointments/5/history', 'GET, HEAD'],
        ['POST', '/health', 'GET, HEAD'],
        ['DELETE', '/ready', 'GET, HEAD'],
      ] as const
    ).map(([method, path, allow]) => ({
      name: `${method} ${path}`,
      send: (orgId: string) =>
        http(server.baseUrl, method, `${path}?orgId=${orgId}`, method === 'DELETE' ? undefined : validBody(orgId)),
      status: 405,
      code: 'METHOD_NOT_ALLOWED',
      mentions: `allowed: ${allow}`,
      allow,
    })),
    {
      name: 'GET a missing id',
      send: (orgId) => http(server.baseUrl, 'GET', `/api/appointments/6?orgId=${orgId}`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'GET a missing id at an instant',
      send: (orgId) => http(server.baseUrl, 'GET', `/api/appointments/6?orgId=${orgId}&at=2030-01-01%2000:00`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'GET an existing id before it was recorded',
      send: (orgId) => http(server.baseUrl, 'GET', `/api/appointments/5?orgId=${orgId}&at=2000-01-01%2000:00`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'GET an id of another org',
      send: () => http(server.baseUrl, 'GET', `/api/appointments/5?orgId=${newOrg('empty')}`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'GET the history of a missing id',
      send: (orgId) => http(server.baseUrl, 'GET', `/api/appointments/6/history?orgId=${orgId}`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'DELETE a missing id',
      send: (orgId) => http(server.baseUrl, 'DELETE', `/api/appointments/6?orgId=${orgId}`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'DELETE an id of another org',
      send: () => http(server.baseUrl, 'DELETE', `/api/appointments/5?orgId=${newOrg('empty')}`),
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'DELETE in the default org an id that only another org has',
      send: () => http(server.baseUrl, 'DELETE', `/api/appointments/${newOrg('nowhere')}`),
      status: 404,
      code: 'NOT_FOUND',
    },
  ]);

  it('a deleted appointment is 404 to GET and to a second DELETE, and its history stays', async () => {
    const orgId = newOrg('deleted');
    expect((await post(server.baseUrl, validBody(orgId))).status).toBe(201);
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/5?orgId=${orgId}`)).status).toBe(204);
    const before = await databaseState();
    expectErrorBody(await http(server.baseUrl, 'GET', `/api/appointments/5?orgId=${orgId}`), 404, 'NOT_FOUND');
    expectErrorBody(await http(server.baseUrl, 'DELETE', `/api/appointments/5?orgId=${orgId}`), 404, 'NOT_FOUND');
    expect(await databaseState()).toEqual(before);
    const history = await http(server.baseUrl, 'GET', `/api/appointments/5/history?orgId=${orgId}`);
    expect(history.status).toBe(200);
    expect(history.body).toHaveLength(1);
    expect(history.body[0]).toMatchObject({ version: 1, deleted: true });
  });
});

describe('edge values that are accepted', () => {
  // The rejections above are precise: the values just inside each limit go through.
  it.each([
    ['id 1', 1],
    ['id 2^53 - 1', Number.MAX_SAFE_INTEGER],
    ['id of 128 characters', 'a'.repeat(128)],
    ['id of one character', 'x'],
    ['id of every allowed character', 'AZaz09._:-'],
    ['id "0"-prefixed text', '007'],
  ] as Array<[string, string | number]>)('%s', async (_name, id) => {
    const orgId = newOrg('edge');
    const res = await post(server.baseUrl, withField(orgId, 'id', id));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.appointment.id).toBe(String(id));
    // and it can be read back through the Location header and by id
    const location = res.headers.location as string;
    const read = await http(server.baseUrl, 'GET', location);
    expect(read.status, JSON.stringify(read.body)).toBe(200);
    expect(read.body.id).toBe(String(id));
    const history = await http(
      server.baseUrl,
      'GET',
      `/api/appointments/${encodeURIComponent(String(id))}/history?orgId=${orgId}`,
    );
    expect(history.status, JSON.stringify(history.body)).toBe(200);
    expect(history.body).toHaveLength(1);
  });

  it('an orgId of 128 characters', async () => {
    const orgId = `${newOrg('long')}-`.padEnd(128, 'o');
    const res = await post(server.baseUrl, validBody(orgId));
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.appointment.orgId).toBe(orgId);
    const list = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}`);
    expect(list.body.map((a: { id: string }) => a.id)).toEqual(['5']);
  });

  it('id 5 and id "5" name the same appointment', async () => {
    const orgId = newOrg('same');
    expect((await post(server.baseUrl, validBody(orgId))).status).toBe(201);
    const again = await post(server.baseUrl, withField(orgId, 'id', '5'));
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('unchanged');
  });

  it('application/json with a charset', async () => {
    const orgId = newOrg('charset');
    const res = await raw('POST', '/api/appointments', JSON.stringify(validBody(orgId)), {
      'content-type': 'application/json; charset=utf-8',
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  });

  it('a body of exactly 1 MiB is read (and refused for its unknown property, not for its size)', async () => {
    const orgId = newOrg('mib');
    const before = await databaseState();
    const res = await http(
      server.baseUrl,
      'POST',
      '/api/appointments',
      padTo(JSON.stringify(validBody(orgId)), 1024 * 1024),
    );
    expectErrorBody(res, 400, 'VALIDATION_ERROR');
    expect(res.body.message).toContain('padding');
    expect(await databaseState()).toEqual(before);
  });

  it('limit 1 and 1000 are accepted', async () => {
    for (const limit of [1, 1000]) {
      const res = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${newOrg('limit')}&limit=${limit}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body).toEqual([]);
    }
  });

  it('a cursor from a Link header is accepted', async () => {
    const orgId = newOrg('cursor');
    for (const [id, start, end] of [
      [1, '2020-10-10 10:00', '2020-10-10 11:00'],
      [2, '2020-10-10 11:00', '2020-10-10 12:00'],
    ] as const) {
      expect((await post(server.baseUrl, { ...validBody(orgId), id, start, end })).status).toBe(201);
    }
    const first = await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&limit=1`);
    expect(first.body.map((a: { id: string }) => a.id)).toEqual(['1']);
    const next = /^<([^>]+)>; rel="next"$/.exec(String(first.headers.link))?.[1];
    expect(next).toBeDefined();
    const second = await http(server.baseUrl, 'GET', next!);
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    expect(second.body.map((a: { id: string }) => a.id)).toEqual(['2']);
  });
});

describe('property: no body is answered 5xx', () => {
  // Times that pass validation, and values that look like times but may not.
  const validTime = fc
    .record({
      date: fc.date({
        min: new Date('2000-01-01T00:00:00Z'),
        max: new Date('2040-12-31T23:59:59Z'),
        noInvalidDate: true,
      }),
      separator: fc.constantFrom(' ', 'T'),
      seconds: fc.boolean(),
      zone: fc.constantFrom('', 'Z', '+02:00', '-12:00', '+14:00'),
    })
    .map(({ date, separator, seconds, zone }) => {
      const iso = date.toISOString();
      return `${iso.slice(0, 10)}${separator}${iso.slice(11, seconds ? 23 : 16)}${zone}`;
    });
  const oddTime = fc.constantFrom(...BAD_TIMES.map(([, value]) => value));
  const anyValue = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.string({ maxLength: 40 }), fc.integer(), fc.double());
  const idValue = fc.oneof(
    fc.integer({ min: -5, max: 1000 }),
    fc.stringMatching(/^[A-Za-z0-9._:-]{1,12}$/),
    fc.constantFrom(0, -1, 1.5, 2 ** 53 + 2, '', 'a b', 'a/b', 'é', 'x'.repeat(129), true, null),
    anyValue,
  );
  const timeValue = fc.oneof(validTime, validTime, oddTime, anyValue);
  const orgValue = fc.oneof(
    fc.constant(undefined),
    fc.stringMatching(/^[a-z0-9]{1,8}$/),
    fc.constantFrom('', 'a b', 'é', 7, null),
    anyValue,
  );
  const rightKeysWrongTypes = fc
    .record(
      { id: idValue, start: timeValue, end: timeValue, createdAt: timeValue, updatedAt: timeValue, orgId: orgValue },
      { requiredKeys: [] },
    )
    .map((body) => Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined)));
  const withExtraKeys = fc
    .tuple(
      rightKeysWrongTypes,
      fc.dictionary(
        fc.constantFrom('extra', 'version', 'deletedAt', 'toString', 'constructor', 'valueOf', 'ID', 'Start'),
        anyValue,
        { maxKeys: 2 },
      ),
    )
    .map(([body, extra]) => ({ ...extra, ...body }));
  const anyBody = fc.oneof(fc.jsonValue({ maxDepth: 3 }), rightKeysWrongTypes, rightKeysWrongTypes, withExtraKeys);

  it('random JSON values and near-valid objects get a 2xx or a documented 4xx, and a 4xx writes nothing', async () => {
    // A tag of this run, so that the valid bodies it happens to generate land in orgs of their own.
    const prefix = newOrg('prop');
    let errors = 0;
    await fc.assert(
      fc.asyncProperty(anyBody, async (body) => {
        const sent =
          body !== null &&
          typeof body === 'object' &&
          !Array.isArray(body) &&
          typeof body.orgId === 'string' &&
          /^[a-z0-9]{1,8}$/.test(body.orgId)
            ? { ...body, orgId: `${prefix}-${body.orgId}` }
            : body;
        const before = await databaseState();
        const res = await http(server.baseUrl, 'POST', '/api/appointments', JSON.stringify(sent));
        expect(res.status, JSON.stringify({ sent, body: res.body })).toBeLessThan(500);
        if (res.status >= 400) {
          errors++;
          expect(CODE_OF_STATUS[res.status], `status ${res.status}`).toBeDefined();
          expectErrorBody(res, res.status, CODE_OF_STATUS[res.status]!);
          expect(await databaseState()).toEqual(before);
        } else {
          expect([200, 201]).toContain(res.status);
          expect(Object.keys(res.body).sort()).toEqual(['appointment', 'status']);
        }
      }),
      { numRuns: 200 },
    );
    // the generators do reach the error paths
    expect(errors).toBeGreaterThan(50);
  });
});
