import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ corsOrigin: 'https://app.example' });
});
afterAll(() => server.close());

const preflight = (path: string, method: string, headers = '') =>
  request(`${server.baseUrl}${path}`, {
    method: 'OPTIONS',
    headers: {
      origin: 'https://app.example',
      'access-control-request-method': method,
      ...(headers ? { 'access-control-request-headers': headers } : {}),
    },
  });

const list = (value: unknown) =>
  String(value)
    .split(',')
    .map((item) => item.trim().toLowerCase());

describe('CORS with CORS_ORIGIN set', () => {
  it('allows in a preflight every method the API serves', async () => {
    for (const [path, method] of [
      ['/api/appointments', 'GET'],
      ['/api/appointments', 'HEAD'],
      ['/api/appointments', 'POST'],
      ['/api/appointments/5', 'DELETE'],
    ]) {
      const res = await preflight(path!, method!);
      await res.body.dump();
      expect(res.statusCode, method).toBe(204);
      expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
      expect(list(res.headers['access-control-allow-methods']), method).toContain(method!.toLowerCase());
    }
  });

  it('allows the methods the routes serve, and no other', async () => {
    // taken from the routes: every method of every /api route of the document, and HEAD beside GET
    const doc = (await http(server.baseUrl, 'GET', '/api/docs/json')).body;
    const served = new Set<string>(['head']);
    for (const [path, item] of Object.entries(doc.paths as Record<string, object>))
      if (path.startsWith('/api/')) for (const method of Object.keys(item)) served.add(method);
    const res = await preflight('/api/appointments/5', 'DELETE');
    await res.body.dump();
    expect(list(res.headers['access-control-allow-methods']).sort()).toEqual([...served].sort());
  });

  it('allows in a preflight every request header the API reads', async () => {
    for (const header of ['content-type', 'authorization', 'x-request-id', 'if-match', 'if-none-match']) {
      const res = await preflight('/api/appointments', 'POST', header);
      await res.body.dump();
      expect(res.statusCode).toBe(204);
      expect(list(res.headers['access-control-allow-headers']), header).toContain(header);
    }
    // a fetch-based event-stream client resuming: GET /api/changes/stream with Last-Event-ID
    const resume = await preflight('/api/changes/stream', 'GET', 'last-event-id');
    await resume.body.dump();
    expect(resume.statusCode).toBe(204);
    expect(list(resume.headers['access-control-allow-headers'])).toContain('last-event-id');
    const all = await preflight(
      '/api/appointments/5',
      'DELETE',
      'content-type,authorization,x-request-id,if-match,if-none-match',
    );
    await all.body.dump();
    expect(list(all.headers['access-control-allow-headers']).sort()).toEqual([
      'authorization',
      'content-type',
      'if-match',
      'if-none-match',
      'last-event-id',
      'x-request-id',
    ]);
  });

  it('lets the page read the headers a client needs', async () => {
    const res = await http(server.baseUrl, 'GET', '/api/appointments', undefined, { origin: 'https://app.example' });
    expect(res.status).toBe(200);
    expect(list(res.headers['access-control-expose-headers']).sort()).toEqual([
      'etag',
      'link',
      'location',
      'retry-after',
      'x-ratelimit-limit',
      'x-ratelimit-remaining',
      'x-ratelimit-reset',
      'x-request-id',
    ]);
  });
});

describe('a DELETE with Content-Type: application/json and no body', () => {
  it('is a DELETE like any other; a POST with no body stays a 400 that says why', async () => {
    const orgId = newOrg('empty-delete');
    expect(
      (await post(server.baseUrl, { ...appointment(1, '2020-10-10 20:20', '2020-10-10 20:30'), orgId })).status,
    ).toBe(201);
    const json = { 'content-type': 'application/json' };
    const deleted = await request(`${server.baseUrl}/api/appointments/1?orgId=${orgId}`, {
      method: 'DELETE',
      headers: json,
    });
    await deleted.body.dump();
    expect(deleted.statusCode).toBe(204);
    expect((await http(server.baseUrl, 'GET', `/api/appointments/1?orgId=${orgId}`)).status).toBe(404);
    // and with an explicit Content-Length: 0
    const again = await request(`${server.baseUrl}/api/appointments/1?orgId=${orgId}`, {
      method: 'DELETE',
      headers: { ...json, 'content-length': '0' },
      body: '',
    });
    expect(again.statusCode).toBe(404);
    expect(await again.body.json()).toMatchObject({ code: 'NOT_FOUND' });

    const empty = await request(`${server.baseUrl}/api/appointments`, { method: 'POST', headers: json, body: '' });
    expect(empty.statusCode).toBe(400);
    expect(await empty.body.json()).toMatchObject({
      code: 'VALIDATION_ERROR',
      message: "Body cannot be empty when content-type is set to 'application/json'",
    });
  });
});

