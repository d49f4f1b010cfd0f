import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { generateApiKey } from '../src/auth.js';
import { configWith } from '../src/config.js';
import { insertApiKey, revokeApiKey } from '../src/db/api-keys.js';
import { EXPECTED_FUNCTIONS_HASH, EXPECTED_MIGRATIONS, MIGRATION_LOCK_ID } from '../src/db/migrations.js';
import {
  checkFeed,
  consumerPlans,
  describeConsumer,
  SLOW_COMMITS_PREFIX,
  SLOW_COMMITS_SQL,
  startFeedConsumers,
} from '../scripts/lib/feed-checker.js';
import {
  checkHistory,
  describeAnomalies,
  orgIdsOf,
  readRecordedState,
  runWorkload,
  type RecordedState,
} from '../scripts/lib/history-checker.js';
import { spawnServer, waitReady, type ServerProcess } from '../scripts/lib/processes.js';
import { openEventStream } from '../scripts/lib/sse.js';
import { checkDeliveries } from '../scripts/lib/webhook-checker.js';
import { startReceiver, verifies, type Receiver } from '../scripts/lib/webhook-receiver.js';
import { newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { createTestDatabase } from './support/database.js';

// Issue 15, section 4: three instances of the real service (child processes of src/server.ts, as
// production runs them) started at the same moment on one empty database. Nothing may depend on one
// instance seeing all requests: every client and feed consumer goes to the next instance at each
// request, so a feed token made by one instance is used on another, and all three run the webhook
// delivery.

const INSTANCES = 3;
const ENV = { WEBHOOK_ALLOW_PRIVATE_URLS: 'true', DB_POOL_MAX: '8' };
const LOAD_MS = 6_000;
const CONTENT = { createdAt: '2031-01-01T00:00:00Z', updatedAt: '2031-01-01T00:00:00Z' };

/** Per client (or consumer), the instances in turn, starting at its own: each request goes to the next. */
function rotation(urls: string[]): (client: number) => string {
  const turns = new Map<number, number>();
  return (client) => {
    const turn = turns.get(client) ?? client;
    turns.set(client, turn + 1);
    return urls[turn % urls.length]!;
  };
}

/** The lines of a service's log at or above `error` (pino's 50), and any line that is not pino's JSON. */
function problemsInLog(output: string): string[] {
  return output
    .split('\n')
    .filter((line) => line.trim() !== '')
    .filter((line) => {
      try {
        const entry = JSON.parse(line) as { level?: unknown };
        return typeof entry.level !== 'number' || entry.level >= 50;
      } catch {
        return true;
      }
    });
}

/** What the webhooks of an org must carry: one event per change of the history read back. */
function changesOf(state: RecordedState, orgId: string): Set<string> {
  const events = new Set<string>();
  for (const v of state.versions.filter((x) => x.orgId === orgId)) {
    events.add(`${v.id} ${v.version} upsert`);
    if (v.deleted) events.add(`${v.id} ${v.version} delete`);
  }
  return events;
}

/** This instance's delivered webhook attempts, from its /metrics. */
async function deliveredBy(server: ServerProcess): Promise<number> {
  const res = await http(server.baseUrl, 'GET', '/metrics');
  expect(res.status).toBe(200);
  const line = /^appointments_webhook_attempts_total\{outcome="delivered"\} (\d+)$/m.exec(res.text);
  return line ? Number(line[1]) : 0;
}

let databaseUrl: string;
let sql: Sql;
let servers: ServerProcess[] = [];
let startedMs: number;

/** Sessions of this database waiting for an advisory lock now. */
async function lockWaiters(): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_locks
    WHERE locktype = 'advisory' AND NOT granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
  return row!.n;
}

