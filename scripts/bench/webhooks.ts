// npm run bench:webhooks [-- --seconds=5] [-- --rounds=2] [-- --rate=25] [-- --endpoints=0,1,5,20]
//   [-- --backlog=3000 (0: none)] [-- --deliverer=separate]
// Webhooks (issues 14 and 16), against the real service (a child process, from the sources) on a PostgreSQL
// cluster of its own:
//   1. measureWebhookLatency (also a measurement of `npm run bench`): creates sent at a fixed rate (an open
//      loop) to an org with 0, 1, 5 and 20 endpoints subscribed, in alternating cells; each cell waits until
//      its deliveries have drained before the next. The receiver answers 204 at once, in a process of its
//      own (receiver-process.ts). --deliverer=separate: the writes go to an instance with WEBHOOK_DELIVERY=false
//      and a second instance delivers, to tell the deliveries' cost in the writes' process from the rest;
//   2. delivery throughput: a backlog of changes made while the endpoints are disabled, then enabled,
//      timed until the receiver (in this process) has every one, with 1 and with 5 endpoints.
// Prints markdown tables.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { migrate } from '../../src/db/migrations.js';
import { createWebhookEndpoint } from '../../src/db/webhooks.js';
import { generateSecret, sealSecret } from '../../src/webhook-secrets.js';
import { withSql } from '../lib/database.js';
import { startCluster, startLoad, type Cluster } from '../lib/faults.js';
import { spawnServer, waitReady, type ServerProcess } from '../lib/processes.js';
import { sleep } from '../lib/time.js';
import { percentile } from '../lib/webhook-checker.js';
import { startReceiver, type Receiver } from '../lib/webhook-receiver.js';
import { processUsage } from './load.js';
import { backendCpuSeconds } from './postgres.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROJECT = path.resolve(HERE, '../..');

export interface WebhookLatencyCell {
  round: number;
  endpoints: number;
  /** Creates answered 201, and the others (any other status or no answer). */
  writes: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
  /** Deliveries received for the cell's writes, and how long after the last write the last one came. */
  deliveries: number;
  drainMs: number;
  /** From a write's answer to each of its deliveries at the receiver. */
  delayP50: number | null;
  delayP99: number | null;
  /** CPU a write (ms) over the cell's writes and the drain, of the service and of PostgreSQL's backends. */
  serviceCpuMsPerWrite: number | null;
  postgresCpuMsPerWrite: number | null;
  /**
   * Over the cell's writes, from the service's /metrics: its own mean time of a create (from the request
   * to the end of its answer), the mean wait of a query for a pool connection (deliveries' too), and the
   * event loop's delay p99; null when /metrics did not answer.
   */
  serviceMeanMs: number | null;
  poolWaitMeanMs: number | null;
  eventLoopDelayP99Ms: number | null;
}

export interface WebhookLatencySummary {
  endpoints: number;
  writes: number;
  /** Percentiles of every write of every cell with this many endpoints, pooled. */
  p50: number;
  p99: number;
  delayP50: number | null;
  delayP99: number | null;
  drainMs: number;
  serviceCpuMsPerWrite: number | null;
  postgresCpuMsPerWrite: number | null;
  /** Means over the cells (see WebhookLatencyCell). */
  serviceMeanMs: number | null;
  poolWaitMeanMs: number | null;
  eventLoopDelayP99Ms: number | null;
}

export interface WebhookLatencyResult {
  /** Creates sent a second, the same in every cell. */
  rate: number;
  seconds: number;
  rounds: number;
  endpoints: number[];
  cells: WebhookLatencyCell[];
  byEndpoints: WebhookLatencySummary[];
}