describe('a known path with a method it does not serve', () => {
  it('is 405 METHOD_NOT_ALLOWED with Allow, for every path of the document; unknown paths stay 404', async () => {
    const doc = (await http(server.baseUrl, 'GET', '/api/docs/json')).body;
    const concrete = (path: string) => path.replace('{id}', '5');
    const paths = Object.entries(doc.paths as Record<string, object>);
    // a concrete path can match several documented ones: /api/appointments/batch is also the appointment `batch`
    const matches = (pattern: string, concretePath: string) =>
      new RegExp(`^${pattern.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(concretePath);
    for (const [path] of paths) {
      const documented = paths
        .filter(([pattern]) => matches(pattern, concrete(path)))
        .flatMap(([, item]) => Object.keys(item).map((method) => method.toUpperCase()));
      // HEAD comes with GET; a path served by POST only (a webhook's enable) has none
      const allow = ['GET', 'HEAD', 'POST', 'DELETE'].filter(
        (m) => documented.includes(m) || (m === 'HEAD' && documented.includes('GET')),
      );
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !documented.includes(m))) {
        const res = await http(server.baseUrl, method as 'PUT', concrete(path));
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.allow, `${method} ${path}`).toBe(allow.join(', '));
        expect(res.body).toEqual({
          statusCode: 405,
          error: 'Method Not Allowed',
          code: 'METHOD_NOT_ALLOWED',
          message: `${method} is not allowed on ${concrete(path)}; allowed: ${allow.join(', ')}`,
        });
      }
    }
    for (const [method, path] of [
      ['PUT', '/api/nope'],
      ['GET', '/api/appointments/5/nope'],
      ['PATCH', '/nope'],
    ] as const) {
      const res = await http(server.baseUrl, method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.headers.allow).toBeUndefined();
      expect(res.body.code).toBe('NOT_FOUND');
    }
  });

  it('answers the trailing-slash path 404 for every method, saying that the path has none', async () => {
    for (const method of ['GET', 'POST', 'DELETE', 'PUT'] as const) {
      const res = await http(server.baseUrl, method, '/api/appointments/', method === 'POST' ? {} : undefined);
      expect(res.status, method).toBe(404);
      expect(res.headers.allow).toBeUndefined();
      expect(res.body).toMatchObject({
        code: 'NOT_FOUND',
        message: `Route ${method} /api/appointments/ not found; the path has no trailing slash`,
      });
    }
  });
});

describe("the client's x-request-id", () => {
  const idOf = async (value?: string | string[]) => {
    const res = await request(`${server.baseUrl}/health`, {
      headers: value === undefined ? {} : { 'x-request-id': value },
    });
    await res.body.dump();
    return res.headers['x-request-id'];
  };
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('is echoed when it is 1 to 128 characters from A-Z a-z 0-9 . _ : -', async () => {
    for (const id of ['abc-123', 'A.b_c:d-9', 'x', 'a'.repeat(128), randomUUID()]) expect(await idOf(id)).toBe(id);
  });

  it('is replaced by a new UUID otherwise', async () => {
    for (const id of ['a'.repeat(129), 'a'.repeat(600), '<script>', 'a b', 'café', '', 'a/b', 'a,b']) {
      const answered = await idOf(id);
      expect(answered, JSON.stringify(id)).toMatch(UUID);
    }
    expect(await idOf(['one', 'two'])).toMatch(UUID);
    const [a, b] = [await idOf(), await idOf()];
    expect(a).toMatch(UUID);
    expect(b).not.toBe(a);
  });
});
