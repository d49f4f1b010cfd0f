import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith } from '../src/config.js';
import { migrate } from '../src/db/migrations.js';
import { withSql } from '../scripts/lib/database.js';
import { startCluster, startLoad, type Cluster } from '../scripts/lib/faults.js';
import { spawnServer, waitReady } from '../scripts/lib/processes.js';
import { sleep } from '../scripts/lib/time.js';
import { checkDeliveries, promisedEvents } from '../scripts/lib/webhook-checker.js';
import { startReceiver, type ReceivedRequest, type Receiver } from '../scripts/lib/webhook-receiver.js';
import { createEndpoint } from './support/webhooks.js';

// Webhooks through faults: the service SIGKILLed in the middle of deliveries and started again, and
// PostgreSQL restarted under a load. Nothing acknowledged is lost; a webhook-id comes again after a
// 2xx only for an attempt whose outcome the fault kept from being recorded.

const ENV = {
  WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
  WEBHOOK_RETRY_SCHEDULE: '100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms',
  WEBHOOK_TIMEOUT_MS: '1000',
};

let cluster: Cluster;
const receivers: Receiver[] = [];
beforeAll(async () => {
  cluster = await startCluster('webhooks', { unsafeFast: true });
});
afterAll(async () => {
  await Promise.all(receivers.map((r) => r.close()));
  await cluster?.destroy();
});

/** The first 2xx answer of each webhook-id received again after it. */
function duplicatedAfterSuccess(requests: ReceivedRequest[], duplicates: string[]): ReceivedRequest[] {
  return duplicates.map((id) => requests.find((q) => q.id === id && q.status >= 200 && q.status < 300)!);
}

describe('webhooks through faults', () => {
  it('the service SIGKILLed in the middle of deliveries and started again: nothing lost, duplicates only of attempts in flight', async () => {
    const databaseUrl = await cluster.createDatabase('webhooks_sigkill');
    await migrate(databaseUrl, () => {});
    const r = await startReceiver();
    receivers.push(r);
    // slow answers until the kill: attempts are surely in flight when it comes
    let killed = false;
    r.respond = () => ({ status: 200, delayMs: killed ? 0 : 100 });
    const orgId = 'sigkill';
    await withSql(databaseUrl, (sql) => createEndpoint(sql, orgId, r.url));
    const server = await spawnServer(databaseUrl, ENV);
    let again: Awaited<ReturnType<typeof spawnServer>> | undefined;
    try {
      await waitReady(server);
      const load = startLoad({ baseUrl: server.baseUrl, orgId, concurrency: 8, versionsPerId: 3 });
      await r.waitFor((requests) => requests.length >= 20, 20_000);
      const killedAt = Date.now();
      server.child.kill('SIGKILL');
      await server.exited;
      killed = true;
      await load.stop();
      const promised = promisedEvents(load.outcomes);
      const inFlightAtKill = r.inFlight;
      const receivedBefore = r.requests.length;
      again = await spawnServer(databaseUrl, ENV);
      await waitReady(again);
      // the leases of the attempts cut off expire (timeout + margin), then those are made again
      await r.waitFor(() => checkDeliveries(promised, r.requests).lost.length === 0, 40_000);
      await sleep(500);
      const check = checkDeliveries(promised, r.requests);
      const duplicated = duplicatedAfterSuccess(r.requests, check.duplicates);
      console.info(
        `[webhooks] SIGKILL: ${promised.size} changes acknowledged, ${receivedBefore} requests before the kill ` +
          `(${inFlightAtKill} in flight), ${check.requests} in all, ${check.duplicates.length} duplicates, ${check.lost.length} lost`,
      );
      expect(promised.size).toBeGreaterThan(20);
      expect(check).toMatchObject({ lost: [], doubleMade: [] });
      // a duplicate is an attempt answered just before the kill, whose outcome was never recorded
      for (const q of duplicated) expect(q.answeredAt!).toBeGreaterThanOrEqual(killedAt - 1_000);
      expect(check.duplicates.length).toBeLessThanOrEqual(inFlightAtKill + 8);
    } finally {
      await server.kill();
      await again?.kill();
    }
  });

  it('PostgreSQL restarted under a load: deliveries pause and resume, nothing lost', async () => {
    const databaseUrl = await cluster.createDatabase('webhooks_restart');
    await migrate(databaseUrl, () => {});
    const r = await startReceiver();
    receivers.push(r);
    const orgId = 'restart';
    await withSql(databaseUrl, (sql) => createEndpoint(sql, orgId, r.url));
    const app = await buildApp({
      ...configWith({
        dbPoolMax: 8,
        webhookAllowPrivateUrls: true,
        webhookRetrySchedule: ENV.WEBHOOK_RETRY_SCHEDULE,
        webhookTimeoutMs: 1_000,
      }),
      databaseUrl,
      logger: pino({ level: 'silent' }),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    try {
      const load = startLoad({ baseUrl, orgId, concurrency: 8, versionsPerId: 3 });
      await sleep(800);
      const stoppedAt = Date.now();
      await cluster.stop();
      await sleep(1_500);
      await cluster.start();
      const startedAt = Date.now();
      await sleep(1_000);
      await load.stop();
      const promised = promisedEvents(load.outcomes);
      await r.waitFor(() => checkDeliveries(promised, r.requests).lost.length === 0, 40_000);
      await sleep(500);
      const check = checkDeliveries(promised, r.requests);
      console.info(
        `[webhooks] PostgreSQL restart: ${promised.size} changes acknowledged, ${check.requests} requests, ` +
          `${check.duplicates.length} duplicates, ${check.lost.length} lost`,
      );
      expect(load.outcomes.some((o) => o.startedAt > startedAt && o.status === 201)).toBe(true);
      expect(check).toMatchObject({ lost: [], doubleMade: [] });
      // an attempt answered while the database was away could not be recorded: only those come again
      for (const q of duplicatedAfterSuccess(r.requests, check.duplicates)) {
        expect(q.answeredAt!).toBeGreaterThanOrEqual(stoppedAt - 1_000);
        expect(q.answeredAt!).toBeLessThanOrEqual(startedAt + 1_000);
      }
    } finally {
      await app.close();
    }
  });
});
