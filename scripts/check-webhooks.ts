// npm run check:webhooks: a long run of webhook deliveries with faults injected (issue 14). Two
// instances of the real service (child processes) on a PostgreSQL cluster of its own, a load of writes,
// three receivers on 127.0.0.1 (one steady, one that fails a fifth of its attempts and drops some
// connections, one that answers 429 with Retry-After now and then); one instance is SIGKILLed in the
// middle and started again, and PostgreSQL is restarted. Prints, per receiver, the events made and
// delivered, the duplicates, the lost (must be 0) and the delivery delay p50/p99/max. Exits 1 when an
// acknowledged change is lost or a change got two event ids. CHECK_WEBHOOKS_SECONDS sets the length
// of the load (default 30).
import { migrate } from '../src/db/migrations.js';
import { withSql } from './lib/database.js';
import { countStatuses, startCluster, startLoad, type Cluster } from './lib/faults.js';
import { spawnServer, waitReady, type ServerProcess } from './lib/processes.js';
import { sleep } from './lib/time.js';
import { checkDeliveries, percentile, promisedEvents } from './lib/webhook-checker.js';
import { startReceiver, type Receiver } from './lib/webhook-receiver.js';
import { createWebhookEndpoint } from '../src/db/webhooks.js';
import { generateSecret, sealSecret } from '../src/webhook-secrets.js';

const SECONDS = Number(process.env.CHECK_WEBHOOKS_SECONDS ?? 30);
const ENV = {
  WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
  WEBHOOK_RETRY_SCHEDULE: '200ms,500ms,1s,1s,2s,2s,5s,5s,10s,10s',
  WEBHOOK_TIMEOUT_MS: '2000',
  LOG_LEVEL: 'error',
};

const servers: ServerProcess[] = [];
const receivers: Receiver[] = [];
const failures: string[] = [];
let cluster: Cluster | undefined;

function expect(condition: boolean, promise: string) {
  console.log(`  ${condition ? 'ok  ' : 'FAIL'} ${promise}`);
  if (!condition) failures.push(promise);
}

async function start(databaseUrl: string) {
  const server = await spawnServer(databaseUrl, ENV);
  servers.push(server);
  await waitReady(server);
  return server;
}

async function run(c: Cluster) {
  const databaseUrl = await c.createDatabase('webhooks');
  await migrate(databaseUrl, () => {});
  const steady = await startReceiver();
  const flaky = await startReceiver();
  flaky.respond = () => {
    const x = Math.random();
    return x < 0.15 ? { status: 500 } : x < 0.2 ? { drop: true } : { status: 200, delayMs: x < 0.3 ? 200 : 0 };
  };
  const throttled = await startReceiver();
  throttled.respond = () => (Math.random() < 0.02 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 204 });
  receivers.push(steady, flaky, throttled);
  const orgId = 'check-webhooks';
  const endpoints = await withSql(databaseUrl, async (sql) => {
    const ids: string[] = [];
    for (const r of receivers) {
      const e = await createWebhookEndpoint(sql, {
        orgId,
        url: r.url,
        description: '',
        secret: sealSecret(generateSecret(), undefined),
      });
      ids.push(e!.id);
    }
    return ids;
  });
  let a = await start(databaseUrl);
  const b = await start(databaseUrl);
  console.log(`# ${SECONDS} s of writes through one instance, deliveries by both; faults on the way`);
  const load = startLoad({ baseUrl: b.baseUrl, orgId, concurrency: 4, versionsPerId: 3 });
  const startedAt = Date.now();
  await sleep((SECONDS * 1000) / 3);
  console.log('  SIGKILL of instance A, started again');
  a.child.kill('SIGKILL');
  await a.exited;
  a = await start(databaseUrl);
  await sleep(Math.max(0, startedAt + (SECONDS * 2000) / 3 - Date.now()));
  console.log('  PostgreSQL stopped for 2 s, started again');
  await c.stop();
  await sleep(2_000);
  await c.start();
  await sleep(Math.max(0, startedAt + SECONDS * 1000 - Date.now()));
  await load.stop();
  const promised = promisedEvents(load.outcomes);
  console.log(`  ${load.outcomes.length} writes, statuses ${JSON.stringify(countStatuses(load.outcomes))}`);
  const names = ['steady', 'flaky', 'throttled'];
  // waits while the deliveries make progress: given up only after 30 s without a new request
  let lastProgress = Date.now();
  let seen = -1;
  while (
    Date.now() - lastProgress < 30_000 &&
    receivers.some((r) => checkDeliveries(promised, r.requests).lost.length > 0)
  ) {
    const now = receivers.reduce((n, r) => n + r.requests.length, 0);
    if (now !== seen) [seen, lastProgress] = [now, Date.now()];
    await sleep(500);
  }
  await sleep(1_000);
  const made = await withSql(
    databaseUrl,
    (sql) =>
      sql<{ id: string; n: number }[]>`
      SELECT endpoint_id::text AS id, count(*)::int AS n FROM webhook_messages GROUP BY endpoint_id`,
  );
  for (const [i, r] of receivers.entries()) {
    const check = checkDeliveries(promised, r.requests);
    const d = check.delaysMs;
    console.log(
      `  ${names[i]}: ${promised.size} changes acknowledged, ${made.find((m) => m.id === endpoints[i])?.n ?? 0} events made, ` +
        `${promised.size - check.lost.length} delivered, ${check.requests} requests (${check.retried} retries), ` +
        `${check.duplicates.length} duplicates, ${check.lost.length} lost; delay p50 ${percentile(d, 50)} ms, ` +
        `p99 ${percentile(d, 99)} ms, max ${d.at(-1)} ms`,
    );
    expect(check.lost.length === 0, `${names[i]}: every acknowledged change delivered`);
    expect(check.doubleMade.length === 0, `${names[i]}: one event id per change`);
  }
}

async function cleanUp() {
  await Promise.all(servers.map((s) => s.kill()));
  await Promise.all(receivers.map((r) => r.close()));
  await cluster?.destroy();
}

process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)));
try {
  cluster = await startCluster('check-webhooks');
  await run(cluster);
} catch (error) {
  console.log(`  FAIL ${error instanceof Error ? error.message : String(error)}`);
  failures.push('the run');
} finally {
  await cleanUp();
}
console.log(
  failures.length === 0 ? '\nNo acknowledged change lost.' : `\n${failures.length} broken: ${failures.join('; ')}`,
);
process.exit(failures.length === 0 ? 0 : 1);
