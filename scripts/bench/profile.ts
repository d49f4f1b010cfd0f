// npx tsx scripts/bench/profile.ts [--scenario=create-heavy] [--connections=50] [--seconds=10] [--out=DIR]
// Where a request's time goes, on both sides: the service started as the benchmark starts it (bin/start,
// compiled) with `node --cpu-prof` (through NODE_OPTIONS), under one scenario through HTTP, and
// PostgreSQL's own account of its statements (pg_stat_statements, nested statements of the PL/pgSQL
// functions included, track_planning on). Writes the .cpuprofile (open it in Chrome DevTools or
// speedscope), its summary by package and by function (cpu-profile-summary.ts), the top statements
// and report.md to --out.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync, mkdtempSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { migrate } from '../../src/db/migrations.js';
import { summarize, summaryMarkdown, type CpuProfile } from './cpu-profile-summary.js';
import { httpSender, processUsage, runLoop } from './load.js';
import { startScriptWith, startService } from './service.js';
import { instantAfterSeeding, scenarios, type ScenarioContext } from './scenarios.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.join(HERE, '../..');
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const SCENARIO = (flag('scenario') ?? 'create-heavy') as keyof typeof scenarios;
const CONNECTIONS = Number(flag('connections') ?? 50);
const DURATION_MS = Number(flag('seconds') ?? 10) * 1000;
const WARMUP_MS = 2_000;
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = path.resolve(flag('out') ?? path.join(ROOT, 'bench-results', `profile-${stamp}`));

const log = (message: string) => console.error(`[profile ${new Date().toISOString().slice(11, 19)}] ${message}`);

const cleanups: Array<() => unknown> = [];
async function cleanup() {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch (error) {
      console.error('cleanup:', error);
    }
  }
}

/** A durable embedded PostgreSQL with pg_stat_statements loaded: started, configured, restarted. */
async function postgresWithStatements(): Promise<EmbeddedPostgres> {
  const dir = mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), 'appointments-profile-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const pgLog = (message: string) => (/^postgres: .*\bERROR:/.test(message) ? undefined : log(message));
  const options = { dir: path.join(dir, 'pg'), database: 'profile', persistent: true, log: pgLog };
  const first = await startEmbeddedPostgres(options);
  const admin = postgres(first.adminUrl, { max: 1, onnotice: () => {} });
  await admin`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`;
  await admin`ALTER SYSTEM SET pg_stat_statements.track = 'all'`;
  await admin`ALTER SYSTEM SET pg_stat_statements.track_planning = on`;
  await admin.end();
  await first.stop();
  const pg = await startEmbeddedPostgres(options);
  cleanups.push(() => pg.stop());
  return pg;
}

interface StatementRow {
  toplevel: boolean;
  calls: number;
  total_exec_ms: number;
  mean_exec_ms: number;
  total_plan_ms: number;
  rows: number;
  shared_blks_hit: number;
  shared_blks_read: number;
  wal_records: number;
  query: string;
}

