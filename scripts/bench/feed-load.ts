// The write load of the feed's latency benchmark (feed.ts, measureLatency with `load`), and what it reads
// to explain a miss: CPU from /proc, the service's /metrics, pg_stat_activity, the feed's horizon.
import { readFileSync } from 'node:fs';
import type { Sql } from 'postgres';
import { Pool } from 'undici';
import { processUsage } from './load.js';
import { backendCpuSeconds } from './postgres.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const r2 = (x: number) => Math.round(x * 100) / 100;
const quantile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;

export interface WriteLoadResult {
  /** Creates a second the ticker was asked for. */
  rate: number;
  maxInFlight: number;
  /** From the first create started to the last one answered. */
  seconds: number;
  started: number;
  /** Creates that fell due while maxInFlight were in flight: not sent, so the pace stays the asked one. */
  notStarted: number;
  statuses: Record<string, number>;
  /** 201s a second over `seconds`. */
  achievedPerSecond: number;
  /** The load's changes each client had received when it stopped (the load's 201s are the whole of them). */
  longPollReceived: number;
  streamReceived: number;
  /** CPU while the timed writes ran, in % of one core; the machine's in % of all its cores. */
  cpuPercent: { service?: number; postgres?: number; bench: number; machine?: number };
  /**
   * The service's queries (creates and the feed's alike) while the timed writes ran, and their wait for a
   * place in its pool (/metrics): the feed's poll and reads queue behind the creates in one line.
   */
  poolWait?: { queries: number; meanMs: number; over25msPercent: number };
  /**
   * What the database's other backends were doing, sampled every 100 ms while the timed writes ran: the
   * share of backend-samples by wait event ('running' when none: on a CPU, or waiting for one).
   */
  backendStates?: Record<string, number>;
  /**
   * Each timed write's wait from its answer until the feed's horizon (pg_snapshot_xmin, sampled every
   * 10 ms) had passed its position, and then each client's delay from that moment (the poll, the read,
   * the delivery), p50 / p99 in ms: the first part is the database's, the second the feed's own.
   */
  horizon?: { waitP50: number; waitP99: number; longPollAfter: [number, number]; streamAfter: [number, number] };
  /** Event-loop delay p99 / max in ms while the timed writes ran: the service's (its /metrics), this process's. */
  eventLoopDelay?: { service?: [number, number]; bench: [number, number] };
}

/**
 * Creates at `rate` a second, new ids in free slots of the org, open-loop: a ticker starts every create
 * that has fallen due whatever the earlier ones' answers, so a slow service meets the load asked for
 * instead of slowing the generator down (a closed loop would hide the very queueing to be measured).
 */
export function writeLoad(baseUrl: string, orgId: string, o: { rate: number; maxInFlight: number }) {
  const pool = new Pool(baseUrl, { connections: o.maxInFlight, pipelining: 1 });
  const statuses: Record<string, number> = {};
  const pending = new Set<Promise<void>>();
  let started = 0;
  let notStarted = 0;
  const t0 = performance.now();
  let lastAnswer = t0;
  const create = async (k: number) => {
    const body = {
      orgId,
      id: `w-${k}`,
      start: new Date(Date.UTC(2038, 0, 1) + k * 1_800_000).toISOString(),
      end: new Date(Date.UTC(2038, 0, 1) + (k + 1) * 1_800_000).toISOString(),
      createdAt: '2037-12-31T00:00:00.000Z',
      updatedAt: '2038-01-01T00:00:00.000Z',
    };
    let status: string;
    try {
      const res = await pool.request({
        method: 'POST',
        path: '/api/appointments',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      await res.body.text();
      status = String(res.statusCode);
    } catch (error) {
      status = (error as { code?: string }).code ?? 'error';
    }
    statuses[status] = (statuses[status] ?? 0) + 1;
    lastAnswer = performance.now();
  };
  const tick = () => {
    const due = Math.floor(((performance.now() - t0) * o.rate) / 1000);
    while (started + notStarted < due) {
      if (pending.size >= o.maxInFlight) {
        notStarted++;
        continue;
      }
      const request: Promise<void> = create(started++).finally(() => pending.delete(request));
      pending.add(request);
    }
  };
  const timer = setInterval(tick, Math.max(1, 1000 / o.rate));
  return {
    get created() {
      return statuses['201'] ?? 0;
    },
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      await pool.close();
      const seconds = (lastAnswer - t0) / 1000;
      return {
        rate: o.rate,
        maxInFlight: o.maxInFlight,
        seconds: r2(seconds),
        started,
        notStarted,
        statuses,
        achievedPerSecond: seconds > 0 ? Math.round((statuses['201'] ?? 0) / seconds) : 0,
      };
    },
  };
}

/** CPU seconds so far: the machine's busy and total (all cores), from /proc/stat; undefined elsewhere. */
function machineCpuSeconds(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = fields[3]! + fields[4]!; // idle, iowait
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return undefined;
  }
}