describe('three instances on one database', () => {
  beforeAll(async () => {
    databaseUrl = await createTestDatabase({ empty: true });
    sql = postgres(databaseUrl, { max: 3, onnotice: () => {} });
    // The processes load their code at different speeds: the migration lock is held here until all three
    // wait for it, so that they reach the empty database at the same moment, as after a deploy whose
    // instances were held up by the same slow start.
    const holder = await sql.reserve();
    await holder`SELECT pg_advisory_lock(${MIGRATION_LOCK_ID}::bigint)`;
    const start = performance.now();
    try {
      servers = await Promise.all(Array.from({ length: INSTANCES }, () => spawnServer(databaseUrl, ENV)));
      const deadline = Date.now() + 60_000;
      while ((await lockWaiters()) < INSTANCES) {
        const exited = servers.find((server) => server.child.exitCode !== null);
        if (exited) throw new Error(`an instance exited before it migrated:\n${exited.output()}`);
        if (Date.now() > deadline) throw new Error('the instances did not all reach the migrations within 60 s');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await holder`SELECT pg_advisory_unlock(${MIGRATION_LOCK_ID}::bigint)`;
      holder.release();
    }
    await Promise.all(servers.map((server) => waitReady(server)));
    startedMs = performance.now() - start;
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.kill()));
    await sql?.end();
  });

  it('started together, apply the migrations and the function files once, without an error', async () => {
    const migrations = await sql<{ name: string }[]>`SELECT name FROM pgmigrations ORDER BY run_on, id`;
    expect(migrations.map((row) => row.name)).toEqual([...EXPECTED_MIGRATIONS]);
    const functions = await sql<{ hash: string }[]>`SELECT hash FROM database_functions`;
    expect(functions).toEqual([{ hash: EXPECTED_FUNCTIONS_HASH }]);
    for (const server of servers) {
      expect((await http(server.baseUrl, 'GET', '/ready')).status).toBe(200);
      expect(problemsInLog(server.output()), server.output()).toEqual([]);
    }
    console.log(
      `many instances: ${INSTANCES} released together at the migration lock, all ready in ${Math.round(startedMs)} ms`,
    );
  });

  it('serve the history checker, the feed consumers and the webhooks with clients spread over all three', async () => {
    const seed = Number(process.env.HISTORY_SEED ?? Date.now() % 2 ** 31);
    // writes that commit out of transaction-id order (the trap of a feed that serves too early)
    await sql.unsafe(SLOW_COMMITS_SQL);
    const workload = { seed, orgPrefix: newOrg(SLOW_COMMITS_PREFIX), orgs: 3, idsPerOrg: 6, clients: 24 };
    const orgs = orgIdsOf(workload);
    const urls = servers.map((server) => server.baseUrl);

    // one endpoint per org, each created through another instance
    const receivers: Receiver[] = [];
    const secrets: string[] = [];
    for (const [k, orgId] of orgs.entries()) {
      const receiver = await startReceiver();
      receivers.push(receiver);
      const created = await http(urls[k % INSTANCES]!, 'POST', '/api/webhooks', { orgId, url: receiver.url });
      expect(created.status, created.text).toBe(201);
      secrets.push(created.body.secret);
    }
    const deliveredBefore = await Promise.all(servers.map(deliveredBy));
    try {
      const plans = consumerPlans(workload, { seed, consumers: 9, loadMs: LOAD_MS, waits: [2, 3] });
      const consumers = startFeedConsumers(rotation(urls), plans, seed);
      await consumers.ready;
      const events = await runWorkload(rotation(urls), { ...workload, until: Date.now() + LOAD_MS });
      const state = await readRecordedState(rotation(urls), workload);
      const records = await consumers.finish(state, { timeoutMs: 15_000 });
      const anomalies = [...checkHistory(events, state), ...checkFeed(events, state, records)];
      const received = records.reduce((n, r) => n + r.changes.length, 0);
      console.log(
        `many instances: seed ${seed}, ${events.length} operations over ${INSTANCES} instances, ` +
          `${state.versions.length} versions, ${records.length} consumers received ${received} changes in ` +
          `${records.reduce((n, r) => n + r.requests, 0)} requests, ${anomalies.length} anomalies`,
      );
      // with the instances' errors, which say what a 5xx was
      const errors = servers.flatMap((server, i) =>
        problemsInLog(server.output()).map((line) => `instance ${i}: ${line}`),
      );
      expect(anomalies, `${describeAnomalies(anomalies, seed)}\n${errors.join('\n')}`).toEqual([]);
      // every pull and long-poll consumer went on with its token on another instance
      for (const r of records) {
        expect(r.changes.length, describeConsumer(r)).toBeGreaterThan(0);
        if (r.plan.kind !== 'stream') expect(r.requests, describeConsumer(r)).toBeGreaterThanOrEqual(INSTANCES);
      }
      expect(events.some((e) => e.op.kind === 'delete' && e.status === 204)).toBe(true);

      // every change of each org reaches its endpoint once: one event id, one request, signed with its secret
      const expected = orgs.map((orgId) => changesOf(state, orgId));
      await Promise.all(
        receivers.map((receiver, k) => receiver.waitFor((requests) => requests.length >= expected[k]!.size, 30_000)),
      );
      // a moment more, for a duplicate to arrive if there is one
      await new Promise((resolve) => setTimeout(resolve, 500));
      for (const [k, receiver] of receivers.entries()) {
        const check = checkDeliveries(expected[k]!, receiver.requests);
        const got = receiver.requests.map((q) => {
          const body = JSON.parse(q.body) as { data: { id: string; version: number; type: string } };
          return `${body.data.id} ${body.data.version} ${body.data.type}`;
        });
        expect({ lost: check.lost, duplicates: check.duplicates, doubleMade: check.doubleMade }).toEqual({
          lost: [],
          duplicates: [],
          doubleMade: [],
        });
        expect(got.toSorted()).toEqual([...expected[k]!].sort());
        expect(new Set(receiver.requests.map((q) => q.id)).size).toBe(receiver.requests.length);
        expect(receiver.requests.every((q) => verifies(secrets[k]!, q))).toBe(true);
      }
      // an instance counts a delivery once it has recorded the 2xx, which may come after the receiver saw it
      const total = expected.reduce((n, e) => n + e.size, 0);
      const countedBy = async () =>
        (await Promise.all(servers.map(deliveredBy))).map((n, i) => n - deliveredBefore[i]!);
      const countDeadline = Date.now() + 10_000;
      let byInstance = await countedBy();
      while (byInstance.reduce((a, b) => a + b, 0) < total && Date.now() < countDeadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        byInstance = await countedBy();
      }
      console.log(`many instances: ${total} webhook events delivered once each, by instance ${byInstance.join(' / ')}`);
      expect(byInstance.reduce((a, b) => a + b, 0)).toBe(total);
      // the work was shared: more than one instance delivered
      expect(byInstance.filter((n) => n > 0).length).toBeGreaterThan(1);
    } finally {
      await Promise.all(receivers.map((receiver) => receiver.close()));
    }
  });

  it('wake a long-poll and an event stream on one instance for a write made on another', async () => {
    const orgId = newOrg('wake');
    const [a, b, c] = servers.map((server) => server.baseUrl) as [string, string, string];
    const write = (id: string, hour: number) =>
      post(c, {
        orgId,
        id,
        start: `2031-01-01T${hour}:00:00Z`,
        end: `2031-01-01T${hour}:30:00Z`,
        createdAt: '2031-01-01T00:00:00Z',
        updatedAt: '2031-01-01T00:00:00Z',
      });
    const first = await http(a, 'GET', `/api/changes?orgId=${orgId}`);
    expect(first.status).toBe(200);
    // a token of instance a, waiting on instance b, a write through instance c
    const since = encodeURIComponent(first.body.next);
    const sentAt = Date.now();
    const waiting = http(b, 'GET', `/api/changes?orgId=${orgId}&since=${since}&wait=20`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await write('x', 10)).status).toBe(201);
    const woken = await waiting;
    expect(woken.status).toBe(200);
    expect(woken.body.changes).toMatchObject([{ type: 'upsert', id: 'x', version: 1 }]);
    // woken by the write, far within the wait of 20 s
    expect(Date.now() - sentAt).toBeLessThan(5_000);

    // the event stream resumed on instance a from b's token, then a write through c
    const stream = await openEventStream(
      `${a}/api/changes/stream?${new URLSearchParams({ orgId, since: woken.body.next })}`,
    );
    try {
      expect(stream.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await write('y', 11)).status).toBe(201);
      const event = await stream.nextEvent(5_000);
      expect(event.type).toBe('event');
      expect(JSON.parse((event as { data: string }).data)).toMatchObject({ type: 'upsert', id: 'y', version: 1 });
    } finally {
      stream.close();
    }
  });
});

