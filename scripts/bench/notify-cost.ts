// npx tsx scripts/bench/notify-cost.ts [--rounds=4] [--seconds=5] [--connections=10,50]
// What a NOTIFY in the writing transaction costs the writers. Creates straight through the driver (no
// HTTP) on an embedded PostgreSQL with durable settings, in alternating cells of one run:
//   A  the write alone (autocommit);
//   B  the same statement with pg_notify(channel, org) in it, so the notification commits with the write;
//   C  as B, but every writer sends the same payload, which PostgreSQL would fold if it folded
//      duplicates across transactions (it folds them only within one).
// One connection LISTENs throughout, as an instance of the service would: with no listener the queue is
// read by nobody and its tail moves differently. PostgreSQL (up to 17 at least) serializes the commits of
// transactions that notified: PreCommit_Notify takes a database-wide lock held until after the commit
// record is flushed, so such commits cannot share a WAL flush. Prints a markdown table.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres, { type Sql } from 'postgres';
import { createSql } from '../../src/db/client.js';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { migrate } from '../../src/db/migrations.js';
import { runLoop, type ScenarioRequest, type Stats } from './load.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const ROUNDS = Number(flag('rounds') ?? 4);
const DURATION_MS = Number(flag('seconds') ?? 5) * 1000;
const WARMUP_MS = 1_000;
const CONNECTIONS = (flag('connections') ?? '10,50').split(',').map(Number);
const CHANNEL = 'appointment_changes';
const SHARED_PAYLOAD = 'all';

type Variant = 'A' | 'B' | 'C';
const VARIANTS: Variant[] = ['A', 'B', 'C'];
const TITLES: Record<Variant, string> = {
  A: 'A: write alone',
  B: 'B: write + NOTIFY (org)',
  C: 'C: write + NOTIFY (one payload)',
};

const log = (message: string) => console.error(`[notify-cost ${new Date().toISOString().slice(11, 19)}] ${message}`);

// Every create gets a fresh id and a half hour of its own in its writer's org: nothing is ever refused.
const BASE = Date.parse('2040-01-01T00:00:00.000Z');
const HALF_HOUR = 30 * 60 * 1000;
const iso = (ms: number) => new Date(ms).toISOString();

interface Write {
  orgId: string;
  id: string;
  start: string;
  end: string;
}

function writer(sql: Sql, variant: Variant, sent: { notifications: number }) {
  return async (request: ScenarioRequest): Promise<number> => {
    const w = request.body as unknown as Write;
    const created = '2039-12-31T00:00:00.000Z';
    const updated = '2040-01-01T00:00:00.000Z';
    let rows: { status: string }[];
    if (variant === 'A') {
      rows = await sql<{ status: string }[]>`
        SELECT status FROM upsert_appointment(${w.orgId}, ${w.id}, ${w.start}::timestamptz, ${w.end}::timestamptz,
                                              ${created}::timestamptz, ${updated}::timestamptz, false)`;
    } else {
      const payload = variant === 'B' ? w.orgId : SHARED_PAYLOAD;
      rows = await sql<{ status: string }[]>`
        SELECT u.status, pg_notify(${CHANNEL}, ${payload})
        FROM upsert_appointment(${w.orgId}, ${w.id}, ${w.start}::timestamptz, ${w.end}::timestamptz,
                                ${created}::timestamptz, ${updated}::timestamptz, false) AS u`;
      sent.notifications++;
    }
    return rows[0]?.status === 'created' ? 201 : 200;
  };
}

