// npm run bench [-- --quick] [-- --scenarios=reads,create-heavy,open-streams] [-- --out=DIR]
// Starts PostgreSQL (embedded, or a fresh database on the server of BENCH_DATABASE_URL) and the service
// as a child process, runs each scenario of scenarios.js through HTTP and straight through the driver
// (the limit), then the measurements (open-streams, growth, feed, webhooks, statements), and writes result.json,
// report.md and chart.svg. --scenarios names scenarios and measurements; naming no measurement runs all of them.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, copyFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres, { type Sql } from 'postgres';
import { configWith } from '../../src/config.js';
import { createSql } from '../../src/db/client.js';
import { backendCpuSeconds, startBenchPostgres } from './postgres.js';
import { migrate } from '../../src/db/migrations.js';
import {
  directSender,
  httpSender,
  stopLoops,
  processUsage,
  resetPeakRss,
  runLoop,
  type ScenarioRequest,
  type Stats,
} from './load.js';
import { measureOpenStreams } from './open-streams.js';
import { measureCatchUp, measureLatency } from './feed.js';
import { measureStatements } from './statements.js';
import { measureWebhookLatency } from './webhooks.js';
import { startService } from './service.js';
import {
  renderChart,
  renderMarkdown,
  type BenchResult,
  type CpuPerRequest,
  type RunResult,
  type ScenarioResult,
} from './report.js';
import { insertCalendar } from './calendar.js';
import { instantAfterSeeding, SCENARIO_NAMES, scenarios, type Scenario, type ScenarioContext } from './scenarios.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROJECT = path.resolve(HERE, '../..');
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = args.includes('--quick');
const POOL_MAX = configWith().dbPoolMax; // the service's default DB_POOL_MAX; the limit uses the same

const plan = quick
  ? {
      connections: [1, 10, 50],
      warmupMs: 200,
      durationMs: 600,
      tableSizes: [1_000, 10_000],
      history: { ids: 1_000, versions: 10 },
      openStreams: { streams: 200, writes: 5 },
      bulkSeedAppointments: 100_000,
      statements: { seconds: 1, warmupSeconds: 0.2, rounds: 1, connections: [10, 50] },
      webhooks: { seconds: 4, rounds: 1, rate: 25 },
    }
  : {
      connections: [1, 10, 50],
      warmupMs: 2_000,
      durationMs: 10_000,
      tableSizes: [10_000, 100_000, 1_000_000],
      history: { ids: 10_000, versions: 100 },
      openStreams: { streams: 1_000, writes: 20 },
      bulkSeedAppointments: 1_000_000,
      statements: { seconds: 5, warmupSeconds: 1, rounds: 3, connections: [10, 50] },
      webhooks: { seconds: 10, rounds: 3, rate: 25 },
    };
const MEASUREMENT_NAMES = ['open-streams', 'growth', 'feed', 'webhooks', 'statements'];
const named = flag('scenarios')?.split(',');
const chosen = (named ?? SCENARIO_NAMES).filter((n) => SCENARIO_NAMES.includes(n));
const measurements = named?.some((n) => MEASUREMENT_NAMES.includes(n))
  ? MEASUREMENT_NAMES.filter((n) => named.includes(n))
  : MEASUREMENT_NAMES;
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = path.resolve(flag('out') ?? path.join(PROJECT, 'bench-results', stamp));

const log = (message: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

// --- what has to be cleaned up, whatever happens
const cleanups: Array<() => Promise<void> | void> = [];
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        console.error('cleanup:', error);
      }
    }
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the service and the database`);
    stopLoops();
    void cleanup().then(() => process.exit(130));
  });
}

async function openDatabase(): Promise<{ url: string; kind: string; pid?: number }> {
  const given = process.env.BENCH_DATABASE_URL;
  if (given) {
    const name = `bench_${randomBytes(4).toString('hex')}`;
    const admin = postgres(given, { max: 1, onnotice: () => {} });
    await admin`CREATE DATABASE ${admin(name)}`;
    cleanups.push(async () => {
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`;
      await admin.end();
    });
    const url = new URL(given);
    url.pathname = `/${name}`;
    return { url: url.toString(), kind: `database ${name} on BENCH_DATABASE_URL's server` };
  }
  const pg = await startBenchPostgres('bench', log, cleanups);
  return { url: pg.url, kind: 'embedded PostgreSQL (durable settings: fsync on)', pid: pg.pid };
}

