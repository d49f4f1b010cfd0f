// npm run check:fleet: issue 15, section 2. A PostgreSQL primary with a synchronous streaming standby
// on this machine (scripts/lib/replication.ts, 127.0.0.1 only), the real service as a child process
// given both hosts (target_session_attrs=read-write), a load of writers and feed consumers; then the
// primary is killed (SIGKILL to every process of it) and the standby promoted. Prints what was pushed
// and found; exits 1 when a promise is broken. Every process and folder it starts is removed at the end.
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { migrate } from '../src/db/migrations.js';
import { withSql } from './lib/database.js';
import { checkStore, countBy, countStatuses, startLoad } from './lib/faults.js';
import { checkFeed, followersOf, startFeedConsumers } from './lib/feed-checker.js';
import { describeAnomalies, readStateOf } from './lib/history-checker.js';
import { spawnServer, waitReady, type ServerProcess } from './lib/processes.js';
import { startReplicatedPair, type ReplicatedPair } from './lib/replication.js';
import { sleep } from './lib/time.js';

const ANSWER_BOUND_MS = 5_000;
const RECOVERY_BOUND_MS = 15_000;
// what an operator's tooling (pg_auto_failover, Patroni) takes at least to decide on a promotion
const PROMOTION_DELAY_MS = Number(process.env.FLEET_PROMOTION_DELAY_MS ?? 2_000);

const failures: string[] = [];
function expect(condition: boolean, promise: string) {
  console.log(`  ${condition ? 'ok  ' : 'FAIL'} ${promise}`);
  if (!condition) failures.push(promise);
}

let pair: ReplicatedPair | undefined;
let server: ServerProcess | undefined;
try {
  console.log('building a primary and a synchronous streaming standby ...');
  const builtFrom = Date.now();
  pair = await startReplicatedPair(await mkdtemp(path.join(os.tmpdir(), 'appointments-fleet-')), ['appointments']);
  console.log(
    `  primary 127.0.0.1:${pair.primaryPort}, standby 127.0.0.1:${pair.standbyPort}, streaming synchronously ` +
      `after ${Date.now() - builtFrom} ms`,
  );
  const databaseUrl = pair.multiHostUrl('appointments');
  await migrate(databaseUrl, () => {});
  server = await spawnServer(databaseUrl);
  await waitReady(server);
  const { baseUrl } = server;
  const orgId = `fleet-${Date.now()}`;

  console.log('the primary killed under load, the standby promoted:');
  const followers = startFeedConsumers(baseUrl, followersOf(orgId));
  await followers.ready;
  const load = startLoad({ baseUrl, orgId, concurrency: 8, versionsPerId: 3 });
  await sleep(2_000);
  pair.killPrimary();
  const killedAt = Date.now();
  await sleep(PROMOTION_DELAY_MS);
  await pair.promoteStandby();
  const promotedAt = Date.now();
  let recoveredAt: number | undefined;
  while (recoveredAt === undefined && Date.now() - promotedAt < RECOVERY_BOUND_MS + 10_000) {
    await sleep(50);
    recoveredAt = load.outcomes.find((o) => o.startedAt >= promotedAt && o.status === 201)?.startedAt;
  }
  await sleep(2_000);
  await load.stop();

  const outcomes = load.outcomes;
  const meanwhile = outcomes.filter((o) => o.startedAt >= killedAt && o.startedAt < (recoveredAt ?? Infinity));
  const check = await withSql(pair.urlOf('standby', 'appointments'), (sql) => checkStore(sql, orgId, load.acked));
  console.log(
    `  pushed ${outcomes.length} writes, statuses ${JSON.stringify(countStatuses(outcomes))}; ` +
      `between the kill and the first write served after it: ${meanwhile.length} answers ${JSON.stringify(countStatuses(meanwhile))}; ` +
      `longest answer ${Math.max(...outcomes.map((o) => o.ms))} ms`,
  );
  console.log(
    `  promoted ${promotedAt - killedAt} ms after the kill; the first write after the promotion was served ` +
      `${recoveredAt === undefined ? 'never' : `${recoveredAt - promotedAt} ms`} after it`,
  );
  console.log(
    `  found on the promoted standby: ${load.acked.length} acknowledged, ${check.storedVersions} versions stored, ` +
      `${check.lost.length} lost, ${check.duplicated.length} duplicated, ${check.inconsistent.length} ids inconsistent; ` +
      `${check.storedVersions - load.acked.length} committed although answered 503 (the primary died between ` +
      'its commit and the acknowledgement: in doubt, which a retry of the same write settles)',
  );
  expect(
    recoveredAt !== undefined && recoveredAt - promotedAt < RECOVERY_BOUND_MS,
    'serves again by itself within 15 s of the promotion',
  );
  expect(
    outcomes.every((o) => o.status === 201 || o.status === 200 || (o.status === 503 && o.retryAfter === '1')),
    'every answer is 201, 200 or 503 with Retry-After (no 500, no network error)',
  );
  expect(Math.max(...outcomes.map((o) => o.ms)) < ANSWER_BOUND_MS, 'every answer within 5 s');
  expect(check.lost.length === 0, 'every acknowledged write is on the new primary (0 lost)');
  expect(check.duplicated.length === 0 && check.inconsistent.length === 0, 'history and current state agree');

  await waitReady(server, 15_000);
  const state = await readStateOf(baseUrl, [orgId], () => [...new Set(load.sent.map((w) => w.id))]);
  const records = await followers.finish(state, { timeoutMs: 30_000 });
  const anomalies = checkFeed(load.events, state, records, {
    allowNetworkErrors: false,
    unavailableMayHaveWritten: true,
  });
  console.log(
    `  feed: ${records.map((r) => `${r.plan.kind}: ${r.changes.length} changes in ${r.requests} requests, failed answers ${JSON.stringify(countBy(r.failures.map((f) => f.status)))}`).join('; ')}`,
  );
  if (anomalies.length > 0) console.log(describeAnomalies(anomalies, 0));
  expect(anomalies.length === 0, 'each feed consumer (long-poll, stream, pull) saw every change once, in order');
  expect(
    records.every((r) => r.changes.some((c) => c.receivedAt > promotedAt * 1000)),
    'each consumer went on after the promotion with its token',
  );
} catch (error) {
  console.error(error);
  if (process.env.FLEET_DEBUG) console.error(server?.output().slice(-6000));
  failures.push(String(error));
} finally {
  await server?.kill();
  await pair?.destroy();
}
console.log(failures.length === 0 ? 'check:fleet: every promise kept' : `check:fleet: ${failures.length} broken`);
process.exit(failures.length === 0 ? 0 : 1);