/** A snapshot of the CPU used so far; the function it returns gives the % of one core used since (the machine's: of all cores). */
export function cpuSnapshot(pids: { service?: number; postmaster?: number; database?: string }) {
  const read = () => ({
    at: performance.now(),
    bench: process.cpuUsage(),
    service: pids.service === undefined ? undefined : processUsage(pids.service).cpuSeconds,
    postgres: pids.postmaster === undefined ? undefined : backendCpuSeconds(pids.postmaster, pids.database ?? 'bench'),
    machine: machineCpuSeconds(),
  });
  const from = read();
  return () => {
    const to = read();
    const seconds = (to.at - from.at) / 1000;
    const pct = (cpu: number) => Math.round((cpu / seconds) * 100);
    const bench = process.cpuUsage(from.bench);
    return {
      service: to.service === undefined ? undefined : pct(to.service - from.service!),
      postgres: to.postgres === undefined ? undefined : pct(to.postgres - from.postgres!),
      bench: pct((bench.user + bench.system) / 1e6),
      machine:
        to.machine && from.machine
          ? Math.round(((to.machine.busy - from.machine.busy) / (to.machine.total - from.machine.total)) * 100)
          : undefined,
    };
  };
}

/** Samples pg_stat_activity of the other client backends every 100 ms until stopped; shares in %. */
export function sampleBackends(sql: Sql) {
  const counts: Record<string, number> = {};
  let total = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const rows = await sql<{ state: string }[]>`
        SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS state
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()`;
      for (const { state } of rows) counts[state] = (counts[state] ?? 0) + 1;
      total += rows.length;
      await sleep(100);
    }
  })();
  done.catch(() => {}); // handled: stop() awaits it and so rethrows a failure
  return {
    async stop(): Promise<Record<string, number>> {
      running = false;
      await done;
      return Object.fromEntries(
        Object.entries(counts)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => [k, Math.round((v / Math.max(1, total)) * 1000) / 10]),
      );
    },
  };
}

/** Samples the feed's horizon every 10 ms until stopped: when each xmin was seen (after its answer). */
export function sampleHorizon(sql: Sql) {
  const samples: Array<{ at: number; xmin: bigint }> = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const [row] = await sql<{ xmin: string }[]>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin`;
      samples.push({ at: performance.now(), xmin: BigInt(row!.xmin) });
      await sleep(10);
    }
  })();
  done.catch(() => {}); // handled: stop() awaits it and so rethrows a failure
  return {
    async stop() {
      running = false;
      await done;
      return samples;
    },
  };
}

/** The horizon part of the timed writes' latency and the feed's own part (WriteLoadResult.horizon). */
export async function splitAtHorizon(
  sql: Sql,
  orgId: string,
  samples: Array<{ at: number; xmin: bigint }>,
  acked: Map<string, number>,
  byPoll: Map<string, number>,
  byStream: Map<string, number>,
): Promise<WriteLoadResult['horizon']> {
  const rows = await sql<{ id: string; xid: string }[]>`
    SELECT id, feed_xid::text AS xid FROM appointments WHERE org_id = ${orgId} AND id = ANY(${[...acked.keys()]})`;
  const waits: number[] = [];
  const after = { poll: [] as number[], stream: [] as number[] };
  for (const { id, xid } of rows) {
    const ack = acked.get(id)!;
    const seen = samples.find((x) => x.xmin > BigInt(xid));
    if (!seen) continue;
    const servable = Math.max(ack, seen.at);
    waits.push(servable - ack);
    const poll = byPoll.get(id);
    const stream = byStream.get(id);
    if (poll !== undefined) after.poll.push(poll - servable);
    if (stream !== undefined) after.stream.push(stream - servable);
  }
  if (waits.length === 0) return undefined;
  const p = (xs: number[], q: number) =>
    r2(
      quantile(
        [...xs].sort((a, b) => a - b),
        q,
      ),
    );
  return {
    waitP50: p(waits, 0.5),
    waitP99: p(waits, 0.99),
    longPollAfter: [p(after.poll, 0.5), p(after.poll, 0.99)],
    streamAfter: [p(after.stream, 0.5), p(after.stream, 0.99)],
  };
}

/** The service's pool-wait histogram so far (/metrics, open when METRICS_TOKEN is unset); undefined if unreadable. */
export async function poolWaitSoFar(
  baseUrl: string,
): Promise<{ count: number; sum: number; within25ms: number; lagP99: number; lagMax: number } | undefined> {
  try {
    const res = await fetch(`${baseUrl}/metrics`);
    const text = await res.text();
    if (res.status !== 200) return undefined;
    const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? NaN);
    const result = {
      count: value(/^appointments_db_pool_wait_seconds_count(?:\{\})? (\S+)$/m),
      sum: value(/^appointments_db_pool_wait_seconds_sum(?:\{\})? (\S+)$/m),
      within25ms: value(/^appointments_db_pool_wait_seconds_bucket\{le="0\.025"\} (\S+)$/m),
    };
    // prom-client resets its event-loop histogram at each scrape: these cover the time since the last one
    const lag = {
      lagP99: value(/^nodejs_eventloop_lag_p99_seconds (\S+)$/m),
      lagMax: value(/^nodejs_eventloop_lag_max_seconds (\S+)$/m),
    };
    return Object.values(result).every(Number.isFinite) ? { ...result, ...lag } : undefined;
  } catch {
    return undefined;
  }
}