/** Sends the seed requests, 10 at a time, and fails when one is not answered as expected. */
async function seed(baseUrl: string, requests: ScenarioRequest[]) {
  const http = httpSender(baseUrl, 10);
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const r = requests[next++]!;
      const status = await http.send(r);
      if (!r.expected.includes(status))
        throw new Error(`seed ${r.method} ${r.path} ${JSON.stringify(r.body)}: ${status}`);
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
  await http.close();
}

const fmt = (s: Stats) => `${s.rps} req/s, p50 ${s.p50} ms, p99 ${s.p99} ms, ${JSON.stringify(s.statuses)}`;

async function main() {
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  log(`${quick ? 'quick' : 'full'} run; results in ${outDir}`);
  const db = await openDatabase();
  log(`database: ${db.kind}`);
  await migrate(db.url, () => {});
  // compiled, through the one start command, which execs node (so the child's pid is the service's,
  // for its CPU and memory figures)
  const service = await startService({
    dir: PROJECT,
    databaseUrl: db.url,
    logFile: path.join(outDir, 'service.log'),
    // the webhooks measurement's receiver listens on 127.0.0.1 (nothing else creates endpoints)
    env: { DB_POOL_MAX: String(POOL_MAX), WEBHOOK_ALLOW_PRIVATE_URLS: 'true' },
  });
  cleanups.push(service.stop);
  const { baseUrl, child } = service;
  const pid = child.pid!;
  log(`service pid ${pid} at ${baseUrl}`);
  const sql = createSql({ databaseUrl: db.url, poolMax: POOL_MAX }, true);
  cleanups.push(() => sql.end({ timeout: 5 }));
  const direct = directSender(sql);
  const database = new URL(db.url).pathname.slice(1);
  /** A loop, and the CPU it cost a request: the server's (when it is a process of its own), this process's, PostgreSQL's. */
  const measured = async (loop: () => Promise<Stats>, serverPid?: number) => {
    const cpu0 = { server: serverPid ? processUsage(serverPid).cpuSeconds : 0, self: process.cpuUsage() };
    const db0 = db.pid ? backendCpuSeconds(db.pid, database) : 0;
    const stats = await loop();
    const perRequest = (seconds: number) =>
      stats.answered ? Math.round((seconds * 1000 * 1000) / stats.answered) / 1000 : 0;
    const self = process.cpuUsage(cpu0.self);
    const cpu: CpuPerRequest = {
      server: serverPid ? perRequest(processUsage(serverPid).cpuSeconds - cpu0.server) : 0,
      loadGenerator: perRequest((self.user + self.system) / 1e6),
      database: db.pid ? perRequest(backendCpuSeconds(db.pid, database) - db0) : null,
    };
    return { stats, cpu };
  };
  // The bare implementation (bare-service.ts), with the driver's pipelining and with the service's gate
  const bare = chosen.some((n) => BARE_SCENARIOS.includes(n))
    ? {
        pipelined: await startBare(db.url, 'pipelined'),
        gated: await startBare(db.url, 'gated'),
      }
    : undefined;
  const loop = { warmupMs: plan.warmupMs, durationMs: plan.durationMs };
  const run = randomBytes(3).toString('hex');

  const results: ScenarioResult[] = [];
  for (const name of chosen) {
    const scenario = scenarios[name as keyof typeof scenarios];
    const ctx: ScenarioContext = { run: `${run}-${name}` };
    if (scenario.bulkSeed) await bulkSeed(sql, scenario.bulkSeed, ctx, name);
    else {
      const seedRequests = scenario.seed(ctx);
      if (seedRequests.length) {
        log(`${name}: seeding ${seedRequests.length} requests`);
        await seed(baseUrl, seedRequests);
      }
    }
    ctx.at = instantAfterSeeding();
    const build = (vu: number, iter: number) => scenario.request(ctx, vu, iter);
    const iterations: number[] = [];
    const result: ScenarioResult = {
      name,
      title: scenario.title,
      description: scenario.description,
      itemsPerRequest: scenario.itemsPerRequest,
      runs: [],
    };
    // A batch takes many times as long as one write: a window of a few of them would measure the
    // start and the end of the window more than the throughput.
    const window =
      (scenario.itemsPerRequest ?? 1) > 1 ? { warmupMs: loop.warmupMs * 5, durationMs: loop.durationMs * 5 } : loop;
    for (const connections of scenario.connections ?? plan.connections) {
      const http = httpSender(baseUrl, connections);
      const peakReset = resetPeakRss(pid);
      const before = processUsage(pid);
      const service = await measured(
        () => runLoop({ ...window, connections, build, iterations, send: http.send }),
        pid,
      );
      const after = processUsage(pid);
      await http.close();
      const limit = await measured(() => runLoop({ ...window, connections, build, iterations, send: direct }));
      const cpuSeconds = Math.round((after.cpuSeconds - before.cpuSeconds) * 100) / 100;
      const row: RunResult = {
        connections,
        service: service.stats,
        limit: limit.stats,
        serviceCpuSeconds: cpuSeconds,
        serviceCpuMsPerRequest: service.cpu.server,
        servicePeakRssMb: peakReset ? after.peakRssMb : Math.max(before.rssMb, after.rssMb),
        throughputRatio: limit.stats.rps ? Math.round((service.stats.rps / limit.stats.rps) * 100) / 100 : 0,
        p99Ratio: limit.stats.p99 ? Math.round((service.stats.p99 / limit.stats.p99) * 100) / 100 : 0,
        cpu: { service: service.cpu, limit: limit.cpu },
      };
      if (bare && BARE_SCENARIOS.includes(name) && connections > 1) {
        for (const way of ['pipelined', 'gated'] as const) {
          const bareHttp = httpSender(bare[way].baseUrl, connections);
          const cell = await measured(
            () => runLoop({ ...window, connections, build, iterations, send: bareHttp.send }),
            bare[way].child.pid,
          );
          await bareHttp.close();
          (row.bare ??= {})[way] = cell.stats;
          row.cpu![`bare-${way}`] = cell.cpu;
          log(`${name} @${connections}: bare (${way}) ${fmt(cell.stats)}`);
        }
      }
      result.runs.push(row);
      const { stats: s } = service;
      const { stats: l } = limit;
      const items = scenario.itemsPerRequest ?? 1;
      const perItem = items > 1 ? ` (${Math.round(s.rps * items)} | ${Math.round(l.rps * items)} appointments/s)` : '';
      log(`${name} @${connections}: service ${fmt(s)} | limit ${fmt(l)}${perItem}`);
    }
    results.push(result);
  }

  const openStreams = measurements.includes('open-streams')
    ? await measureOpenStreams({ baseUrl, pid, ...plan.openStreams, orgId: `streams-${run}`, log })
    : null;
  const growth = measurements.includes('growth') ? await measureGrowth(sql, baseUrl, pid, run) : null;
  // the change feed (issue 12): catch-up through HTTP against the driver, latency to a long-poll and a stream
  let feed: BenchResult['feed'];
  if (measurements.includes('feed')) {
    const changes = quick ? 10_000 : 100_000;
    log(`feed: catch-up of ${changes} changes, then latency`);
    const catchUp = await measureCatchUp(sql, baseUrl, { orgId: `catch-up-${run}`, changes, rounds: 3 });
    const latency = [];
    for (const holder of [undefined, 'sql'] as const)
      latency.push(
        await measureLatency(sql, baseUrl, {
          orgId: `latency-${run}-${holder ?? 'alone'}`,
          writes: quick ? 50 : 300,
          spacingMs: 50,
          holder,
        }),
      );
    // issue 16: the same timed writes while creates at 500/s go to their org
    latency.push(
      await measureLatency(sql, baseUrl, {
        orgId: `latency-${run}-load`,
        writes: quick ? 50 : 300,
        spacingMs: 50,
        load: { rate: 500 },
        pids: { service: pid, postmaster: db.pid, database: 'bench' },
      }),
    );
    feed = { catchUp, latency };
  }
  // writes with 20 webhook endpoints subscribed against none, at one fixed rate (issue 16)
  const webhooks = measurements.includes('webhooks')
    ? await measureWebhookLatency({
        databaseUrl: db.url,
        baseUrl,
        pid,
        orgPrefix: `webhooks-${run}`,
        ...plan.webhooks,
        log,
      })
    : null;
  // the service's write statements against the simplest statement that keeps the core rules (issue 16)
  const statements = measurements.includes('statements')
    ? await measureStatements({ url: db.url, postmaster: db.pid, poolMax: POOL_MAX, ...plan.statements, log })
    : null;
  const result: BenchResult = {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? '',
      loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
      node: process.version,
    },
    database: db.kind,
    poolMax: POOL_MAX,
    plan,
    scenarios: results,
    openStreams,
    growth,
    feed,
    statements,
    webhooks,
    pgbench: await runPgbench(db.url, plan.connections, quick ? 1 : 10),
    totalSeconds: 0,
  };
  result.totalSeconds = Math.round((Date.now() - started) / 1000);
  writeFileSync(path.join(outDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(path.join(outDir, 'chart.svg'), renderChart(result));
  writeFileSync(path.join(outDir, 'report.md'), renderMarkdown(result));
  if (!quick && !flag('out')) {
    const latest = path.join(HERE, 'latest');
    mkdirSync(latest, { recursive: true });
    for (const file of ['result.json', 'chart.svg', 'report.md'])
      copyFileSync(path.join(outDir, file), path.join(latest, file));
    log(`copied the report to ${path.relative(PROJECT, latest)}/`);
  }
  console.log(`\n${renderMarkdown(result, { summary: true })}`);
  log(`done in ${result.totalSeconds} s; report: ${path.join(outDir, 'report.md')}`);
}

/** The scenarios that the bare implementation serves (its one route, POST /api/appointments). */
const BARE_SCENARIOS = ['create-heavy', 'update-heavy'];

async function startBare(databaseUrl: string, way: 'pipelined' | 'gated') {
  const bare = await startService({
    dir: PROJECT,
    entry: path.join(HERE, 'bare-service.ts'),
    databaseUrl,
    logFile: path.join(outDir, `bare-${way}.log`),
    env: { DB_POOL_MAX: String(POOL_MAX), BARE_GATE: way === 'gated' ? '1' : '0' },
  });
  cleanups.push(bare.stop);
  log(`bare implementation (${way}) pid ${bare.child.pid} at ${bare.baseUrl}`);
  return bare;
}

/**
 * After a bulk seed, as autovacuum would do it sooner or later: statistics, the visibility map and hint
 * bits set now rather than by autovacuum or by the first reads in the middle of a measurement.
 */
async function vacuum(sql: Sql, table: 'appointments' | 'appointment_versions') {
  // VACUUM cannot run in a transaction, so not through bulk(): a connection of its own, untimed
  const connection = await sql.reserve();
  try {
    await connection`SET statement_timeout = 0`;
    await connection.unsafe(`VACUUM (ANALYZE) ${table}`);
    await connection`RESET statement_timeout`;
  } finally {
    connection.release();
  }
}

/** A bulk seed, free of the statement timeout that the service's pool settings (createSql) impose. */
async function bulk(sql: Sql, statement: (tx: postgres.TransactionSql) => Promise<unknown>) {
  await sql.begin(async (tx) => {
    await tx`SET LOCAL statement_timeout = 0`;
    await statement(tx);
  });
}

/** A scenario's org of a large calendar, in one statement; sets ctx.appointments, which its requests read. */
async function bulkSeed(sql: Sql, spec: NonNullable<Scenario['bulkSeed']>, ctx: ScenarioContext, name: string) {
  ctx.appointments = Math.min(spec.appointments, plan.bulkSeedAppointments);
  log(`${name}: seeding ${ctx.appointments} appointments in one statement`);
  await bulk(sql, (tx) => insertCalendar(tx, spec.orgId(ctx), ctx.appointments!));
  await vacuum(sql, 'appointments');
}

/** Create throughput by table size (seeded with generate_series), and point-in-time reads on a long history. */
async function measureGrowth(
  sql: Sql,
  baseUrl: string,
  pid: number,
  run: string,
): Promise<NonNullable<BenchResult['growth']>> {
  const create = scenarios['create-heavy'];
  const org = `scale-${run}`;
  const connections = 10;
  const iterations: number[] = [];
  const bySize: NonNullable<BenchResult['growth']>['createBySize'] = [];
  let seeded = 0;
  for (const size of plan.tableSizes) {
    log(`growth: seeding the org to ${size} appointments`);
    await bulk(
      sql,
      (tx) => tx`
      INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
      SELECT ${org}, 's-' || g, ${'2030-01-01T00:00:00Z'}::timestamptz + g * interval '30 minutes',
             ${'2030-01-01T00:00:00Z'}::timestamptz + (g + 1) * interval '30 minutes',
             ${'2029-12-31T23:59:00Z'}::timestamptz, ${'2030-01-01T00:00:00Z'}::timestamptz, 1, clock_timestamp()
      FROM generate_series(${seeded}::int, ${size - 1}::int) AS g`,
    );
    await vacuum(sql, 'appointments');
    seeded = size;
    const ctx = { run: `${run}-scale`, orgId: org, slotOffset: 2_000_000 };
    const build = (vu: number, iter: number) => create.request(ctx, vu, iter);
    const http = httpSender(baseUrl, connections);
    resetPeakRss(pid);
    const service = await runLoop({
      warmupMs: plan.warmupMs,
      durationMs: plan.durationMs,
      connections,
      build,
      iterations,
      send: http.send,
    });
    await http.close();
    bySize.push({ appointments: size, connections, service, servicePeakRssMb: processUsage(pid).peakRssMb });
    log(`growth: create with ${size} in the org: ${fmt(service)}`);
  }

  const { ids, versions } = plan.history;
  const pitOrg = `pit-${run}`;
  log(`growth: seeding ${ids * versions} history rows (${ids} appointments x ${versions} versions)`);
  const t0 = '2031-01-01T00:00:00Z';
  // version v of appointment i was current during [t0 + v h + i ms, t0 + (v+1) h + i ms)
  // The timeline index (an R-tree) is built faster in one go than a row at a time: set aside meanwhile.
  const [{ timelineIndex }] = await sql<{ timelineIndex: string }[]>`
    SELECT indexdef AS "timelineIndex" FROM pg_indexes WHERE indexname = 'appointment_versions_timeline'`;
  await sql`DROP INDEX appointment_versions_timeline`;
  await bulk(
    sql,
    (tx) => tx`
    INSERT INTO appointment_versions (org_id, id, version, start_at, end_at, created_at, updated_at, valid_from, valid_to, deleted)
    SELECT ${pitOrg}, 'p-' || i, v,
           ${'2030-01-01T00:00:00Z'}::timestamptz + i * interval '30 minutes',
           ${'2030-01-01T00:00:00Z'}::timestamptz + (i + 1) * interval '30 minutes',
           ${t0}::timestamptz, ${t0}::timestamptz + v * interval '1 second',
           ${t0}::timestamptz + v * interval '1 hour' + i * interval '1 millisecond',
           ${t0}::timestamptz + (v + 1) * interval '1 hour' + i * interval '1 millisecond', false
    FROM generate_series(1, ${versions}::int) AS v, generate_series(0, ${ids - 1}::int) AS i`,
  );
  await bulk(
    sql,
    (tx) => tx`
    INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
    SELECT ${pitOrg}, 'p-' || i, ${'2030-01-01T00:00:00Z'}::timestamptz + i * interval '30 minutes',
           ${'2030-01-01T00:00:00Z'}::timestamptz + (i + 1) * interval '30 minutes',
           ${t0}::timestamptz, ${t0}::timestamptz + (${versions}::int + 1) * interval '1 second', ${versions}::int + 1,
           ${t0}::timestamptz + (${versions}::int + 1) * interval '1 hour' + i * interval '1 millisecond'
    FROM generate_series(0, ${ids - 1}::int) AS i`,
  );
  await bulk(sql, (tx) => tx.unsafe(timelineIndex!));
  await vacuum(sql, 'appointment_versions');
  await vacuum(sql, 'appointments');
  const at = new Date(Date.parse(t0) + Math.floor(versions / 2) * 3_600_000 + 1_800_000).toISOString();
  const request: ScenarioRequest = {
    method: 'GET',
    path: `/api/appointments?orgId=${pitOrg}&limit=100&at=${encodeURIComponent(at)}`,
    expected: [200],
  };
  const build = () => request;
  const http = httpSender(baseUrl, connections);
  const service = await runLoop({
    warmupMs: plan.warmupMs,
    durationMs: plan.durationMs,
    connections,
    build,
    iterations: [],
    send: http.send,
  });
  await http.close();
  const limit = await runLoop({
    warmupMs: plan.warmupMs,
    durationMs: plan.durationMs,
    connections,
    build,
    iterations: [],
    send: directSender(sql),
  });
  log(`growth: point-in-time list on ${ids * versions} history rows: service ${fmt(service)} | limit ${fmt(limit)}`);
  return {
    createBySize: bySize,
    pointInTime: { historyRows: ids * versions, appointments: ids, connections, service, limit },
  };
}

/** pgbench on the create statement, where pgbench is installed: each client in an org of its own. */
async function runPgbench(url: string, connections: number[], seconds: number): Promise<BenchResult['pgbench']> {
  if (spawnSync('pgbench', ['--version']).status !== 0) return null;
  const script = path.join(outDir, 'create.pgbench.sql');
  // a slot at random among 5e9 half hours: two creates of one client meet in one slot once in ~1e5 runs
  writeFileSync(
    script,
    `\\set n random(1, 5000000000)
SELECT status FROM upsert_appointment('pgbench-' || :client_id, 'c-' || :n::bigint, '2040-01-01 00:00:00+00'::timestamptz + :n::float8 * interval '30 minutes', '2040-01-01 00:00:00+00'::timestamptz + (:n::float8 + 1) * interval '30 minutes', '2039-12-31 00:00:00+00', '2040-01-01 00:00:00+00', false);
`,
  );
  const u = new URL(url);
  const env = { ...process.env, PGPASSWORD: decodeURIComponent(u.password) };
  const out: NonNullable<BenchResult['pgbench']> = [];
  for (const c of connections) {
    const res = spawnSync(
      'pgbench',
      [
        '-n',
        '-M',
        'prepared',
        '-f',
        script,
        '-c',
        String(c),
        '-j',
        String(Math.min(c, 2)),
        '-T',
        String(seconds),
        '-h',
        u.hostname,
        '-p',
        u.port,
        '-U',
        decodeURIComponent(u.username),
        u.pathname.slice(1),
      ],
      { env, encoding: 'utf8', timeout: (seconds + 30) * 1000 },
    );
    const tps = /tps = ([\d.]+)/.exec(res.stdout ?? '')?.[1];
    const latency = /latency average = ([\d.]+) ms/.exec(res.stdout ?? '')?.[1];
    out.push({
      connections: c,
      tps: tps ? Math.round(Number(tps)) : null,
      latencyAvgMs: latency ? Number(latency) : null,
      error: res.status === 0 ? undefined : (res.stderr || String(res.error)).slice(-300),
    });
    log(`pgbench create @${c}: ${tps ?? '?'} tps`);
  }
  return out;
}

try {
  await main();
  await cleanup();
} catch (error) {
  console.error(error);
  await cleanup();
  process.exitCode = 1;
}
