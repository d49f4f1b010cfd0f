import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

describe('health and readiness', () => {
  it('/health answers 200 while the process runs', async () => {
    const res = await http(server.baseUrl, 'GET', '/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('/ready answers 200 when the database answers and is migrated', async () => {
    const res = await http(server.baseUrl, 'GET', '/ready');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready' });
  });

  it('/ready answers 503 when a migration is missing from the database', async () => {
    const [last] = await server.sql<{ name: string }[]>`SELECT name FROM pgmigrations ORDER BY id DESC LIMIT 1`;
    await server.sql`DELETE FROM pgmigrations WHERE name = ${last!.name}`;
    try {
      const res = await http(server.baseUrl, 'GET', '/ready');
      expect(res.status).toBe(503);
      expect(res.body).toEqual({ status: 'unavailable', reason: 'migrations pending' });
    } finally {
      await server.sql`INSERT INTO pgmigrations (name, run_on) VALUES (${last!.name}, now())`;
    }
    expect((await http(server.baseUrl, 'GET', '/ready')).status).toBe(200);
  });

  it("every response carries a request id, the caller's when it sends one", async () => {
    const res = await http(server.baseUrl, 'GET', '/health', undefined, { 'x-request-id': 'abc-123' });
    expect(res.headers['x-request-id']).toBe('abc-123');
    const other = await http(server.baseUrl, 'GET', '/health');
    expect(other.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
