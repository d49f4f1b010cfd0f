import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/auth.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { insertApiKey } from '../src/db/api-keys.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

describe('security headers, no banner, no CORS by default', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('sends headers fit for a JSON API and names no framework', async () => {
    for (const path of ['/health', '/api/appointments', '/api/appointments/nope']) {
      const res = await http(server.baseUrl, 'GET', path, undefined, { origin: 'https://evil.example' });
      expect(res.headers['content-security-policy']).toBe(
        "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
      );
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['x-powered-by']).toBeUndefined();
      expect(res.headers['server']).toBeUndefined();
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    }
  });

  it('sends the same headers, and the request id, on error answers', async () => {
    const bad = await http(server.baseUrl, 'POST', '/api/appointments', { id: 'x' }, { 'x-request-id': 'req-400' });
    const missing = await http(server.baseUrl, 'GET', '/no/such/route', undefined, { 'x-request-id': 'req-404' });
    for (const [res, status, id] of [
      [bad, 400, 'req-400'],
      [missing, 404, 'req-404'],
    ] as const) {
      expect(res.status).toBe(status);
      expect(res.headers['x-request-id']).toBe(id);
      expect(res.headers['content-security-policy']).toBe(
        "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
      );
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
  });

  it('answers a CORS preflight with no CORS headers when CORS_ORIGIN is unset', async () => {
    const res = await http(server.baseUrl, 'OPTIONS' as 'GET', '/api/appointments', undefined, {
      origin: 'https://evil.example',
      'access-control-request-method': 'POST',
    });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-allow-methods']).toBeUndefined();
  });

  it('still serves Swagger UI at /api/docs, with a CSP that lets it load its own scripts', async () => {
    const page = await http(server.baseUrl, 'GET', '/api/docs/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('swagger-initializer.js');
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'self'");
    expect(csp).not.toContain('unsafe-eval');
    const script = await http(server.baseUrl, 'GET', '/api/docs/static/swagger-initializer.js');
    expect(script.status).toBe(200);
    expect(String(script.body)).toContain('SwaggerUIBundle');
  });

  it('declares the bearer security scheme and the 401/403/429 answers in the OpenAPI document with AUTH=required', async () => {
    const keyed = await startTestServer({ auth: 'required' });
    try {
      const doc = await http(keyed.baseUrl, 'GET', '/api/docs/json');
      expect(doc.status).toBe(200);
      expect(doc.body.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
      const post = doc.body.paths['/api/appointments'].post;
      for (const status of ['401', '403', '429']) expect(Object.keys(post.responses)).toContain(status);
      expect(post.security).toEqual([{ bearerAuth: [] }]);
    } finally {
      await keyed.close();
    }
    // AUTH=off: the document offers no key and no answer that only keys cause
    const doc = await http(server.baseUrl, 'GET', '/api/docs/json');
    expect(doc.status).toBe(200);
    expect(doc.body.components.securitySchemes).toBeUndefined();
    const post = doc.body.paths['/api/appointments'].post;
    expect(Object.keys(post.responses)).toContain('429');
    expect(Object.keys(post.responses)).not.toContain('401');
    expect(Object.keys(post.responses)).not.toContain('403');
    expect(post.security).toEqual([]);
  });

  it('applies the configured timeouts to the HTTP server', async () => {
    const custom = await startTestServer({
      headersTimeoutMs: 5000,
      requestTimeoutMs: 20000,
      keepAliveTimeoutMs: 7000,
      connectionTimeoutMs: 50000,
    });
    try {
      expect(custom.app.server.headersTimeout).toBe(5000);
      expect(custom.app.server.requestTimeout).toBe(20000);
      expect(custom.app.server.keepAliveTimeout).toBe(7000);
      expect(custom.app.server.timeout).toBe(50000);
    } finally {
      await custom.close();
    }
    expect(server.app.server.headersTimeout).toBe(10000);
    expect(server.app.server.requestTimeout).toBe(30000);
  });
});

describe('CORS when configured', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ corsOrigin: 'https://app.example,https://admin.example' });
  });
  afterAll(() => server.close());

  it('allows the configured origins only', async () => {
    const preflight = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' };
    const ok = await http(server.baseUrl, 'OPTIONS' as 'GET', '/api/appointments', undefined, {
      origin: 'https://admin.example',
      ...preflight,
    });
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe('https://admin.example');
    const other = await http(server.baseUrl, 'OPTIONS' as 'GET', '/api/appointments', undefined, {
      origin: 'https://evil.example',
      ...preflight,
    });
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    const get = await http(server.baseUrl, 'GET', '/api/appointments', undefined, { origin: 'https://app.example' });
    expect(get.status).toBe(200);
    expect(get.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(String(get.headers['access-control-expose-headers'])).toContain('link');
  });
});

