import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { configWith, type Config } from '../src/config.js';
import { startLoad } from '../scripts/lib/faults.js';
import { checkDeliveries, percentile, promisedEvents } from '../scripts/lib/webhook-checker.js';
import { startReceiver, verifies, type Receiver } from '../scripts/lib/webhook-receiver.js';
import { sleep } from '../scripts/lib/time.js';
import { newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';
import { createEndpoint } from './support/webhooks.js';

// Webhooks under a concurrent load: every acknowledged change reaches every endpoint at least once,
// a webhook-id comes again only after a failed attempt, and two instances on one database share the
// work without duplicates.

const settings: Partial<Config> = {
  webhookAllowPrivateUrls: true,
  webhookRetrySchedule: '50ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms',
  webhookTimeoutMs: 2_000,
};

let server: TestServer;
const receivers: Receiver[] = [];
beforeAll(async () => {
  server = await startTestServer(settings);
});
afterAll(async () => {
  await server.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver() {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

describe('webhooks under a concurrent load', () => {
  it('deliver every acknowledged change at least once to every endpoint, again only after a failed attempt', async () => {
    const orgId = newOrg('whload');
    const flaky = await receiver();
    // a fifth of the attempts fail, a few of them by a dropped connection
    flaky.respond = () => {
      const x = Math.random();
      return x < 0.15 ? { status: 500 } : x < 0.2 ? { drop: true } : { status: 200 };
    };
    const steady = await receiver();
    const a = await createEndpoint(server.sql, orgId, flaky.url);
    const b = await createEndpoint(server.sql, orgId, steady.url);
    const load = startLoad({ baseUrl: server.baseUrl, orgId, concurrency: 8, versionsPerId: 3 });
    await sleep(2_000);
    await load.stop();
    const promised = promisedEvents(load.outcomes);
    expect(promised.size).toBeGreaterThan(50);
    const deliveredAll = (r: Receiver) => () => checkDeliveries(promised, r.requests).lost.length === 0;
    await flaky.waitFor(deliveredAll(flaky), 30_000);
    await steady.waitFor(deliveredAll(steady), 30_000);
    await sleep(300);
    for (const [name, r, secret] of [
      ['flaky', flaky, a.secret],
      ['steady', steady, b.secret],
    ] as const) {
      const check = checkDeliveries(promised, r.requests);
      console.info(
        `[webhooks] ${name}: ${promised.size} changes acknowledged, ${check.requests} requests, ${check.events} events, ` +
          `${check.retried} retries, ${check.duplicates.length} duplicates, ${check.lost.length} lost; delay p50 ` +
          `${percentile(check.delaysMs, 50)} ms, p99 ${percentile(check.delaysMs, 99)} ms, max ${check.delaysMs.at(-1)} ms`,
      );
      expect(check).toMatchObject({ lost: [], duplicates: [], doubleMade: [] });
      // no event but the promised ones
      expect(check.events).toBe(promised.size);
      expect(r.requests.every((q) => verifies(secret, q))).toBe(true);
    }
    expect(checkDeliveries(promised, steady.requests).retried).toBe(0);
    expect(checkDeliveries(promised, flaky.requests).retried).toBeGreaterThan(0);
  });

  it('two instances on one database share the work: no duplicates when nothing fails, the concurrency cap holds across them', async () => {
    // a database of their own, both instances with the same settings
    const one = await startTestServer({ ...settings, webhookConcurrency: 3 });
    const two: FastifyInstance = await buildApp({
      ...configWith({ dbPoolMax: 10, ...settings, webhookConcurrency: 3 }),
      databaseUrl: one.databaseUrl,
      logger: pino({ level: 'silent' }),
    });
    await two.listen({ port: 0, host: '127.0.0.1' });
    const urlOf = (app: FastifyInstance) => `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      const orgId = newOrg('whtwo');
      const r = await receiver();
      r.respond = () => ({ status: 200, delayMs: 20 });
      await createEndpoint(one.sql, orgId, r.url);
      const loads = [
        startLoad({ baseUrl: one.baseUrl, orgId, concurrency: 4, versionsPerId: 2, idPrefix: 'f' }),
        startLoad({ baseUrl: urlOf(two), orgId, concurrency: 4, versionsPerId: 2, idPrefix: 's' }),
      ];
      await sleep(2_000);
      await Promise.all(loads.map((l) => l.stop()));
      const promised = promisedEvents(loads.flatMap((l) => l.outcomes));
      await r.waitFor(() => checkDeliveries(promised, r.requests).lost.length === 0, 30_000);
      await sleep(500);
      const check = checkDeliveries(promised, r.requests);
      const split = [one.app, two].map((app) => app.webhookDelivery.attempted);
      console.info(
        `[webhooks] two instances: ${promised.size} changes, ${check.requests} requests, attempts per instance ${split.join('/')}, ` +
          `most in flight at the receiver ${r.maxInFlight}`,
      );
      expect(check).toMatchObject({ lost: [], duplicates: [], doubleMade: [], retried: 0 });
      expect(check.requests).toBe(promised.size);
      expect(r.maxInFlight).toBeLessThanOrEqual(3);
      expect(split.reduce((x, y) => x + y)).toBe(check.requests);
    } finally {
      await two.close();
      await one.close();
    }
  });

  it('an instance with WEBHOOK_DELIVERY=false serves writes and leaves every delivery to the others', async () => {
    const apiOnly: FastifyInstance = await buildApp({
      ...configWith({ dbPoolMax: 10, ...settings, webhookDelivery: false }),
      databaseUrl: server.databaseUrl,
      logger: pino({ level: 'silent' }),
    });
    await apiOnly.listen({ port: 0, host: '127.0.0.1' });
    try {
      const orgId = newOrg('whapi');
      const r = await receiver();
      await createEndpoint(server.sql, orgId, r.url);
      const baseUrl = `http://127.0.0.1:${(apiOnly.server.address() as { port: number }).port}`;
      const load = startLoad({ baseUrl, orgId, concurrency: 4, versionsPerId: 2, idPrefix: 'a' });
      await sleep(1_000);
      await load.stop();
      const promised = promisedEvents(load.outcomes);
      expect(promised.size).toBeGreaterThan(0);
      await r.waitFor(() => checkDeliveries(promised, r.requests).lost.length === 0, 30_000);
      expect(checkDeliveries(promised, r.requests)).toMatchObject({ lost: [], duplicates: [] });
      expect(apiOnly.webhookDelivery.attempted).toBe(0);
      expect(server.app.webhookDelivery.attempted).toBeGreaterThanOrEqual(promised.size);
    } finally {
      await apiOnly.close();
    }
  });
});
