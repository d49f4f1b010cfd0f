// The long run of the history checker: `npm run check:history -- --clients 100 --minutes 5 [--seed N]`.
// Starts its own service (a fresh embedded PostgreSQL in a temporary folder, or DATABASE_URL), drives
// the seeded concurrent workload of scripts/lib/history-checker.ts in rounds of fresh orgs while
// `--consumers` follow the change feed (scripts/lib/feed-checker.ts; 0: none), checks each round's
// whole history and every consumer's sequence, prints operations checked per second and the
// anomalies, and exits 1 on any. `--slow-commits yes` makes one write in five commit late (a trigger;
// the default in its own database, never in DATABASE_URL's unless asked). `--instances N` starts N
// instances of the service on the database (in this process, each with its pool, feed and webhook
// delivery) and sends each client's and consumer's requests to the next one in turn.
import { mkdtemp, rm } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { configWith } from '../src/config.js';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { migrate } from '../src/db/migrations.js';
import {
  checkFeed,
  consumerPlans,
  SLOW_COMMITS_PREFIX,
  SLOW_COMMITS_SQL,
  startFeedConsumers,
} from './lib/feed-checker.js';
import { withSql } from './lib/database.js';
import { answerOf, checkHistory, describeAnomalies, readRecordedState, runWorkload } from './lib/history-checker.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '100' },
    minutes: { type: 'string', default: '5' },
    seed: { type: 'string' },
    'round-seconds': { type: 'string', default: '20' },
    orgs: { type: 'string', default: '4' },
    ids: { type: 'string', default: '8' },
    consumers: { type: 'string', default: '18' },
    'slow-commits': { type: 'string' },
    instances: { type: 'string', default: '1' },
  },
});
const consumerCount = Number(values.consumers);
if (!Number.isInteger(consumerCount) || consumerCount < 0) {
  console.error('--consumers must be a whole number');
  process.exit(2);
}
if (values['slow-commits'] !== undefined && !['yes', 'no'].includes(values['slow-commits'])) {
  console.error('--slow-commits must be yes or no');
  process.exit(2);
}
const instanceCount = Number(values.instances);
if (!Number.isInteger(instanceCount) || instanceCount < 1 || instanceCount > 16) {
  console.error('--instances must be a whole number from 1 to 16');
  process.exit(2);
}
const clients = Number(values.clients);
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const roundMs = Number(values['round-seconds']) * 1000;
for (const [name, n] of [
  ['clients', clients],
  ['minutes', minutes],
  ['seed', seed],
  ['round-seconds', roundMs],
] as const) {
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} must be a positive number`);
    process.exit(2);
  }
}

const log = (message: string) => console.error(message);
let stopDatabase = async () => {};
let databaseUrl = process.env.DATABASE_URL;
let anomalyCount = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopDatabase().finally(() => process.exit(130)));
}
try {
  if (!databaseUrl) {
    // /var/tmp: reachable by the user postgres when this runs as root
    const dir = await mkdtemp('/var/tmp/check-history-pg-');
    const embedded = await startEmbeddedPostgres({
      dir,
      database: 'check_history',
      persistent: false,
      unsafeFast: true,
      log: () => {},
    });
    databaseUrl = embedded.url;
    stopDatabase = async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  await migrate(databaseUrl, () => {});
  const slowCommits = (values['slow-commits'] ?? (process.env.DATABASE_URL ? 'no' : 'yes')) === 'yes';
  if (slowCommits) await withSql(databaseUrl, (sql) => sql.unsafe(SLOW_COMMITS_SQL));
  const apps: FastifyInstance[] = [];
  const baseUrls: string[] = [];
  for (let i = 0; i < instanceCount; i++) {
    const app = await buildApp({
      ...configWith({ dbPoolMax: Math.max(4, Math.ceil(20 / instanceCount)) }),
      databaseUrl,
      logger: pino({ level: 'silent' }),
    });
    apps.push(app);
    await app.listen({ port: 0, host: '127.0.0.1' });
    baseUrls.push(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`);
  }
  // each client (or consumer) goes to the next instance at each request, starting at its own
  const spread = () => {
    const turns = new Map<number, number>();
    return (client: number) => {
      const turn = turns.get(client) ?? client;
      turns.set(client, turn + 1);
      return baseUrls[turn % baseUrls.length]!;
    };
  };
  log(
    `check:history: ${clients} clients and ${consumerCount} feed consumers for ${minutes} min, seed ${seed}, ` +
      `${slowCommits ? 'slow commits, ' : ''}against ${baseUrls.join(', ')}`,
  );

  const runPrefix = `${slowCommits ? `${SLOW_COMMITS_PREFIX}-` : ''}hist-${seed}-${Date.now().toString(36)}`;
  const endAt = Date.now() + minutes * 60_000;
  let operations = 0;
  let versions = 0;
  let checkingMs = 0;
  let changesReceived = 0;
  let feedRequests = 0;
  let reconnects = 0;
  const statusCounts = new Map<string, number>();
  try {
    for (let round = 0; Date.now() < endAt; round++) {
      // each round: fresh orgs and its own seed derived from the run's, so its history stays small enough to check whole
      const workload = {
        seed: (seed + round * 7919) >>> 0,
        orgPrefix: `${runPrefix}-r${round}`,
        orgs: Number(values.orgs),
        idsPerOrg: Number(values.ids),
        clients,
      };
      const loadMs = Math.min(endAt - Date.now(), roundMs);
      const plans = consumerPlans(workload, { seed: workload.seed, consumers: consumerCount, loadMs });
      const consumers = startFeedConsumers(spread(), plans, workload.seed);
      await consumers.ready;
      const events = await runWorkload(spread(), { ...workload, until: Date.now() + loadMs });
      const state = await readRecordedState(spread(), workload);
      const records = await consumers.finish(state, { timeoutMs: 30_000 });
      const checkStart = performance.now();
      const anomalies = [...checkHistory(events, state), ...checkFeed(events, state, records)];
      checkingMs += performance.now() - checkStart;
      for (const r of records) {
        changesReceived += r.changes.length;
        feedRequests += r.requests;
        reconnects += r.reconnects;
      }
      operations += events.length;
      versions += state.versions.length;
      for (const e of events) {
        const kind = e.batch
          ? `${e.batch.atomic ? 'atomic ' : ''}batch item`
          : `${'ifMatch' in e.op || 'ifNoneMatch' in e.op ? 'conditional ' : ''}${e.op.kind}`;
        const label =
          e.op.kind === 'write' && e.status === 200 ? `${kind} ${answerOf(e.body).status}` : `${kind} ${e.status}`;
        statusCounts.set(label, (statusCounts.get(label) ?? 0) + 1);
      }
      log(
        `round ${round} (seed ${workload.seed}): ${events.length} operations, ${state.versions.length} versions, ` +
          `${records.reduce((n, r) => n + r.changes.length, 0)} changes received by ${records.length} consumers, ${anomalies.length} anomalies`,
      );
      if (anomalies.length > 0) {
        anomalyCount += anomalies.length;
        console.log(describeAnomalies(anomalies, workload.seed));
      }
    }
  } finally {
    await Promise.all(apps.map((app) => app.close()));
  }
  const seconds = minutes * 60;
  console.log(
    [
      `seed ${seed}, ${clients} clients, ${minutes} min, ${instanceCount} instance${instanceCount === 1 ? '' : 's'}`,
      `operations: ${operations} (${Math.round(operations / seconds)}/s through the service), versions recorded: ${versions}`,
      `feed: ${consumerCount} consumers per round received ${changesReceived} changes in ${feedRequests} requests and streams, ${reconnects} reconnections`,
      `checking: ${(checkingMs / 1000).toFixed(1)} s, ${Math.round(operations / (checkingMs / 1000))} operations checked per second`,
      `answers: ${[...statusCounts]
        .sort()
        .map(([k, n]) => `${k}: ${n}`)
        .join(', ')}`,
      `anomalies: ${anomalyCount}`,
    ].join('\n'),
  );
} catch (error) {
  console.error(error);
  anomalyCount = Math.max(anomalyCount, 1);
} finally {
  await stopDatabase();
}
process.exit(anomalyCount === 0 ? 0 : 1);