describe('rate limiting', () => {
  it('answers 429 RATE_LIMITED with Retry-After per client address, and leaves /health alone', async () => {
    const server = await startTestServer({ rateLimitMax: 3, rateLimitWindowSeconds: 60 });
    try {
      const org = newOrg('rl');
      for (let i = 0; i < 3; i++)
        expect((await http(server.baseUrl, 'GET', `/api/appointments?orgId=${org}`)).status).toBe(200);
      const limited = await http(
        server.baseUrl,
        'POST',
        '/api/appointments',
        appointment(1, '2020-10-10 20:20', '2020-10-10 20:30', undefined, { orgId: org }),
      );
      expect(limited.status).toBe(429);
      expect(limited.body).toMatchObject({ statusCode: 429, error: 'Too Many Requests', code: 'RATE_LIMITED' });
      expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      // the refused write was not made
      const [{ count }] = await server.sql<
        { count: number }[]
      >`SELECT count(*)::int AS count FROM appointments WHERE org_id = ${org}`;
      expect(count).toBe(0);
      for (let i = 0; i < 5; i++) expect((await http(server.baseUrl, 'GET', '/health')).status).toBe(200);
      expect((await http(server.baseUrl, 'GET', '/api/docs/json')).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('counts per API key when keys are required', async () => {
    const server = await startTestServer({ auth: 'required', rateLimitMax: 2, rateLimitWindowSeconds: 60 });
    try {
      const keys = [];
      for (const org of ['rl-a', 'rl-b']) {
        const generated = generateApiKey();
        await insertApiKey(server.sql, { keyId: generated.keyId, orgId: org, secretHash: generated.secretHash });
        keys.push({ authorization: `Bearer ${generated.key}` });
      }
      for (let i = 0; i < 2; i++)
        expect((await http(server.baseUrl, 'GET', '/api/appointments', undefined, keys[0])).status).toBe(200);
      const limited = await http(server.baseUrl, 'GET', '/api/appointments', undefined, keys[0]);
      expect(limited.status).toBe(429);
      expect(limited.headers['retry-after']).toBeDefined();
      expect((await http(server.baseUrl, 'GET', '/api/appointments', undefined, keys[1])).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('is on by default with a limit the existing workloads do not reach', async () => {
    const server = await startTestServer();
    try {
      const res = await http(server.baseUrl, 'GET', '/api/appointments');
      expect(res.headers['x-ratelimit-limit']).toBe('10000');
    } finally {
      await server.close();
    }
  });
});

describe('configuration', () => {
  it('reads AUTH, rate limits, CORS_ORIGIN and timeouts, and refuses bad values with a message', () => {
    const config = loadConfig({
      AUTH: 'required',
      RATE_LIMIT_MAX: '0',
      RATE_LIMIT_WINDOW: '60',
      CORS_ORIGIN: '',
      HEADERS_TIMEOUT: '5000',
    });
    expect(config).toMatchObject({
      auth: 'required',
      rateLimitMax: 0,
      rateLimitWindowSeconds: 60,
      corsOrigin: undefined,
      headersTimeoutMs: 5000,
    });
    expect(loadConfig({}).auth).toBe('off');
    expect(() => loadConfig({ AUTH: 'yes' })).toThrow(ConfigError);
    expect(() => loadConfig({ CORS_ORIGIN: 'evil example' })).toThrow(/CORS_ORIGIN/);
    expect(() => loadConfig({ RATE_LIMIT_MAX: '-1' })).toThrow(/RATE_LIMIT_MAX/);
  });

  it('takes numbers written in digits only', () => {
    expect(loadConfig({ DB_POOL_MAX: '12', PORT: '0' })).toMatchObject({ dbPoolMax: 12, port: 0 });
    for (const value of ['1.5', 'true', '1e3', ' 7', '0x10', '-1']) {
      expect(() => loadConfig({ DB_POOL_MAX: value }), value).toThrow(
        `DB_POOL_MAX=${JSON.stringify(value)}: Expected integer`,
      );
    }
  });

  it('names a refused DATABASE_URL without its password', () => {
    let message = '';
    try {
      loadConfig({ DATABASE_URL: 'mysql://app:s3cr3t-pw@db.internal:3306/appointments' });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toContain('DATABASE_URL="mysql://app:***@db.internal:3306/appointments"');
    expect(message).not.toContain('s3cr3t-pw');
  });
});
