// npm run check:faults: every fault scenario of issue 4, section 2, against a PostgreSQL cluster of
// its own (durable settings) and the real service as child processes; in the SIGKILL and the
// PostgreSQL restart, consumers follow the change feed throughout (issue 12, section 4). Prints a
// figure for each; exits 1 when a promise is broken. Every process and folder it starts is removed at the end.
import { readFileSync } from 'node:fs';
import { EXPECTED_MIGRATIONS } from '../src/db/migrations.js';
import { withSql } from './lib/database.js';
import {
  checkStore,
  countBy,
  countStatuses,
  sendTimed as send,
  startCluster,
  startLoad,
  type Cluster,
  type Load,
  type Outcome,
} from './lib/faults.js';
import { checkFeed, followersOf, startFeedConsumers, type ConsumerRecord } from './lib/feed-checker.js';
import { describeAnomalies, readStateOf, type HistoryEvent } from './lib/history-checker.js';
import { spawnServer, waitReady, type ServerProcess } from './lib/processes.js';
import { sleep } from './lib/time.js';

const ANSWER_BOUND_MS = 5_000;
const SHUTDOWN_BOUND_MS = 10_000;

const servers: ServerProcess[] = [];
const failures: string[] = [];
let cluster: Cluster | undefined;

function expect(condition: boolean, promise: string) {
  console.log(`  ${condition ? 'ok  ' : 'FAIL'} ${promise}`);
  if (!condition) failures.push(promise);
}

async function start(databaseUrl: string, env: Record<string, string> = {}) {
  const server = await spawnServer(databaseUrl, env);
  servers.push(server);
  return server;
}

/** The followers' sequences against the history the service kept: each consumer missed nothing. */
async function checkFollowers(
  baseUrl: string,
  orgId: string,
  loads: Load[],
  followers: ReturnType<typeof startFeedConsumers>,
  options: { allowNetworkErrors: boolean; after: number },
) {
  const ids = [...new Set(loads.flatMap((l) => l.sent.map((w) => w.id)))];
  const state = await readStateOf(baseUrl, [orgId], () => ids);
  const records = await followers.finish(state, { timeoutMs: 30_000 });
  const events: HistoryEvent[] = loads.flatMap((l) => l.events);
  const anomalies = checkFeed(events, state, records, options);
  const statuses = (r: ConsumerRecord) => JSON.stringify(countBy(r.failures.map((f) => f.status)));
  console.log(
    `  feed: ${records.map((r) => `${r.plan.kind}: ${r.changes.length} changes in ${r.requests} requests, failed answers ${statuses(r)}`).join('; ')}; ` +
      `${state.versions.length} versions in the history`,
  );
  if (anomalies.length > 0) console.log(describeAnomalies(anomalies, 0));
  expect(
    anomalies.length === 0,
    'each feed consumer (long-poll, stream, pull) saw every change once, in order, and replays to the final state',
  );
  expect(
    records.every((r) => r.failures.every((f) => f.status === 503 || (f.status === 0 && options.allowNetworkErrors))),
    'the feed answers no 5xx other than 503',
  );
  expect(
    records.every((r) => r.changes.some((c) => c.receivedAt > options.after * 1000)),
    'each consumer went on after the restart with its token',
  );
}

const write = (orgId: string, id: string, hour: number) => ({
  orgId,
  id,
  start: `2032-01-01T${String(hour).padStart(2, '0')}:00:00Z`,
  end: `2032-01-01T${String(hour).padStart(2, '0')}:30:00Z`,
  createdAt: '2031-12-01 00:00',
  updatedAt: '2031-12-02 00:00',
});

const slowTrigger = `
  CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF NEW.org_id LIKE 'slow-%' THEN PERFORM pg_sleep(1.5); END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER slow_insert BEFORE INSERT ON appointments FOR EACH ROW EXECUTE FUNCTION slow_insert();`;