describe('two instances with API keys, one of them delivering the webhooks', () => {
  let apps: FastifyInstance[] = [];
  let urls: string[];
  let keys: Sql;
  beforeAll(async () => {
    const url = await createTestDatabase();
    keys = postgres(url, { max: 2, onnotice: () => {} });
    for (const webhookDelivery of [false, true]) {
      const app = await buildApp({
        ...configWith({ auth: 'required', webhookAllowPrivateUrls: true, webhookDelivery, dbPoolMax: 4 }),
        databaseUrl: url,
        logger: pino({ level: 'silent' }),
      });
      apps.push(app);
      await app.listen({ port: 0, host: '127.0.0.1' });
    }
    urls = apps.map((app) => `http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
  });
  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    apps = [];
    await keys?.end();
  });

  const newKey = async (orgId: string) => {
    const key = generateApiKey();
    await insertApiKey(keys, { keyId: key.keyId, orgId, secretHash: key.secretHash });
    return { keyId: key.keyId, headers: { authorization: `Bearer ${key.key}` } };
  };

  it('refuse a revoked key on both at the next request, though both had just accepted it', async () => {
    const orgId = newOrg('keys');
    const { keyId, headers } = await newKey(orgId);
    for (const url of urls) expect((await http(url, 'GET', '/api/appointments', undefined, headers)).status).toBe(200);
    expect(await revokeApiKey(keys, keyId)).toBe(true);
    for (const url of urls) expect((await http(url, 'GET', '/api/appointments', undefined, headers)).status).toBe(401);
  });

  it('sign with a secret rotated through the other instance, and stop delivering to an endpoint it deleted', async () => {
    const orgId = newOrg('hooks');
    const { headers } = await newKey(orgId);
    const api = urls[0]!;
    const receiver = await startReceiver();
    try {
      const write = async (id: string, hour: number) => {
        const body = { id, start: `2031-02-01T${hour}:00:00Z`, end: `2031-02-01T${hour}:30:00Z` };
        const res = await http(api, 'POST', '/api/appointments', { ...body, ...CONTENT }, headers);
        expect(res.status).toBe(201);
      };
      // made, rotated and deleted through the instance that does not deliver
      const created = await http(api, 'POST', '/api/webhooks', { url: receiver.url }, headers);
      expect(created.status).toBe(201);
      await write('a', 10);
      await receiver.waitFor((requests) => requests.length === 1, 5_000);
      expect(verifies(created.body.secret, receiver.requests[0]!)).toBe(true);
      const rotated = await http(api, 'POST', `/api/webhooks/${created.body.id}/rotate-secret`, undefined, headers);
      expect(rotated.status).toBe(200);
      expect(rotated.body.secret).not.toBe(created.body.secret);
      await write('b', 11);
      await receiver.waitFor((requests) => requests.length === 2, 5_000);
      expect(verifies(rotated.body.secret, receiver.requests[1]!)).toBe(true);
      const deleted = await http(api, 'DELETE', `/api/webhooks/${created.body.id}`, undefined, headers);
      expect(deleted.status).toBe(204);
      await write('c', 12);
      // many poll intervals of the delivering instance: nothing more arrives
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(receiver.requests).toHaveLength(2);
      expect(apps[0]!.webhookDelivery.attempted).toBe(0);
      expect(apps[1]!.webhookDelivery.attempted).toBe(2);
    } finally {
      await receiver.close();
    }
  });
});
