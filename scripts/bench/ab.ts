// npx tsx scripts/bench/ab.ts --before=DIR [--after=DIR] [--rounds=7] [--seconds=5]
//   [--scenarios=create-heavy,update-heavy] [--connections=10,50] [--out=DIR]
// An A/B of the write path between two checkouts of this project (--before, e.g. a git worktree of an
// earlier commit with node_modules linked; --after, this one by default). One embedded PostgreSQL
// (durable settings) holds a database per build, migrated by that build's own migrations; each build is
// compiled and started with its own bin/start, as `npm run bench` starts it. Each cell (scenario,
// connections, through HTTP or straight through the driver with that build's own SQL functions) is
// measured for both builds one after the other, the order swapped every round (A B, then B A), so that
// the drift of a shared machine falls on both alike. Prints a markdown table of after / before.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import postgres, { type Sql } from 'postgres';
import { configWith } from '../../src/config.js';
import type * as Client from '../../src/db/client.js';
import type * as Migrations from '../../src/db/migrations.js';
import { backendCpuSeconds, startBenchPostgres } from './postgres.js';
import type * as Load from './load.js';
import { httpSender, runLoop, type Send, type Stats } from './load.js';
import { startService } from './service.js';
import { instantAfterSeeding, scenarios, type ScenarioContext, type ScenarioRequest } from './scenarios.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const BEFORE = flag('before');
if (!BEFORE) throw new Error('--before=DIR is required: a checkout of the earlier commit, node_modules linked');
const AFTER = path.resolve(flag('after') ?? path.join(HERE, '../..'));
const ROUNDS = Number(flag('rounds') ?? 7);
const DURATION_MS = Number(flag('seconds') ?? 5) * 1000;
const WARMUP_MS = 1_000;
const CONNECTIONS = (flag('connections') ?? '10,50').split(',').map(Number);
const SCENARIOS = (flag('scenarios') ?? 'create-heavy,update-heavy').split(',') as Array<keyof typeof scenarios>;
const POOL_MAX = configWith().dbPoolMax;
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const outDir = path.resolve(flag('out') ?? path.join(HERE, '../..', 'bench-results', `ab-${stamp}`));

const log = (message: string) => console.error(`[ab ${new Date().toISOString().slice(11, 19)}] ${message}`);

type Label = 'before' | 'after';
interface Build {
  label: Label;
  dir: string;
  commit: string;
  baseUrl: string;
  direct: Send;
  sql: Sql;
  child: ChildProcess;
}
type Mode = 'service' | 'limit';
interface Cell {
  scenario: string;
  connections: number;
  mode: Mode;
  round: number;
  label: Label;
  stats: Stats;
  /** CPU time per measured request, ms: the build's service process, and its database's backends. */
  serviceCpuMs: number;
  databaseCpuMs: number;
}