export interface WebhookLatencyOptions {
  /** The service's database: the endpoints are created in it directly. */
  databaseUrl: string;
  /** The service, which must accept http:// receivers on 127.0.0.1 (WEBHOOK_ALLOW_PRIVATE_URLS=true). */
  baseUrl: string;
  rounds: number;
  seconds: number;
  /**
   * Creates a second; 25 when absent: a rate whose deliveries to 20 endpoints one instance keeps up with
   * on the benchmark's machine, so that a cell measures writes beside deliveries that keep pace, not
   * beside a backlog that grows for as long as the writes go on (docs/performance.md).
   */
  rate?: number;
  /** The counts of endpoints subscribed, one cell each per round; [0, 20] when absent. */
  endpoints?: number[];
  /** The service's pid, for its CPU (from /proc); left out when absent. */
  pid?: number;
  /** Orgs are `<orgPrefix>-<round>-<endpoints>`. */
  orgPrefix?: string;
  log: (message: string) => void;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const at = (xs: number[], p: number) => (xs.length ? round1(percentile(xs, p)) : null);

/** Creates `n` active endpoints of the org, all pointing at `url`; returns their ids. */
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

/** The receiver in a child process, and what it has received since the last take. */
async function startReceiverProcess(): Promise<{
  url: string;
  take(): Promise<Array<readonly [string, number]>>;
  close(): Promise<void>;
}> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(HERE, 'receiver-process.ts')], {
    cwd: PROJECT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { url: string }).url));
    child.once('exit', (code) => reject(new Error(`the receiver process exited (${code}) before listening`)));
  });
  return {
    url,
    take: () =>
      new Promise((resolve) => {
        child.once('message', (m) => resolve(m as Array<readonly [string, number]>));
        child.send('take');
      }),
    async close() {
      child.disconnect();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface Write {
  id: string;
  status: number;
  ms: number;
  /** Date.now() at the answer, the clock the receiver's arrival times are on. */
  answeredAt: number;
}

/**
 * Creates in the org at `rate` a second for `seconds`, each sent at its time whether or not the ones
 * before are answered (an open loop), each in a slot of its own. The pool has room for far more writes in
 * flight than the rate needs, so a slow answer does not hold back the next write.
 */
async function writeAtRate(baseUrl: string, orgId: string, rate: number, seconds: number): Promise<Write[]> {
  const pool = new Pool(baseUrl, { connections: 64, pipelining: 1 });
  const total = Math.round(rate * seconds);
  const writes: Write[] = [];
  const inFlight: Array<Promise<void>> = [];
  const base = Date.parse('2035-01-01T00:00:00Z');
  const send = async (i: number) => {
    const id = `h-${i}`;
    const body = {
      orgId,
      id,
      start: new Date(base + i * 3_600_000).toISOString(),
      end: new Date(base + i * 3_600_000 + 1_800_000).toISOString(),
      createdAt: '2034-12-01 00:00',
      updatedAt: '2034-12-01 00:00',
    };
    const started = performance.now();
    let status = 0;
    try {
      const res = await pool.request({
        method: 'POST',
        path: '/api/appointments',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      await res.body.text();
      status = res.statusCode;
    } catch {
      // no answer: counted as failed
    }
    writes.push({ id, status, ms: performance.now() - started, answeredAt: Date.now() });
  };
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = t0 + (i * 1000) / rate - performance.now();
    if (wait > 0) await sleep(wait);
    inFlight.push(send(i));
  }
  await Promise.all(inFlight);
  await pool.close();
  return writes;
}

/** The figures of the service's /metrics that tell where a write's time went (see WebhookLatencyCell). */
async function scrape(
  baseUrl: string,
): Promise<{ createS: number; creates: number; waitS: number; waits: number; lagP99S: number } | null> {
  try {
    const res = await fetch(`${baseUrl}/metrics`);
    if (!res.ok) return null;
    const text = await res.text();
    const value = (pattern: RegExp) => [...text.matchAll(pattern)].reduce((sum, m) => sum + Number(m[1]), 0);
    return {
      createS: value(/^http_request_duration_seconds_sum\{method="POST",route="\/api\/appointments",[^}]*\} (\S+)$/gm),
      creates: value(
        /^http_request_duration_seconds_count\{method="POST",route="\/api\/appointments",[^}]*\} (\S+)$/gm,
      ),
      waitS: value(/^appointments_db_pool_wait_seconds_sum (\S+)$/gm),
      waits: value(/^appointments_db_pool_wait_seconds_count (\S+)$/gm),
      // prom-client resets the event loop's histogram at each scrape: this is the delay since the one before
      lagP99S: value(/^nodejs_eventloop_lag_p99_seconds (\S+)$/gm),
    };
  } catch {
    return null;
  }
}

/** The postmaster's pid, as the parent of a backend of ours. */
async function postmasterOf(databaseUrl: string): Promise<number | undefined> {
  try {
    // read while the backend lives: it exits with its connection
    const stat = await withSql(databaseUrl, async (sql) => {
      const [{ pid }] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      return readFileSync(`/proc/${pid}/stat`, 'utf8');
    });
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    // not on this machine (or no /proc): PostgreSQL's CPU is left out
    return undefined;
  }
}

/**
 * The latency of creates with endpoints subscribed against none, on a given service and database. The
 * writes come at one fixed rate in every cell (an open loop), so that each cell asks the same of the write
 * path; what the endpoints add is then what the deliveries take from the writes.
 */
export async function measureWebhookLatency(o: WebhookLatencyOptions): Promise<WebhookLatencyResult> {
  const rate = o.rate ?? 25;
  const counts = o.endpoints ?? [0, 20];
  const prefix = o.orgPrefix ?? `webhooks-${Date.now().toString(36)}`;
  const database = decodeURIComponent(new URL(o.databaseUrl).pathname.slice(1));
  const postmaster = await postmasterOf(o.databaseUrl);
  const cpu = () => ({
    service: o.pid ? processUsage(o.pid).cpuSeconds : null,
    postgres: postmaster ? backendCpuSeconds(postmaster, database) : null,
  });
  const receiver = await startReceiverProcess();
  const cells: WebhookLatencyCell[] = [];
  const pooled = new Map<number, { ms: number[]; delays: number[] }>(counts.map((n) => [n, { ms: [], delays: [] }]));
  try {
    // the first writes of a service warm its code and the statements' plans: not measured
    await writeAtRate(o.baseUrl, `${prefix}-warm-up`, rate, Math.min(1, o.seconds));
    for (let round = 0; round < o.rounds; round++) {
      for (const n of round % 2 === 0 ? counts : [...counts].reverse()) {
        const orgId = `${prefix}-${round}-${n}`;
        const ids = await subscribe(o.databaseUrl, orgId, n, receiver.url);
        // the engine reads the new endpoints at its next poll
        await sleep(200);
        o.log(`webhooks: round ${round + 1}, ${n} endpoints: ${o.seconds} s of ${rate} creates/s`);
        const before = cpu();
        const metricsBefore = await scrape(o.baseUrl);
        const writes = await writeAtRate(o.baseUrl, orgId, rate, o.seconds);
        const wrote = Date.now();
        const metricsAfter = await scrape(o.baseUrl);
        const metricMean = (
          sum: (m: NonNullable<typeof metricsBefore>) => number,
          count: (m: NonNullable<typeof metricsBefore>) => number,
        ) =>
          metricsBefore && metricsAfter && count(metricsAfter) > count(metricsBefore)
            ? round1(((sum(metricsAfter) - sum(metricsBefore)) * 1000) / (count(metricsAfter) - count(metricsBefore)))
            : null;
        const ok = writes.filter((w) => w.status === 201);
        const answeredAt = new Map(ok.map((w) => [w.id, w.answeredAt]));
        const delays: number[] = [];
        let last = wrote;
        const deadline = wrote + 600_000;
        while (delays.length < ok.length * n) {
          if (Date.now() > deadline)
            throw new Error(`webhooks: ${delays.length} of ${ok.length * n} deliveries within 600 s`);
          await sleep(50);
          for (const [id, receivedAt] of await receiver.take()) {
            const answered = answeredAt.get(id);
            if (answered === undefined) continue;
            delays.push(receivedAt - answered);
            last = Math.max(last, receivedAt);
          }
        }
        const after = cpu();
        const perWrite = (a: number | null, b: number | null) =>
          a === null || b === null || ok.length === 0 ? null : Math.round(((b - a) * 1000 * 100) / ok.length) / 100;
        const ms = sorted(ok.map((w) => w.ms));
        const delaysSorted = sorted(delays);
        const cell: WebhookLatencyCell = {
          round,
          endpoints: n,
          writes: ok.length,
          failed: writes.length - ok.length,
          p50: at(ms, 50) ?? 0,
          p99: at(ms, 99) ?? 0,
          max: round1(ms.at(-1) ?? 0),
          deliveries: delays.length,
          drainMs: last - wrote,
          delayP50: at(delaysSorted, 50),
          delayP99: at(delaysSorted, 99),
          serviceCpuMsPerWrite: perWrite(before.service, after.service),
          postgresCpuMsPerWrite: perWrite(before.postgres, after.postgres),
          serviceMeanMs: metricMean(
            (m) => m.createS,
            (m) => m.creates,
          ),
          poolWaitMeanMs: metricMean(
            (m) => m.waitS,
            (m) => m.waits,
          ),
          eventLoopDelayP99Ms: metricsAfter ? round1(metricsAfter.lagP99S * 1000) : null,
        };
        cells.push(cell);
        pooled.get(n)!.ms.push(...ms);
        pooled.get(n)!.delays.push(...delays);
        o.log(
          `webhooks: ${n} endpoints: ${cell.writes} creates (${cell.failed} failed), p50 ${cell.p50} ms, p99 ${cell.p99} ms; ` +
            `${cell.deliveries} deliveries drained ${cell.drainMs} ms after the last write, delay p50 ${cell.delayP50 ?? '-'} ms; ` +
            `service: a create ${cell.serviceMeanMs ?? '-'} ms on average, pool wait ${cell.poolWaitMeanMs ?? '-'} ms, ` +
            `event loop delay p99 ${cell.eventLoopDelayP99Ms ?? '-'} ms`,
        );
        // gone, so that the engine has nothing of theirs left to look at in later cells and measurements
        if (ids.length)
          await withSql(o.databaseUrl, (sql) => sql`DELETE FROM webhook_endpoints WHERE id = ANY(${ids}::uuid[])`);
      }
    }
  } finally {
    await receiver.close();
  }
  const mean = (xs: Array<number | null>) =>
    xs.some((x) => x === null) ? null : Math.round((xs.reduce((s, x) => s! + x!, 0)! / xs.length) * 100) / 100;
  const byEndpoints = counts.map((n): WebhookLatencySummary => {
    const mine = cells.filter((c) => c.endpoints === n);
    const { ms, delays } = pooled.get(n)!;
    const s = sorted(ms);
    const d = sorted(delays);
    return {
      endpoints: n,
      writes: s.length,
      p50: at(s, 50) ?? 0,
      p99: at(s, 99) ?? 0,
      delayP50: at(d, 50),
      delayP99: at(d, 99),
      drainMs: Math.round(mine.reduce((sum, c) => sum + c.drainMs, 0) / mine.length),
      serviceCpuMsPerWrite: mean(mine.map((c) => c.serviceCpuMsPerWrite)),
      postgresCpuMsPerWrite: mean(mine.map((c) => c.postgresCpuMsPerWrite)),
      serviceMeanMs: mean(mine.map((c) => c.serviceMeanMs)),
      poolWaitMeanMs: mean(mine.map((c) => c.poolWaitMeanMs)),
      eventLoopDelayP99Ms: mean(mine.map((c) => c.eventLoopDelayP99Ms)),
    };
  });
  return { rate, seconds: o.seconds, rounds: o.rounds, endpoints: counts, cells, byEndpoints };
}

const added = (x: number, base: number) => (base > 0 ? Math.round(((x - base) / base) * 100) : 0);
const signed = (pct: number) => `${pct >= 0 ? '+' : ''}${pct}%`;

/**
 * The target: writes with 20 endpoints subscribed within 10% of none, at p50 and at p99. Undefined
 * when the result has no cells of 0 or of 20 endpoints.
 */
export function webhookTarget(r: WebhookLatencyResult): { text: string; met: boolean } | undefined {
  const none = r.byEndpoints.find((s) => s.endpoints === 0);
  const twenty = r.byEndpoints.find((s) => s.endpoints === 20);
  if (!none || !twenty || none.writes === 0 || twenty.writes === 0) return undefined;
  const p50 = added(twenty.p50, none.p50);
  const p99 = added(twenty.p99, none.p99);
  return {
    text:
      `writes with 20 endpoints subscribed (${r.rate} creates/s): p50 ${twenty.p50} ms vs ${none.p50} ms with none (${signed(p50)}), ` +
      `p99 ${twenty.p99} ms vs ${none.p99} ms (${signed(p99)}) (met when both within 10%)`,
    met: p50 <= 10 && p99 <= 10,
  };
}

/** The measurement's section of the report: one row per count of endpoints, the rounds pooled. */
export function renderWebhooks(r: WebhookLatencyResult): string {
  const none = r.byEndpoints.find((s) => s.endpoints === 0);
  const lines = [
    `Creates at a fixed ${r.rate} a second (sent on time whether or not the ones before were answered), ` +
      `${r.seconds} s a cell, ${r.rounds} round(s) of cells alternating in order; each cell waits until the receiver ` +
      "(204 at once, in a process of its own) has every delivery of its writes. The delay is from a write's answer " +
      'to each of its deliveries; "drained" is how long after the last write the last delivery came; the CPU is over ' +
      "the writes and the drain, divided by the writes. From the service's /metrics, over the writes: its own mean " +
      "time of a create, the mean wait of a query for a pool connection, and its event loop's delay p99 " +
      '(scripts/bench/webhooks.ts).',
    '',
    '| endpoints | creates | p50 ms | p99 ms | vs none p50 / p99 | delivery delay p50 / p99 ms | drained after ms | service CPU ms a write | PostgreSQL CPU ms a write | service: create mean ms | pool wait mean ms | event loop delay p99 ms |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const v = (x: number | null) => (x === null ? '-' : String(x));
  for (const s of r.byEndpoints) {
    const vs = none && s !== none ? `${signed(added(s.p50, none.p50))} / ${signed(added(s.p99, none.p99))}` : '';
    lines.push(
      `| ${s.endpoints} | ${s.writes} | ${s.p50} | ${s.p99} | ${vs} | ${v(s.delayP50)} / ${v(s.delayP99)} | ${s.drainMs} | ${v(s.serviceCpuMsPerWrite)} | ${v(s.postgresCpuMsPerWrite)} | ${v(s.serviceMeanMs)} | ${v(s.poolWaitMeanMs)} | ${v(s.eventLoopDelayP99Ms)} |`,
    );
  }
  const failed = r.cells.reduce((sum, c) => sum + c.failed, 0);
  if (failed) lines.push('', `${failed} creates were not answered 201.`);
  return lines.join('\n');
}

// --- npm run bench:webhooks: a cluster, a service and a receiver of its own

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
  const args = process.argv.slice(2);
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const SECONDS = Number(flag('seconds') ?? 5);
  const ROUNDS = Number(flag('rounds') ?? 2);
  const RATE = Number(flag('rate') ?? 25);
  const BACKLOG = Number(flag('backlog') ?? 3000);
  const log = (message: string) =>
    console.error(`[bench:webhooks ${new Date().toISOString().slice(11, 19)}] ${message}`);

  let cluster: Cluster | undefined;
  let server: ServerProcess | undefined;
  let deliverer: ServerProcess | undefined;
  let receiver: Receiver | undefined;
  try {
    cluster = await startCluster('bench-webhooks');
    const databaseUrl = await cluster.createDatabase('bench');
    await migrate(databaseUrl, () => {});
    const separate = flag('deliverer') === 'separate';
    server = await spawnServer(databaseUrl, {
      WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
      LOG_LEVEL: 'warn',
      ...(separate ? { WEBHOOK_DELIVERY: 'false' } : {}),
    });
    await waitReady(server);
    if (separate) {
      deliverer = await spawnServer(databaseUrl, { WEBHOOK_ALLOW_PRIVATE_URLS: 'true', LOG_LEVEL: 'warn' });
      await waitReady(deliverer);
    }

    const latency = await measureWebhookLatency({
      databaseUrl,
      baseUrl: server.baseUrl,
      rounds: ROUNDS,
      seconds: SECONDS,
      rate: RATE,
      endpoints: (flag('endpoints') ?? '0,1,5,20').split(',').map(Number),
      pid: server.child.pid,
      orgPrefix: 'bench',
      log,
    });
    console.log(`\n${renderWebhooks(latency)}`);
    const target = webhookTarget(latency);
    if (target) console.log(`\n${target.text}: ${target.met ? 'met' : 'missed'}`);

    receiver = await startReceiver();
    const r = receiver;
    console.log(`\n| endpoints | backlog (events) | drained in | deliveries/s |`);
    console.log('|---:|---:|---:|---:|');
    for (const n of BACKLOG > 0 ? [1, 5] : []) {
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
  } finally {
    await deliverer?.kill();
    await server?.kill();
    await receiver?.close();
    await cluster?.destroy();
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
