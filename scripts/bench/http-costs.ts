// npx tsx scripts/bench/http-costs.ts [--rounds=3] [--seconds=5] [--scenarios=create-heavy,update-heavy]
//   [--connections=10,50] [--variants=service,no-access-log,...]
// What the service's HTTP work costs a request, part by part: one embedded PostgreSQL and one database;
// the service (compiled, bin/start) in variants that each turn one part off by its setting (the access log
// with LOG_LEVEL=warn, the rate limit with RATE_LIMIT_MAX=0), the bare implementation (bare-service.ts)
// with the service's gate and with the driver's pipelining, and the limit (the same SQL straight through
// the driver). Every variant runs each cell once a round, in an order rotated every round. Reports
// req/s, p99, and the CPU a request of the server, the load generator and PostgreSQL (medians over the
// rounds). A measurement tool: a variant without a part does not give that part's guarantee.
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { configWith } from '../../src/config.js';
import { createSql } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrations.js';
import { backendCpuSeconds, startBenchPostgres } from './postgres.js';
import { directSender, httpSender, processUsage, runLoop, type Send, type Stats } from './load.js';
import { startScriptWith, startService, type RunningService } from './service.js';
import { instantAfterSeeding, scenarios, type ScenarioContext } from './scenarios.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROJECT = path.resolve(HERE, '../..');
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const ROUNDS = Number(flag('rounds') ?? 3);
const DURATION_MS = Number(flag('seconds') ?? 5) * 1000;
const WARMUP_MS = 1_000;
const CONNECTIONS = (flag('connections') ?? '10,50').split(',').map(Number);
const SCENARIOS = (flag('scenarios') ?? 'create-heavy,update-heavy').split(',') as Array<keyof typeof scenarios>;
const POOL_MAX = configWith().dbPoolMax;

const log = (message: string) => console.error(`[http-costs ${new Date().toISOString().slice(11, 19)}] ${message}`);

/** A server variant: the service with some settings, or the bare implementation. */
const SERVERS: Record<string, { entry?: string; nodeFlags?: string; env: Record<string, string> }> = {
  service: { env: {} },
  'no-access-log': { env: { LOG_LEVEL: 'warn' } },
  'no-rate-limit': { env: { RATE_LIMIT_MAX: '0' } },
  'no-access-log-no-rate-limit': { env: { LOG_LEVEL: 'warn', RATE_LIMIT_MAX: '0' } },
  'heap-growing-100': { nodeFlags: '--heap-growing-percent=100', env: {} },
  'bare-gated': { entry: 'bare-service.ts', env: { BARE_GATE: '1' } },
  'bare-pipelined': { entry: 'bare-service.ts', env: { BARE_GATE: '0' } },
};
const VARIANTS = (flag('variants') ?? [...Object.keys(SERVERS), 'limit'].join(',')).split(',');

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
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

interface Cell {
  stats: Stats;
  server: number;
  loadGenerator: number;
  database: number;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

async function main() {
  const pg = await startBenchPostgres('http-costs', log, cleanups);
  await migrate(pg.url, () => {});
  const database = new URL(pg.url).pathname.slice(1);
  const sql = createSql({ databaseUrl: pg.url, poolMax: POOL_MAX }, true);
  cleanups.push(() => sql.end({ timeout: 5 }));
  const servers = new Map<string, RunningService>();
  for (const name of VARIANTS.filter((v) => v !== 'limit')) {
    const s = SERVERS[name];
    if (!s) throw new Error(`no variant ${name}; there are ${Object.keys(SERVERS).join(', ')} and limit`);
    const running = await startService({
      dir: PROJECT,
      databaseUrl: pg.url,
      logFile: path.join('/tmp', `http-costs-${name}.log`),
      env: { DB_POOL_MAX: String(POOL_MAX), ...s.env },
      ...(s.entry ? { entry: path.join(HERE, s.entry) } : {}),
      ...(s.nodeFlags ? { startScript: startScriptWith(PROJECT, s.nodeFlags, tmpdir()) } : {}),
    });
    cleanups.push(running.stop);
    servers.set(name, running);
    log(`${name}: pid ${running.child.pid}`);
  }
  const direct = directSender(sql);
  const cells = new Map<string, Cell[]>();
  for (const scenarioName of SCENARIOS) {
    const scenario = scenarios[scenarioName];
    const ctx: ScenarioContext = { run: `costs-${scenarioName}-${Date.now().toString(36)}` };
    const seed = httpSender(servers.values().next().value!.baseUrl, 10);
    for (const r of scenario.seed(ctx)) await seed.send(r);
    await seed.close();
    ctx.at = instantAfterSeeding();
    const iterations: number[] = [];
    const build = (vu: number, iter: number) => scenario.request(ctx, vu, iter);
    for (let round = 0; round < ROUNDS; round++) {
      for (const connections of CONNECTIONS) {
        const order = VARIANTS.map((_, k) => VARIANTS[(k + round) % VARIANTS.length]!);
        for (const variant of order) {
          const server = servers.get(variant);
          const http = server ? httpSender(server.baseUrl, connections) : undefined;
          const send: Send = http ? http.send : direct;
          const pid = server?.child.pid;
          const s0 = pid ? processUsage(pid).cpuSeconds : 0;
          const self0 = process.cpuUsage();
          const db0 = backendCpuSeconds(pg.pid!, database);
          const stats = await runLoop({
            connections,
            warmupMs: WARMUP_MS,
            durationMs: DURATION_MS,
            build,
            iterations,
            send,
          });
          const self = process.cpuUsage(self0);
          const per = (seconds: number) => (stats.answered ? (seconds * 1000) / stats.answered : 0);
          const cell: Cell = {
            stats,
            server: pid ? per(processUsage(pid).cpuSeconds - s0) : 0,
            loadGenerator: per((self.user + self.system) / 1e6),
            database: per(backendCpuSeconds(pg.pid!, database) - db0),
          };
          await http?.close();
          const key = `${scenarioName} | ${connections} | ${variant}`;
          cells.set(key, [...(cells.get(key) ?? []), cell]);
          log(
            `round ${round + 1} ${key}: ${stats.rps} req/s, p99 ${stats.p99} ms, CPU ms a request ${r3(cell.server)} / ${r3(cell.loadGenerator)} / ${r3(cell.database)}, ${JSON.stringify(stats.statuses)}`,
          );
        }
      }
    }
  }
  console.log(
    `\n${ROUNDS} rounds of ${DURATION_MS / 1000} s (medians); CPU ms a request: server / load generator / PostgreSQL\n`,
  );
  console.log('| scenario | conns | variant | req/s | ÷ service | p99 ms | CPU server / load gen / PostgreSQL | sum |');
  console.log('|---|---:|---|---:|---:|---:|---|---:|');
  for (const [key, list] of cells) {
    const [scenarioName, connections] = key.split(' | ');
    const service = cells.get(`${scenarioName} | ${connections} | service`);
    const rps = median(list.map((c) => c.stats.rps));
    const cpu = [
      median(list.map((c) => c.server)),
      median(list.map((c) => c.loadGenerator)),
      median(list.map((c) => c.database)),
    ];
    const ratio = service ? ` ${(rps / median(service.map((c) => c.stats.rps))).toFixed(2)}` : '';
    console.log(
      `| ${key} | ${Math.round(rps)} |${ratio} | ${median(list.map((c) => c.stats.p99))} | ${cpu.map(r3).join(' / ')} | ${r3(cpu[0]! + cpu[1]! + cpu[2]!)} |`,
    );
  }
}

try {
  await main();
} finally {
  await cleanup();
}