async function twoInstances(c: Cluster) {
  console.log('\n# two instances started at the same moment against one empty database');
  const url = await c.createDatabase('two_instances');
  const started = Date.now();
  const [a, b] = await Promise.all([start(url), start(url)]);
  await Promise.all([waitReady(a!), waitReady(b!)]);
  const ready = Date.now() - started;
  const writes = await Promise.all([
    send(a!.baseUrl, 'POST', '/api/appointments', write('two', 'a', 1)),
    send(b!.baseUrl, 'POST', '/api/appointments', write('two', 'b', 2)),
  ]);
  const rows = await withSql(
    url,
    (sql) =>
      sql<
        { name: string; count: number }[]
      >`SELECT name, count(*)::int AS count FROM pgmigrations GROUP BY name ORDER BY name`,
  );
  console.log(
    `  both ready after ${ready} ms; writes ${writes.map((w) => w.status).join(', ')}; pgmigrations ${JSON.stringify(rows)}`,
  );
  expect(
    writes.every((w) => w.status === 201),
    'both instances serve',
  );
  expect(
    rows.length === EXPECTED_MIGRATIONS.length && rows.every((r) => r.count === 1),
    'each migration is recorded once',
  );
  await Promise.all([a!.kill(), b!.kill()]);
}

async function sigkill(c: Cluster) {
  console.log('\n# the service killed with SIGKILL during a load, then started again');
  const url = await c.createDatabase('sigkill');
  const server = await start(url);
  await waitReady(server);
  let current = server.baseUrl;
  const followers = startFeedConsumers(() => current, followersOf('sigkill'));
  await followers.ready;
  const load = startLoad({ baseUrl: server.baseUrl, orgId: 'sigkill', concurrency: 16, versionsPerId: 5 });
  await sleep(2_000);
  server.child.kill('SIGKILL');
  await server.exited;
  await load.stop();
  const check = await withSql(url, (sql) => checkStore(sql, 'sigkill', load.acked));
  console.log(
    `  ${load.outcomes.length} writes, statuses ${JSON.stringify(countStatuses(load.outcomes))}; ${load.acked.length} acknowledged, ` +
      `${check.storedVersions} versions stored, ${check.lost.length} lost, ${check.duplicated.length} duplicated, ${check.inconsistent.length} ids with history and state in disagreement`,
  );
  expect(load.acked.length > 0, 'the load wrote before the kill');
  expect(check.lost.length === 0, 'every write acknowledged before the kill is stored');
  expect(check.duplicated.length === 0, 'no version is stored twice');
  expect(check.inconsistent.length === 0, 'history and current state agree (no half-written version)');
  const again = await start(url);
  await waitReady(again);
  const restartedAt = Date.now();
  current = again.baseUrl;
  const after = await send(again.baseUrl, 'POST', '/api/appointments', write('sigkill-after', 'x', 3));
  expect(after.status === 201, 'started again, the service serves');
  // more changes after the restart, for the feed's followers to resume into
  const more = startLoad({ baseUrl: again.baseUrl, orgId: 'sigkill', concurrency: 8, versionsPerId: 5, idPrefix: 'v' });
  await sleep(1_500);
  await more.stop();
  await checkFollowers(again.baseUrl, 'sigkill', [load, more], followers, {
    allowNetworkErrors: true,
    after: restartedAt,
  });
  await again.kill();
}