/** What the writers' backends wait on, sampled every 100 ms: the share of samples per wait event. */
function sampleWaits(admin: Sql) {
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const rows = await admin<{ event: string; n: number }[]>`
        SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event, count(*)::int AS n
        FROM pg_stat_activity
        WHERE application_name = 'appointments-service' AND state = 'active' AND query LIKE '%upsert_appointment%'
        GROUP BY 1`;
      for (const { event, n } of rows) {
        counts.set(event, (counts.get(event) ?? 0) + n);
        samples += n;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return async () => {
    running = false;
    await loop;
    return { counts, samples };
  };
}

interface Cell {
  connections: number;
  round: number;
  variant: Variant;
  stats: Stats;
  waits: Map<string, number>;
  waitSamples: number;
}

async function main() {
  // as root PostgreSQL runs as the user postgres, who must reach the folder: /var/tmp, opened to others
  const dir = mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), 'appointments-notify-'));
  chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'bench', persistent: false, log });
  const closers: Array<() => Promise<unknown>> = [];
  try {
    await migrate(pg.url, () => {});
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    closers.push(() => admin.end());
    const [{ version }] = await admin<{ version: string }[]>`SELECT current_setting('server_version') AS version`;
    const settings = await admin<{ name: string; setting: string }[]>`
      SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method')`;
    log(`PostgreSQL ${version}: ${settings.map((s) => `${s.name}=${s.setting}`).join(', ')}`);

    const listener = createSql({ databaseUrl: pg.url, poolMax: 1 });
    closers.push(() => listener.end({ timeout: 5 }));
    let received = 0;
    await listener.listen(CHANNEL, () => received++);
    const sent = { notifications: 0 };

    const cells: Cell[] = [];
    for (const connections of CONNECTIONS) {
      const sql = createSql({ databaseUrl: pg.url, poolMax: connections });
      // carried from cell to cell, so that each writer's ids and half hours stay fresh
      const iterations: number[] = [];
      const build = (vu: number, iter: number): ScenarioRequest => ({
        method: 'POST',
        path: '/notify-cost',
        body: {
          orgId: `notify-c${connections}-w${vu}`,
          id: `a-${iter}`,
          start: iso(BASE + iter * HALF_HOUR),
          end: iso(BASE + (iter + 1) * HALF_HOUR),
        },
        expected: [201],
      });
      for (let round = 1; round <= ROUNDS; round++) {
        for (const variant of VARIANTS) {
          const stopSampling = sampleWaits(admin);
          const stats = await runLoop({
            connections,
            warmupMs: WARMUP_MS,
            durationMs: DURATION_MS,
            build,
            iterations,
            send: writer(sql, variant, sent),
          });
          const { counts, samples } = await stopSampling();
          cells.push({ connections, round, variant, stats, waits: counts, waitSamples: samples });
          const bad = stats.requests - (stats.statuses['201'] ?? 0);
          log(
            `${connections} conns, round ${round}, ${variant}: ${Math.round(stats.rps)} writes/s, ` +
              `p50 ${stats.p50} ms, p99 ${stats.p99} ms${bad ? `, ${bad} not created` : ''}`,
          );
          if (bad) throw new Error(`${bad} writes were not created: ${JSON.stringify(stats.statuses)}`);
        }
      }
      await sql.end({ timeout: 5 });
    }
    // the listener reads the queue asynchronously: give it a moment to catch up before counting
    for (let i = 0; i < 50 && received < sent.notifications; i++) await new Promise((r) => setTimeout(r, 100));
    console.log(render(cells, version, settings));
    console.log(`\nNotifications sent ${sent.notifications}, received by the listener ${received}.`);
    if (received !== sent.notifications) process.exitCode = 1;
  } finally {
    for (const close of closers.reverse()) await close().catch((error) => log(`close: ${String(error)}`));
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fixed = (x: number, digits = 2) => x.toFixed(digits);

function render(cells: Cell[], version: string, settings: { name: string; setting: string }[]): string {
  const lines: string[] = [];
  lines.push(
    `PostgreSQL ${version} (${settings.map((s) => `${s.name}=${s.setting}`).join(', ')}), ` +
      `${os.cpus().length} cores, ${ROUNDS} rounds of ${DURATION_MS / 1000} s per cell after ${WARMUP_MS / 1000} s of warm-up.`,
  );
  lines.push('');
  lines.push('| connections | variant | writes/s per round | median writes/s | p50 ms (median) | p99 ms (median) |');
  lines.push('| ---: | --- | --- | ---: | ---: | ---: |');
  const of = (c: number, v: Variant) => cells.filter((x) => x.connections === c && x.variant === v);
  for (const c of CONNECTIONS) {
    for (const v of VARIANTS) {
      const xs = of(c, v);
      lines.push(
        `| ${c} | ${TITLES[v]} | ${xs.map((x) => Math.round(x.stats.rps)).join(' / ')} | ` +
          `${Math.round(median(xs.map((x) => x.stats.rps)))} | ${fixed(median(xs.map((x) => x.stats.p50)))} | ` +
          `${fixed(median(xs.map((x) => x.stats.p99)))} |`,
      );
    }
  }
  lines.push('');
  lines.push('| connections | ratio | per round | median |');
  lines.push('| ---: | --- | --- | ---: |');
  for (const c of CONNECTIONS) {
    const a = of(c, 'A');
    for (const v of ['B', 'C'] as const) {
      const ratios = of(c, v).map((x, i) => x.stats.rps / a[i]!.stats.rps);
      lines.push(`| ${c} | ${v}/A | ${ratios.map((r) => fixed(r)).join(' / ')} | **${fixed(median(ratios))}** |`);
    }
  }
  lines.push('');
  lines.push('What the writers waited on (share of 100 ms samples of their active backends, all rounds):');
  lines.push('');
  lines.push('| connections | variant | top wait events |');
  lines.push('| ---: | --- | --- |');
  for (const c of CONNECTIONS) {
    for (const v of VARIANTS) {
      const counts = new Map<string, number>();
      let samples = 0;
      for (const x of of(c, v)) {
        for (const [event, n] of x.waits) counts.set(event, (counts.get(event) ?? 0) + n);
        samples += x.waitSamples;
      }
      const top = [...counts]
        .sort((p, q) => q[1] - p[1])
        .slice(0, 4)
        .map(([event, n]) => `${event} ${Math.round((100 * n) / samples)}%`);
      lines.push(`| ${c} | ${v} | ${top.join(', ')} |`);
    }
  }
  return lines.join('\n');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
