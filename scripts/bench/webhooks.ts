// npm run bench:webhooks [-- --seconds=5] [-- --rounds=2] [-- --backlog=3000]
// Webhooks (issue 14), against the real service (a child process, from the sources) on a PostgreSQL
// cluster of its own, with a receiver on 127.0.0.1 in this process that answers 204 at once (its own
// latency is what Node's HTTP server takes, well under a millisecond):
//   1. the latency and rate of creates (8 connections) with 0, 1, 5 and 20 endpoints subscribed to the
//      org, in alternating cells; each cell waits until its deliveries have drained before the next;
//   2. delivery throughput: a backlog of changes made while the endpoints are disabled, then enabled,
//      timed until the receiver has every one, with 1 and with 5 endpoints.
// Prints markdown tables.
import { migrate } from '../../src/db/migrations.js';
import { createWebhookEndpoint } from '../../src/db/webhooks.js';
import { generateSecret, sealSecret } from '../../src/webhook-secrets.js';
import { withSql } from '../lib/database.js';
import { startCluster, startLoad, type Cluster } from '../lib/faults.js';
import { spawnServer, waitReady, type ServerProcess } from '../lib/processes.js';
import { sleep } from '../lib/time.js';
import { percentile } from '../lib/webhook-checker.js';
import { startReceiver, type Receiver } from '../lib/webhook-receiver.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SECONDS = Number(flag('seconds') ?? 5);
const ROUNDS = Number(flag('rounds') ?? 2);
const BACKLOG = Number(flag('backlog') ?? 3000);
const SUBSCRIBED = [0, 1, 5, 20];

const log = (message: string) => console.error(`[bench:webhooks ${new Date().toISOString().slice(11, 19)}] ${message}`);

let cluster: Cluster | undefined;
let server: ServerProcess | undefined;
let receiver: Receiver | undefined;

async function subscribe(databaseUrl: string, orgId: string, n: number, url: string): Promise<string[]> {
  return withSql(databaseUrl, async (sql) => {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const e = await createWebhookEndpoint(sql, {
        orgId,
        url: `${url}?e=${i}`,
        description: '',
        secret: sealSecret(generateSecret(), undefined),
      });
      ids.push(e!.id);
    }
    return ids;
  });
}

async function drained(r: Receiver, count: number, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (r.requests.length < count) {
    if (Date.now() - started > timeoutMs)
      throw new Error(`${r.requests.length} of ${count} delivered in ${timeoutMs} ms`);
    await sleep(20);
  }
  return Date.now() - started;
}

async function main() {
  cluster = await startCluster('bench-webhooks');
  const databaseUrl = await cluster.createDatabase('bench');
  await migrate(databaseUrl, () => {});
  receiver = await startReceiver();
  const r = receiver;
  server = await spawnServer(databaseUrl, { WEBHOOK_ALLOW_PRIVATE_URLS: 'true', LOG_LEVEL: 'warn' });
  await waitReady(server);

  const cells: Array<{ n: number; writes: number; rate: number; p50: number; p99: number; drainMs: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const n of round % 2 === 0 ? SUBSCRIBED : [...SUBSCRIBED].reverse()) {
      const orgId = `bench-${round}-${n}`;
      await subscribe(databaseUrl, orgId, n, r.url);
      const before = r.requests.length;
      log(`round ${round + 1}, ${n} endpoints: ${SECONDS} s of creates`);
      const load = startLoad({ baseUrl: server.baseUrl, orgId, concurrency: 8 });
      await sleep(SECONDS * 1000);
      await load.stop();
      const ok = load.outcomes.filter((o) => o.status === 201);
      const ms = ok.map((o) => o.ms).sort((a, b) => a - b);
      const drainMs = await drained(r, before + ok.length * n, 600_000);
      cells.push({
        n,
        writes: ok.length,
        rate: ok.length / SECONDS,
        p50: percentile(ms, 50),
        p99: percentile(ms, 99),
        drainMs,
      });
    }
  }
  console.log('\n| endpoints | creates/s | p50 ms | p99 ms | deliveries left when the writes stopped, drained in |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const n of SUBSCRIBED) {
    const mine = cells.filter((c) => c.n === n);
    const avg = (f: (c: (typeof cells)[number]) => number) => mine.reduce((s, c) => s + f(c), 0) / mine.length;
    console.log(
      `| ${n} | ${avg((c) => c.rate).toFixed(0)} | ${avg((c) => c.p50).toFixed(1)} | ${avg((c) => c.p99).toFixed(1)} | ${avg((c) => c.drainMs).toFixed(0)} ms |`,
    );
  }

  console.log(`\n| endpoints | backlog (events) | drained in | deliveries/s |`);
  console.log('|---:|---:|---:|---:|');
  for (const n of [1, 5]) {
    const orgId = `backlog-${n}`;
    const ids = await subscribe(databaseUrl, orgId, n, r.url);
    await withSql(
      databaseUrl,
      (sql) =>
        sql`UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'gone' WHERE id = ANY(${ids}::uuid[])`,
    );
    log(`${BACKLOG} changes for ${n} disabled endpoints`);
    const load = startLoad({ baseUrl: server.baseUrl, orgId, concurrency: 8 });
    while (load.outcomes.filter((o) => o.status === 201).length < BACKLOG) await sleep(50);
    await load.stop();
    const made = load.outcomes.filter((o) => o.status === 201).length;
    const before = r.requests.length;
    await sleep(500);
    const started = Date.now();
    await withSql(
      databaseUrl,
      (sql) =>
        sql`UPDATE webhook_endpoints SET state = 'active', disabled_reason = NULL WHERE id = ANY(${ids}::uuid[])`,
    );
    await drained(r, before + made * n, 600_000);
    const ms = Date.now() - started;
    console.log(`| ${n} | ${made * n} | ${ms} ms | ${((made * n) / (ms / 1000)).toFixed(0)} |`);
  }
}

try {
  await main();
} finally {
  await server?.kill();
  await receiver?.close();
  await cluster?.destroy();
}
