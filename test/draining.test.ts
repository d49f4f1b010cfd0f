import { Client } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { appointment, newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';

// How an instance leaves a load balancer: /ready fails first while the API still serves, and once the
// close has begun, a request still arriving gets the service's own 503, never Fastify's bare one.

describe('an instance that stops', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('answers 503 on /ready while draining, and serves everything else', async () => {
    server = await startTestServer();
    const { baseUrl } = server;
    expect((await fetch(`${baseUrl}/ready`)).status).toBe(200);
    await server.app.drain(0);
    const ready = await fetch(`${baseUrl}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'unavailable', reason: 'shutting down' });
    expect((await fetch(`${baseUrl}/health`)).status).toBe(200);
    const orgId = newOrg('draining');
    const created = await fetch(`${baseUrl}/api/appointments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(appointment('a', '2020-10-10 10:00', '2020-10-10 11:00', undefined, { orgId })),
    });
    expect(created.status).toBe(201);
  });

  it('waits out the delay it is given before it resolves', async () => {
    server = await startTestServer();
    const started = performance.now();
    await server.app.drain(300);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('answers a request that arrives during the close with its own 503 and Retry-After', async () => {
    server = await startTestServer();
    const { app, baseUrl, sql } = server;
    const orgId = newOrg('closing');
    // one connection, two requests pipelined on it: the second is read only after the first answered,
    // and the first is held in flight by a lock until the close has begun
    const client = new Client(baseUrl, { pipelining: 2 });
    const locker = await sql.reserve();
    try {
      await locker`BEGIN`;
      await locker`LOCK TABLE appointments IN ACCESS EXCLUSIVE MODE`;
      const held = client.request({
        method: 'POST',
        path: '/api/appointments',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(appointment('held', '2020-10-10 10:00', '2020-10-10 11:00', undefined, { orgId })),
      });
      const next = client.request({ method: 'GET', path: `/api/appointments?orgId=${orgId}` });
      await expect
        .poll(async () => (await sql`SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).length)
        .toBeGreaterThan(0);
      const closed = app.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      await locker`COMMIT`;

      const first = await held;
      expect(first.statusCode).toBe(201); // in flight when the close began: served
      await first.body.dump();
      const second = await next;
      expect(second.statusCode).toBe(503);
      expect(second.headers['retry-after']).toBe('1');
      expect(second.headers.connection).toBe('close');
      expect(await second.body.json()).toEqual({
        statusCode: 503,
        error: 'Service Unavailable',
        code: 'SERVICE_UNAVAILABLE',
        message: 'This instance is shutting down; retry the request',
      });
      await closed;
    } finally {
      locker.release();
      await client.close();
    }
    expect(await sql`SELECT id FROM appointments WHERE org_id = ${orgId}`).toEqual([{ id: 'held' }]);
  });
});