async function main() {
  mkdirSync(outDir, { recursive: true });
  const pg = await postgresWithStatements();
  await migrate(pg.url, () => {});
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  cleanups.push(() => sql.end({ timeout: 5 }));
  await sql`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;

  const service = await startService({
    dir: ROOT,
    databaseUrl: pg.url,
    logFile: path.join(outDir, 'service.log'),
    startScript: startScriptWith(ROOT, `--cpu-prof --cpu-prof-dir=${outDir}`, outDir),
  });
  cleanups.push(() => service.stop());
  const pid = service.child.pid!;
  log(`service pid ${pid} at ${service.baseUrl}; ${SCENARIO} at ${CONNECTIONS} connections`);

  const scenario = scenarios[SCENARIO];
  const ctx: ScenarioContext = { run: `profile-${Date.now()}` };
  const seeder = httpSender(service.baseUrl, 10);
  for (const r of scenario.seed(ctx)) {
    const status = await seeder.send(r);
    if (!r.expected.includes(status)) throw new Error(`seed ${r.method} ${r.path}: ${status}`);
  }
  await seeder.close();
  ctx.at = instantAfterSeeding();

  const http = httpSender(service.baseUrl, CONNECTIONS);
  const iterations: number[] = [];
  const build = (vu: number, iter: number) => scenario.request(ctx, vu, iter);
  // the warm-up stays out of both accounts: PostgreSQL's statements are reset when it ends (a postgres.js
  // query runs only once awaited or .then() is called), the profile is summed from then on
  const reset = setTimeout(() => void sql`SELECT pg_stat_statements_reset()`.then(() => {}), WARMUP_MS);
  // the same clock as the profile's timestamps (CLOCK_MONOTONIC, µs)
  const now = () => Number(process.hrtime.bigint() / 1000n);
  let cpuFrom = processUsage(pid).cpuSeconds;
  let windowFrom = now();
  const mark = setTimeout(() => {
    cpuFrom = processUsage(pid).cpuSeconds;
    windowFrom = now();
  }, WARMUP_MS);
  const stats = await runLoop({
    connections: CONNECTIONS,
    warmupMs: WARMUP_MS,
    durationMs: DURATION_MS,
    build,
    iterations,
    send: http.send,
  });
  const windowTo = now();
  clearTimeout(reset);
  clearTimeout(mark);
  const serviceCpuMs = (processUsage(pid).cpuSeconds - cpuFrom) * 1000;
  await http.close();
  log(
    `${stats.rps} req/s, p99 ${stats.p99} ms, ${JSON.stringify(stats.statuses)}; service CPU ${Math.round(serviceCpuMs)} ms`,
  );

  const statements = await sql<StatementRow[]>`
    SELECT s.toplevel, s.calls::int, round(s.total_exec_time::numeric, 1)::float AS total_exec_ms,
           round(s.mean_exec_time::numeric, 3)::float AS mean_exec_ms, round(s.total_plan_time::numeric, 1)::float AS total_plan_ms,
           s.rows::int, s.shared_blks_hit::int, s.shared_blks_read::int, s.wal_records::int,
           regexp_replace(left(s.query, 160), '\\s+', ' ', 'g') AS query
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat_statements%'
     ORDER BY s.total_exec_time DESC
     LIMIT 15`;

  await service.stop();
  const file = readdirSync(outDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${outDir}`);
  const profile = JSON.parse(readFileSync(path.join(outDir, file), 'utf8')) as CpuProfile;
  const summary = summarize(profile, { top: 30, window: [windowFrom, windowTo] });

  const perCall = (ms: number, calls: number) => Math.round((1000 * ms) / Math.max(1, calls)) / 1000;
  const statementTable = [
    '| top level | calls | exec ms total | exec ms a call | plan ms total | rows | blocks hit / read | WAL records | statement |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |',
    ...statements.map(
      (s) =>
        `| ${s.toplevel ? 'yes' : 'nested'} | ${s.calls} | ${s.total_exec_ms} | ${perCall(s.total_exec_ms, s.calls)} | ` +
        `${s.total_plan_ms} | ${s.rows} | ${s.shared_blks_hit} / ${s.shared_blks_read} | ${s.wal_records} | \`${s.query.replace(/\|/g, '\\|')}\` |`,
    ),
  ].join('\n');
  const report = [
    `# Profile: ${SCENARIO} at ${CONNECTIONS} connections, ${DURATION_MS / 1000} s (${new Date().toISOString()})`,
    '',
    `${stats.requests} requests, ${stats.rps} req/s, p50 ${stats.p50} ms, p99 ${stats.p99} ms, statuses ${JSON.stringify(stats.statuses)}; ` +
      `service CPU ${Math.round(serviceCpuMs)} ms in the window (${Math.round((1000 * serviceCpuMs) / Math.max(1, stats.requests)) / 1000} ms a request, /proc). ` +
      `Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, load ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}.`,
    '',
    '## The service (node --cpu-prof)',
    '',
    summaryMarkdown(summary, stats.requests),
    '',
    '## PostgreSQL (pg_stat_statements, after the warm-up)',
    '',
    statementTable,
    '',
  ].join('\n');
  writeFileSync(path.join(outDir, 'report.md'), report);
  writeFileSync(
    path.join(outDir, 'summary.json'),
    `${JSON.stringify({ stats, serviceCpuMs, summary, statements }, null, 2)}\n`,
  );
  console.log(report);
  log(`${path.join(outDir, 'report.md')}`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void cleanup().then(() => process.exit(130)));
try {
  await main();
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await cleanup();
}