async function sigterm(c: Cluster) {
  console.log('\n# SIGTERM during a load');
  const url = await c.createDatabase('sigterm');
  const server = await start(url);
  await waitReady(server);
  await withSql(url, (sql) => sql.unsafe(slowTrigger));
  const load = startLoad({ baseUrl: server.baseUrl, orgId: 'sigterm', concurrency: 8 });
  // writes that take 1.5 s in the database: surely in flight when the signal comes
  const slow = Array.from({ length: 5 }, (_, i) =>
    send(server.baseUrl, 'POST', '/api/appointments', write('slow-sigterm', `s${i}`, i)),
  );
  await withSql(url, async (sql) => {
    for (let i = 0; i < 100; i++) {
      const [{ n }] = await sql<
        { n: number }[]
      >`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%upsert_appointment%' AND wait_event = 'PgSleep'`;
      if (n === 5) return;
      await sleep(20);
    }
  });
  const signalled = Date.now();
  server.child.kill('SIGTERM');
  await sleep(100);
  const late = await Promise.all(
    Array.from({ length: 5 }, (_, i) => send(server.baseUrl, 'POST', '/api/appointments', write('late', `l${i}`, i))),
  );
  const slowAnswers = await Promise.all(slow);
  const exit = await Promise.race([server.exited, sleep(SHUTDOWN_BOUND_MS + 5_000).then(() => null)]);
  const exitMs = Date.now() - signalled;
  await load.stop();
  const check = await withSql(url, (sql) => checkStore(sql, 'sigterm', load.acked));
  const lateStored = await withSql(
    url,
    (sql) => sql<{ n: number }[]>`SELECT count(*)::int AS n FROM appointments WHERE org_id = 'late'`,
  );
  console.log(
    `  in flight: ${slowAnswers.map((a) => a.status).join(', ')}; sent after the signal: ${late.map((a) => a.status).join(', ')}; ` +
      `exit ${exit ? `code ${exit.code} signal ${exit.signal}` : 'none'} after ${exitMs} ms; load statuses ${JSON.stringify(countStatuses(load.outcomes))}, ` +
      `${load.acked.length} acknowledged, ${check.lost.length} lost`,
  );
  expect(
    slowAnswers.every((a) => a.status === 201),
    'requests in flight finish with their real answers',
  );
  expect(
    late.every((a) => a.status === 'network-error' || a.status === 503) && lateStored[0]!.n === 0,
    'new requests are refused',
  );
  expect(
    exit !== null && exit.code === 0 && exitMs < SHUTDOWN_BOUND_MS,
    `the process exits 0 within ${SHUTDOWN_BOUND_MS} ms`,
  );
  expect(
    load.outcomes.every((o) => o.status !== 500),
    'no 500 during the shutdown',
  );
  expect(check.lost.length === 0, 'every acknowledged write is stored');
  if (exit === null) await server.kill();
}

async function lockedAndSlow(c: Cluster) {
  console.log('\n# a locked database under a flood of requests (pool of 4)');
  const url = await c.createDatabase('locked');
  const server = await start(url, { DB_POOL_MAX: '4' });
  await waitReady(server);
  expect(
    (await send(server.baseUrl, 'POST', '/api/appointments', write('locked', 'a', 1))).status === 201,
    'the row exists',
  );
  const pid = server.child.pid!;
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(procStatus(pid))?.[1] ?? 0);
  const rssBefore = rss();
  let answers: Outcome[] = [];
  let rssPeak = rssBefore;
  await withSql(url, (sql) =>
    sql.begin(async (tx) => {
      await tx`LOCK TABLE appointments IN ACCESS EXCLUSIVE MODE`;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rss())), 100);
      answers = await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          i % 2
            ? send(server.baseUrl, 'GET', '/api/appointments?orgId=locked')
            : send(server.baseUrl, 'POST', '/api/appointments', {
                ...write('locked', 'a', 1),
                updatedAt: `2031-12-03 00:00:${String(i % 60).padStart(2, '0')}`,
              }),
        ),
      );
      clearInterval(sampler);
    }),
  );
  const longest = Math.max(...answers.map((a) => a.ms));
  console.log(
    `  ${answers.length} requests while the table is locked: statuses ${JSON.stringify(countStatuses(answers))}, codes ${JSON.stringify(countBy(answers.map((a) => a.code ?? '-')))}, ` +
      `longest answer ${longest} ms; RSS ${Math.round(rssBefore / 1024)} MiB before, ${Math.round(rssPeak / 1024)} MiB at most`,
  );
  expect(
    answers.every((a) => a.status === 503 && a.retryAfter === '1'),
    'every request is answered 503 with Retry-After',
  );
  expect(longest < ANSWER_BOUND_MS, `every answer within ${ANSWER_BOUND_MS} ms`);
  const after = await send(server.baseUrl, 'GET', '/api/appointments?orgId=locked');
  expect(after.status === 200, 'serves again once the lock is gone');
  await server.kill();
}