/** CPU seconds (user + system) of a process, from /proc; 0 once it has gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
async function cleanup() {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch (error) {
      console.error('cleanup:', error);
    }
  }
}

async function startBuild(label: Label, dir: string, adminUrl: string, serverUrl: string): Promise<Build> {
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir, encoding: 'utf8' }).stdout.trim();
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin`CREATE DATABASE ${admin(`ab_${label}`)}`;
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/ab_${label}`;
  const databaseUrl = url.toString();
  // the build's own migrations, functions and SQL: what that commit would run
  const from = (file: string) => import(pathToFileURL(path.join(dir, file)).href);
  const { migrate } = (await from('src/db/migrations.ts')) as typeof Migrations;
  const { createSql } = (await from('src/db/client.ts')) as typeof Client;
  const { directSender } = (await from('scripts/bench/load.ts')) as typeof Load;
  await migrate(databaseUrl, () => {});
  const service = await startService({
    dir,
    databaseUrl,
    logFile: path.join(outDir, `service-${label}.log`),
    env: { DB_POOL_MAX: String(POOL_MAX) },
  });
  cleanups.push(() => service.stop());
  const { baseUrl, child } = service;
  const sql = createSql({ databaseUrl, poolMax: POOL_MAX }, true);
  cleanups.push(() => sql.end({ timeout: 5 }));
  log(`${label}: ${commit} from ${dir}, service pid ${child.pid} at ${baseUrl}`);
  return { label, dir, commit, baseUrl, direct: directSender(sql), sql, child };
}

async function seed(baseUrl: string, requests: ScenarioRequest[]) {
  const http = httpSender(baseUrl, 10);
  try {
    for (const r of requests) {
      const status = await http.send(r);
      if (!r.expected.includes(status)) throw new Error(`seed ${r.method} ${r.path}: ${status}`);
    }
  } finally {
    await http.close();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
const cpuPair = ([before, after]: number[]) => `${r2(before!)} / ${r2(after!)} (×${r2(after! / before!)})`;

async function main() {
  mkdirSync(outDir, { recursive: true });
  const pg = await startBenchPostgres('ab', log, cleanups);
  const builds: Record<Label, Build> = {
    before: await startBuild('before', path.resolve(BEFORE!), pg.adminUrl, pg.url),
    after: await startBuild('after', AFTER, pg.adminUrl, pg.url),
  };

  // one context and one iteration counter per (build, scenario): ids stay unique across cells and rounds
  const contexts = new Map<string, { ctx: ScenarioContext; iterations: number[] }>();
  for (const label of ['before', 'after'] as const)
    for (const name of SCENARIOS) {
      const ctx: ScenarioContext = { run: `ab-${label}` };
      await seed(builds[label].baseUrl, scenarios[name].seed(ctx));
      ctx.at = instantAfterSeeding();
      contexts.set(`${label} ${name}`, { ctx, iterations: [] });
    }

  const cells: Cell[] = [];
  const started = Date.now();
  for (let round = 1; round <= ROUNDS; round++) {
    const order: Label[] = round % 2 ? ['before', 'after'] : ['after', 'before'];
    for (const name of SCENARIOS)
      for (const connections of CONNECTIONS)
        for (const mode of ['service', 'limit'] as const)
          for (const label of order) {
            const b = builds[label];
            const { ctx, iterations } = contexts.get(`${label} ${name}`)!;
            const build = (vu: number, iter: number) => scenarios[name].request(ctx, vu, iter);
            const http = mode === 'service' ? httpSender(b.baseUrl, connections) : undefined;
            // CPU from the end of the warm-up to the last answer
            const cpu = () => ({
              service: cpuSeconds(b.child.pid!),
              database: backendCpuSeconds(pg.pid, `ab_${label}`),
            });
            let from = cpu();
            const mark = setTimeout(() => (from = cpu()), WARMUP_MS);
            const stats = await runLoop({
              connections,
              warmupMs: WARMUP_MS,
              durationMs: DURATION_MS,
              build,
              iterations,
              send: http?.send ?? b.direct,
            });
            clearTimeout(mark);
            const to = cpu();
            await http?.close();
            const perRequest = (seconds: number) => r2((seconds * 1000) / Math.max(1, stats.requests));
            cells.push({
              scenario: name,
              connections,
              mode,
              round,
              label,
              stats,
              serviceCpuMs: perRequest(to.service - from.service),
              databaseCpuMs: perRequest(to.database - from.database),
            });
            log(
              `round ${round} ${name} @${connections} ${mode} ${label}: ${stats.rps} req/s, p99 ${stats.p99} ms, ` +
                `CPU ms/req service ${cells.at(-1)!.serviceCpuMs} database ${cells.at(-1)!.databaseCpuMs}, ` +
                `${JSON.stringify(stats.statuses)}`,
            );
          }
  }

  const rows: string[] = [
    '| scenario | connections | path | before req/s (median) | after req/s (median) | after ÷ before per round | median | p99 before / after (ms) | PostgreSQL CPU ms/req before / after | service CPU ms/req before / after |',
    '| --- | ---: | --- | ---: | ---: | --- | ---: | --- | --- | --- |',
  ];
  const summary = [];
  for (const name of SCENARIOS)
    for (const connections of CONNECTIONS)
      for (const mode of ['service', 'limit'] as const) {
        const of = (label: Label) =>
          cells.filter(
            (c) => c.scenario === name && c.connections === connections && c.mode === mode && c.label === label,
          );
        const before = of('before');
        const after = of('after');
        const ratios = before.map((b, i) => r2(after[i]!.stats.rps / b.stats.rps));
        const unexpected = [...before, ...after].reduce((n, c) => n + c.stats.unexpected, 0);
        const item = {
          scenario: name,
          connections,
          mode,
          beforeRps: Math.round(median(before.map((c) => c.stats.rps))),
          afterRps: Math.round(median(after.map((c) => c.stats.rps))),
          ratios,
          medianRatio: r2(median(ratios)),
          beforeP99: r2(median(before.map((c) => c.stats.p99))),
          afterP99: r2(median(after.map((c) => c.stats.p99))),
          unexpected,
          // CPU per request: medians of each build's cells; after ÷ before of those medians
          databaseCpuMs: [median(before.map((c) => c.databaseCpuMs)), median(after.map((c) => c.databaseCpuMs))],
          serviceCpuMs: [median(before.map((c) => c.serviceCpuMs)), median(after.map((c) => c.serviceCpuMs))],
        };
        summary.push(item);
        rows.push(
          `| ${name} | ${connections} | ${mode === 'service' ? 'HTTP' : 'driver (limit)'} | ${item.beforeRps} | ` +
            `${item.afterRps} | ${ratios.join(' / ')} | **${item.medianRatio}** | ${item.beforeP99} / ${item.afterP99} | ` +
            `${cpuPair(item.databaseCpuMs)} | ${mode === 'service' ? cpuPair(item.serviceCpuMs) : ''} |`,
        );
      }
  const result = {
    date: new Date().toISOString(),
    before: { dir: builds.before.dir, commit: builds.before.commit },
    after: { dir: builds.after.dir, commit: builds.after.commit },
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', loadAverage: os.loadavg() },
    plan: { rounds: ROUNDS, warmupMs: WARMUP_MS, durationMs: DURATION_MS, connections: CONNECTIONS, poolMax: POOL_MAX },
    seconds: Math.round((Date.now() - started) / 1000),
    summary,
    cells,
  };
  writeFileSync(path.join(outDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
  const table = rows.join('\n');
  writeFileSync(path.join(outDir, 'report.md'), `${table}\n`);
  console.log(table);
  log(`done in ${result.seconds} s; ${path.join(outDir, 'result.json')}`);
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