async function databaseRestart(c: Cluster) {
  console.log('\n# PostgreSQL stopped in the middle of a load, then started again');
  const url = await c.createDatabase('restart');
  const server = await start(url);
  await waitReady(server);
  const followers = startFeedConsumers(server.baseUrl, followersOf('restart'));
  await followers.ready;
  const load = startLoad({ baseUrl: server.baseUrl, orgId: 'restart', concurrency: 16, versionsPerId: 3 });
  const probes: Array<{ path: string; status: number | string; down: boolean }> = [];
  let down = false;
  let probing = true;
  const prober = (async () => {
    while (probing) {
      for (const path of ['/health', '/ready']) {
        const wasDown = down;
        const res = await send(server.baseUrl, 'GET', path);
        probes.push({ path, status: res.status, down: wasDown && down });
      }
      await sleep(50);
    }
  })();
  await sleep(1_500);
  await c.stop();
  const downFrom = Date.now();
  down = true;
  await sleep(3_000);
  down = false;
  const downTo = Date.now();
  await c.start();
  const upAt = Date.now();
  let recoveredAt: number | undefined;
  while (recoveredAt === undefined && Date.now() - upAt < 30_000) {
    await sleep(50);
    recoveredAt = load.outcomes.find((o) => o.startedAt >= upAt && (o.status === 201 || o.status === 200))?.startedAt;
  }
  await sleep(1_000);
  probing = false;
  await prober;
  await load.stop();
  const check = await withSql(url, (sql) => checkStore(sql, 'restart', load.acked));
  const whileDown = load.outcomes.filter((o) => o.startedAt >= downFrom && o.startedAt + o.ms <= downTo);
  const unavailable = load.outcomes.filter((o) => o.status === 503);
  const readyDown = probes.filter((p) => p.path === '/ready' && p.down);
  console.log(
    `  ${load.outcomes.length} writes, statuses ${JSON.stringify(countStatuses(load.outcomes))}; while down: ${whileDown.length} answered, ` +
      `longest ${Math.max(0, ...whileDown.map((o) => o.ms))} ms; longest answer overall ${Math.max(...load.outcomes.map((o) => o.ms))} ms; ` +
      `PostgreSQL took ${upAt - downTo} ms to start, first acknowledged write ${recoveredAt === undefined ? 'never' : `${recoveredAt - upAt} ms`} after; ` +
      `${load.acked.length} acknowledged, ${check.storedVersions} stored, ${check.lost.length} lost, ${check.duplicated.length} duplicated`,
  );
  expect(whileDown.length > 0 && whileDown.every((o) => o.status === 503), 'while it is down, writes are answered 503');
  expect(
    unavailable.every((o) => o.retryAfter === '1'),
    'every 503 carries Retry-After',
  );
  expect(
    load.outcomes.every((o) => o.status === 201 || o.status === 200 || o.status === 503),
    'no 500, no request left unanswered',
  );
  expect(Math.max(...load.outcomes.map((o) => o.ms)) < ANSWER_BOUND_MS, `no request waits past ${ANSWER_BOUND_MS} ms`);
  expect(readyDown.length > 0 && readyDown.every((p) => p.status === 503), '/ready says 503 while it is down');
  expect(
    probes.filter((p) => p.path === '/health').every((p) => p.status === 200),
    '/health stays 200',
  );
  expect(recoveredAt !== undefined, 'recovers by itself, without a restart');
  expect(
    check.lost.length === 0 && check.duplicated.length === 0 && check.inconsistent.length === 0,
    'no acknowledged write lost, none duplicated',
  );
  await checkFollowers(server.baseUrl, 'restart', [load], followers, { allowNetworkErrors: false, after: upAt });
  await server.kill();
}

function procStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

async function cleanUp() {
  await Promise.all(servers.map((s) => s.kill()));
  await cluster?.destroy();
}

process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)));
try {
  cluster = await startCluster('check');
  for (const scenario of [twoInstances, sigkill, sigterm, lockedAndSlow, databaseRestart]) {
    try {
      await scenario(cluster);
    } catch (error) {
      console.log(`  FAIL ${scenario.name}: ${error instanceof Error ? error.message : String(error)}`);
      failures.push(scenario.name);
    }
    await Promise.all(servers.splice(0).map((s) => s.kill()));
  }
} finally {
  await cleanUp();
}
console.log(
  failures.length === 0
    ? '\nAll fault scenarios kept their promises.'
    : `\n${failures.length} broken: ${failures.join('; ')}`,
);
process.exit(failures.length === 0 ? 0 : 1);
