import { feedTargets, renderFeed, type CatchUpResult, type LatencyResult } from './feed.js';
import type { Stats } from './load.js';
import type { OpenStreamsResult } from './open-streams.js';
import { renderStatements, statementsTarget, type StatementsResult } from './statements.js';
import { renderWebhooks, webhookTarget, type WebhookLatencyResult } from './webhooks.js';

export interface RunResult {
  connections: number;
  service: Stats;
  limit: Stats;
  serviceCpuSeconds: number;
  serviceCpuMsPerRequest: number;
  servicePeakRssMb: number;
  /** service req/s ÷ limit req/s */
  throughputRatio: number;
  /** service p99 ÷ limit p99 */
  p99Ratio: number;
  /** The bare implementation (bare-service.ts) of the same requests, where it serves them. */
  bare?: { pipelined?: Stats; gated?: Stats };
  /** CPU milliseconds a request by way: service, limit, bare-pipelined, bare-gated. */
  cpu?: Record<string, CpuPerRequest>;
}

/** CPU milliseconds a request: of the server's process (0 for the limit, which has none), the load generator, PostgreSQL. */
export interface CpuPerRequest {
  server: number;
  loadGenerator: number;
  /** The backends of the bench's database; null when the database is not the bench's own cluster. */
  database: number | null;
}

export interface ScenarioResult {
  name: string;
  title: string;
  description: string;
  /** Appointments each request writes (a batch); 1 when absent. */
  itemsPerRequest?: number;
  runs: RunResult[];
}

export interface BenchResult {
  date: string;
  mode: 'quick' | 'full';
  machine: { cpus: number; cpuModel: string; loadAverage: number[]; node: string };
  database: string;
  poolMax: number;
  plan: {
    connections: number[];
    warmupMs: number;
    durationMs: number;
    tableSizes: number[];
    history: { ids: number; versions: number };
    openStreams: { streams: number; writes: number };
    /** The most appointments a scenario's bulkSeed writes. */
    bulkSeedAppointments?: number;
  };
  scenarios: ScenarioResult[];
  /** Null when --scenarios left the measurement out. */
  openStreams: OpenStreamsResult | null;
  growth: {
    createBySize: Array<{ appointments: number; connections: number; service: Stats; servicePeakRssMb: number }>;
    pointInTime: { historyRows: number; appointments: number; connections: number; service: Stats; limit: Stats };
  } | null;
  feed?: { catchUp?: CatchUpResult; latency: LatencyResult[] };
  /** The service's write statements ÷ the baseline (scripts/bench/statements.ts); null when left out. */
  statements?: StatementsResult | null;
  /** Creates with 0 and 20 webhook endpoints subscribed (scripts/bench/webhooks.ts); null when left out. */
  webhooks?: WebhookLatencyResult | null;
  pgbench: Array<{ connections: number; tps: number | null; latencyAvgMs: number | null; error?: string }> | null;
  totalSeconds: number;
}

const statuses = (s: Stats) =>
  Object.entries(s.statuses)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');
const n = (x: number) => x.toLocaleString('en-US');
const share = (a: Stats | undefined, b: Stats) => (a && b.rps ? `${Math.round((a.rps / b.rps) * 100)}%` : 'n/a');

/** What the bare implementation reached in the same cell: how far HTTP alone is from the limit on this machine. */
const bareNote = (x: RunResult) =>
  x.bare
    ? `; the bare implementation ${share(x.bare.pipelined, x.limit)} (pipelined) and ${share(x.bare.gated, x.limit)} (gated) of the limit, p99 ${x.bare.pipelined?.p99 ?? 'n/a'} / ${x.bare.gated?.p99 ?? 'n/a'} ms`
    : '';

/** The report; with summary, only the headline table and the targets. */
export function renderMarkdown(r: BenchResult, { summary = false } = {}): string {
  const lines: string[] = [];
  const at = (s: ScenarioResult, c: number) => s.runs.find((x) => x.connections === c);
  const create = r.scenarios.find((s) => s.name === 'create-heavy');
  const sizes = r.growth?.createBySize ?? [];
  const pit = r.growth?.pointInTime;
  const streams = r.openStreams;
  const small = sizes[0];
  const big = sizes.at(-1);
  const peak = Math.max(
    0,
    ...r.scenarios.flatMap((s) => s.runs.map((x) => x.servicePeakRssMb)),
    ...sizes.map((x) => x.servicePeakRssMb),
  );
  const classic5xx = r.scenarios
    .find((s) => s.name === 'classic-mix')
    ?.runs.reduce(
      (sum, x) =>
        sum +
        Object.entries(x.service.statuses)
          .filter(([k]) => Number(k) >= 500)
          .reduce((a, [, v]) => a + v, 0),
      0,
    );
  const worstP99Ratio = Math.max(...r.scenarios.map((s) => at(s, 10)?.p99Ratio ?? 0));
  const mark = (ok: boolean | undefined) => (ok === undefined ? 'n/a' : ok ? 'met' : '**missed**');

  if (!summary) {
    lines.push(`# Benchmark (${r.mode} run, ${r.date.slice(0, 16).replace('T', ' ')} UTC)`, '');
    lines.push(
      `${r.machine.cpus} CPU (${r.machine.cpuModel}), load average at the end ${r.machine.loadAverage.join(' / ')}, Node ${r.machine.node}; ` +
        `${r.database}; pool of ${r.poolMax} connections for the service and the limit alike; ` +
        `${r.plan.warmupMs / 1000} s warm-up then ${r.plan.durationMs / 1000} s per measurement; the load generator runs on the same machine. ` +
        `The limit is the same SQL (src/db/appointments.ts, src/db/availability.ts) sent straight through the postgres driver at the same concurrency. Total ${r.totalSeconds} s.`,
      '',
      '![throughput and p99](chart.svg)',
      '',
    );
  }
  lines.push('## Headline: service ÷ direct-driver limit', '');
  lines.push(
    '| scenario | conns | service req/s | limit req/s | ratio | service p99 ms | limit p99 ms | p99 ratio |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const s of r.scenarios) {
    for (const x of s.runs) {
      lines.push(
        `| ${s.name} | ${x.connections} | ${n(x.service.rps)} | ${n(x.limit.rps)} | ${x.throughputRatio} | ${x.service.p99} | ${x.limit.p99} | ${x.p99Ratio} |`,
      );
    }
  }
  lines.push('', '## Targets (issue 16)', '');
  const batches = r.scenarios.find((s) => s.name === 'batch-create');
  const b10 = batches && at(batches, 10);
  const c10 = create && at(create, 10);
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const statements = r.statements ? statementsTarget(r.statements) : undefined;
  lines.push(
    `- the service's write statements ≥ 70% of the baseline statement (creates and updates, 10 and 50 connections): ${statements ? `worst ${pct(statements.worst)}` : 'n/a'} (${mark(statements?.met)})`,
  );
  // writes: ≥ 75% of the limit at 50 connections with p99 ≤ 1.5× the limit's, ≥ 70% at 10
  for (const name of ['create-heavy', 'update-heavy']) {
    const s = r.scenarios.find((x) => x.name === name);
    for (const [c, floor] of [
      [10, 0.7],
      [50, 0.75],
    ] as const) {
      const x = s && at(s, c);
      if (!x) {
        lines.push(`- ${name} at ${c} connections ≥ ${pct(floor)} of the limit: n/a`);
        continue;
      }
      const p99 = c === 50 ? `, p99 ${x.p99Ratio}× the limit's (${mark(x.p99Ratio <= 1.5)} ≤ 1.5×)` : '';
      lines.push(
        `- ${name} at ${c} connections ≥ ${pct(floor)} of the limit: ${pct(x.throughputRatio)} (${mark(x.throughputRatio >= floor)})${p99}${bareNote(x)}`,
      );
    }
  }
  // reads: ≥ 70% of the limit at 10 connections
  const reads = r.scenarios.filter((s) => s.name.startsWith('reads') || s.name === 'availability');
  const readCells = reads.map((s) => [s.name, at(s, 10)] as const).filter((e) => e[1] !== undefined);
  const worstRead = Math.min(...readCells.map(([, x]) => x!.throughputRatio));
  lines.push(
    readCells.length
      ? `- every read scenario at 10 connections ≥ 70% of the limit: ${readCells.map(([name, x]) => `${name} ${pct(x!.throughputRatio)}`).join(', ')} (${mark(worstRead >= 0.7)})`
      : '- every read scenario at 10 connections ≥ 70% of the limit: n/a',
  );
  // appointments stored per second, batches of itemsPerRequest against single creates
  const batchRatio =
    b10 && c10 && c10.service.rps > 0
      ? Math.round(((b10.service.rps * (batches!.itemsPerRequest ?? 1)) / c10.service.rps) * 10) / 10
      : undefined;
  lines.push(
    `- batch-create at 10 connections stores ≥ 5× the appointments/s of create-heavy: ${batchRatio === undefined ? 'n/a' : `${batchRatio}×`} (${mark(batchRatio === undefined ? undefined : batchRatio >= 5)})`,
  );
  lines.push(
    `- peak RSS of the service < 200 MB in every scenario: ${peak > 0 ? `${peak} MB` : 'n/a'} (${mark(peak > 0 ? peak < 200 : undefined)})`,
    streams
      ? `- ${n(streams.streams)} open streams, service RSS < 200 MB: ${streams.rssOpenMb} MB, peak ${streams.peakRssMb} MB (${mark(streams.peakRssMb < 200 && streams.failed === 0)})`
      : '- open streams, service RSS < 200 MB: n/a (not measured)',
    `- classic mix, zero 5xx at any concurrency: ${classic5xx ?? 'n/a'} (${mark(classic5xx === undefined ? undefined : classic5xx === 0)})`,
  );
  lines.push(...feedTargets(r.feed));
  const webhooks = r.webhooks ? webhookTarget(r.webhooks) : undefined;
  lines.push(
    webhooks
      ? `- ${webhooks.text} (${mark(webhooks.met)})`
      : '- writes with 20 webhook endpoints subscribed within 10% of none: n/a (not measured)',
  );
  lines.push('', '## Earlier targets', '');
  lines.push(
    `- every scenario at 10 connections, p99 within 3× the limit's: worst ${worstP99Ratio}× (${mark(worstP99Ratio > 0 ? worstP99Ratio <= 3 : undefined)})`,
    small && big
      ? `- create with ${n(big.appointments)} appointments ≥ 70% of with ${n(small.appointments)}: ${pct(big.service.rps / small.service.rps)} (${mark(big.service.rps / small.service.rps >= 0.7)})`
      : '- create in a large org ≥ 70% of in a small one: n/a (not measured)',
    pit
      ? `- point-in-time list on ${n(pit.historyRows)} history rows at ${pit.connections} connections, p99 < 20 ms: ${pit.service.p99} ms (${mark(pit.service.p99 < 20)})`
      : '- point-in-time list, p99 < 20 ms: n/a (not measured)',
  );
  if (summary) return lines.join('\n');

  lines.push('', '## Every measurement', '');
  lines.push(
    '| scenario | conns | way | req/s | p50 | p95 | p99 | max (ms) | statuses | unexpected | service CPU s (ms/req) | peak RSS MB |',
    '|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|',
  );
  for (const s of r.scenarios) {
    for (const x of s.runs) {
      for (const [way, st] of [
        ['service', x.service],
        ['limit', x.limit],
      ] as const) {
        const extra =
          way === 'service' ? `${x.serviceCpuSeconds} (${x.serviceCpuMsPerRequest}) | ${x.servicePeakRssMb}` : ' | ';
        lines.push(
          `| ${s.name} | ${x.connections} | ${way} | ${n(st.rps)} | ${st.p50} | ${st.p95} | ${st.p99} | ${st.max} | ${statuses(st)} | ${st.unexpected} | ${extra} |`,
        );
      }
    }
  }
  const withBare = r.scenarios.flatMap((s) => s.runs.filter((x) => x.bare).map((x) => [s.name, x] as const));
  if (withBare.length) {
    lines.push(
      '',
      '## What HTTP itself costs here: the bare implementation',
      '',
      'The same requests served by scripts/bench/bare-service.ts: Fastify, a TypeBox schema and the same write ' +
        '(upsertAppointment), without logging, headers, rate limit, metrics or ETags; "pipelined" with the driver\'s own ' +
        'pool, "gated" with the service\'s (one statement a connection). CPU is milliseconds a request: the server\'s ' +
        'process / the load generator / the PostgreSQL backends. On a machine whose cores all three share, req/s follows ' +
        'the sum.',
      '',
      '| scenario | conns | way | req/s | ÷ limit | p99 ms | statuses | CPU ms a request: server / load generator / PostgreSQL | sum |',
      '|---|---:|---|---:|---:|---:|---|---|---:|',
    );
    for (const [name, x] of withBare) {
      const ways: Array<[string, Stats | undefined, CpuPerRequest | undefined]> = [
        ['limit', x.limit, x.cpu?.limit],
        ['bare, pipelined', x.bare!.pipelined, x.cpu?.['bare-pipelined']],
        ['bare, gated', x.bare!.gated, x.cpu?.['bare-gated']],
        ['service', x.service, x.cpu?.service],
      ];
      for (const [way, st, cpu] of ways) {
        if (!st) continue;
        const sum = cpu ? Math.round((cpu.server + cpu.loadGenerator + (cpu.database ?? 0)) * 1000) / 1000 : '';
        const parts = cpu ? `${cpu.server} / ${cpu.loadGenerator} / ${cpu.database ?? 'n/a'}` : '';
        lines.push(
          `| ${name} | ${x.connections} | ${way} | ${n(st.rps)} | ${share(st, x.limit)} | ${st.p99} | ${statuses(st)} | ${parts} | ${sum} |`,
        );
      }
    }
  }
  if (streams) {
    lines.push(
      '',
      `## ${n(streams.streams)} open event streams`,
      '',
      `Opened (each resuming from a token, on a connection of its own) in ${streams.openMs} ms. Service RSS ${streams.rssBeforeMb} MB before, ` +
        `${streams.rssOpenMb} MB with every stream open (${streams.kbPerStream} kB a stream), peak ${streams.peakRssMb} MB; ` +
        `with nothing changing, the service used ${streams.idleCpuPercent}% of a core. ` +
        `${streams.writes} writes one after the other, each awaited on every stream: from the write's answer to its event on a stream ` +
        `p50 ${streams.fanOut.p50} ms, p99 ${streams.fanOut.p99} ms, max ${streams.fanOut.max} ms; ` +
        `the first stream reached after ${streams.firstReachedMs.join(', ')} ms, ` +
        `all of them after ${streams.allReachedMs.join(', ')} ms; ${streams.failed} missed; ` +
        `service CPU ${streams.cpuMsPerWrite} ms a write (the write and its fan-out).`,
    );
  }
  if (r.growth)
    lines.push(
      '',
      '## How cost grows',
      '',
      '| appointments in the org | conns | create req/s | p50 | p99 (ms) | statuses |',
      '|---:|---:|---:|---:|---:|---|',
    );
  for (const x of sizes)
    lines.push(
      `| ${n(x.appointments)} | ${x.connections} | ${n(x.service.rps)} | ${x.service.p50} | ${x.service.p99} | ${statuses(x.service)} |`,
    );
  if (pit)
    lines.push(
      '',
      `Point-in-time list (\`?at=\`, limit 100) of an org of ${n(pit.appointments)} appointments with ${n(pit.historyRows)} history rows, ${pit.connections} connections: ` +
        `service ${n(pit.service.rps)} req/s, p50 ${pit.service.p50} ms, p99 ${pit.service.p99} ms; limit ${n(pit.limit.rps)} req/s, p99 ${pit.limit.p99} ms.`,
    );
  if (r.feed) lines.push('', '## The change feed', '', renderFeed(r.feed));
  if (r.statements)
    lines.push(
      '',
      '## The write statements against a baseline',
      '',
      "The service's write statement (upsert_appointment, as the limit sends it) against the simplest statement that keeps " +
        'the core rules (one INSERT ... ON CONFLICT DO UPDATE with the last-writer-wins guard and tie-break, an AFTER UPDATE ' +
        'trigger copying the old row into a versions table with one GiST index on its periods), both straight through the ' +
        'driver, each in a database of its own (scripts/bench/statements.ts).',
      '',
      renderStatements(r.statements),
    );
  if (r.webhooks) lines.push('', '## Writes with webhook endpoints subscribed', '', renderWebhooks(r.webhooks));
  if (r.pgbench) {
    lines.push(
      '',
      '## pgbench: the create statement, each client in an org of its own',
      '',
      '| conns | tps | latency avg ms |',
      '|---:|---:|---:|',
    );
    for (const x of r.pgbench)
      lines.push(
        `| ${x.connections} | ${x.tps ?? `failed: ${x.error?.split('\n').at(-2) ?? ''}`} | ${x.latencyAvgMs ?? ''} |`,
      );
  }
  lines.push('', '## Scenarios', '');
  for (const s of r.scenarios) lines.push(`- **${s.name}** (${s.title}): ${s.description}`);
  return `${lines.join('\n')}\n`;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

interface Series {
  label: string;
  points: Array<[number, number]>;
  dashed?: boolean;
  color: string;
}

/** One line chart with categorical x positions; returns an SVG group. */
function panel(x0: number, title: string, xLabels: string[], yLabel: string, series: Series[]): string {
  const w = 300;
  const h = 200;
  const top = 40;
  const left = x0 + 50;
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1]))) * 1.1;
  const xAt = (i: number) => left + (xLabels.length === 1 ? w / 2 : (i * w) / (xLabels.length - 1));
  const yAt = (v: number) => top + h - (v / maxY) * h;
  const out: string[] = [`<text x="${left + w / 2}" y="20" text-anchor="middle" font-weight="bold">${title}</text>`];
  out.push(
    `<line x1="${left}" y1="${top + h}" x2="${left + w}" y2="${top + h}" stroke="#333"/><line x1="${left}" y1="${top}" x2="${left}" y2="${top + h}" stroke="#333"/>`,
  );
  for (let k = 0; k <= 4; k++) {
    const v = (maxY * k) / 4;
    out.push(
      `<text x="${left - 5}" y="${yAt(v) + 4}" text-anchor="end" font-size="10">${v >= 100 ? Math.round(v) : v.toFixed(1)}</text>`,
    );
    out.push(`<line x1="${left}" y1="${yAt(v)}" x2="${left + w}" y2="${yAt(v)}" stroke="#eee"/>`);
  }
  xLabels.forEach((l, i) =>
    out.push(`<text x="${xAt(i)}" y="${top + h + 15}" text-anchor="middle" font-size="10">${l}</text>`),
  );
  out.push(`<text x="${left + w / 2}" y="${top + h + 32}" text-anchor="middle" font-size="11">${yLabel}</text>`);
  for (const s of series) {
    const d = s.points.map(([i, v], k) => `${k ? 'L' : 'M'}${xAt(i).toFixed(1)},${yAt(v).toFixed(1)}`).join(' ');
    out.push(
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="4 3"' : ''}/>`,
    );
    for (const [i, v] of s.points) out.push(`<circle cx="${xAt(i)}" cy="${yAt(v)}" r="2.5" fill="${s.color}"/>`);
  }
  return out.join('\n');
}

/** Throughput and p99 by connections (service solid, limit dashed), and create by table size. */
export function renderChart(r: BenchResult): string {
  const conns = r.plan.connections;
  // a scenario run at one connection count only (reads-list ...) would be a lone point
  const charted = r.scenarios.filter((s) => s.runs.length === conns.length);
  const byConn = (pick: (x: RunResult) => number, way: 'service' | 'limit') =>
    charted.map((s, k) => ({
      label: s.name,
      color: COLORS[k % COLORS.length]!,
      dashed: way === 'limit',
      points: s.runs.map((x) => [conns.indexOf(x.connections), pick(x)] as [number, number]),
    }));
  const rps = [...byConn((x) => x.service.rps, 'service'), ...byConn((x) => x.limit.rps, 'limit')];
  const p99 = [...byConn((x) => x.service.p99, 'service'), ...byConn((x) => x.limit.p99, 'limit')];
  const sizes = r.growth?.createBySize ?? [];
  const sizeLabels = sizes.map((x) =>
    x.appointments >= 1e6 ? `${x.appointments / 1e6}M` : `${x.appointments / 1e3}k`,
  );
  const growth: Series[] = [
    { label: 'create req/s', color: COLORS[0]!, points: sizes.map((x, i) => [i, x.service.rps]) },
  ];
  const growthP99: Series[] = [
    { label: 'create p99 ms', color: COLORS[3]!, points: sizes.map((x, i) => [i, x.service.p99]) },
  ];
  const width = 4 * 380 + 20;
  const legend = charted
    .map(
      (s, k) =>
        `<rect x="${20 + k * 180}" y="290" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/><text x="${36 + k * 180}" y="300" font-size="11">${s.name}</text>`,
    )
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="330" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
${panel(0, 'requests per second', conns.map(String), 'connections', rps)}
${panel(380, 'p99 latency (ms)', conns.map(String), 'connections', p99)}
${panel(760, `create req/s at ${sizes[0]?.connections ?? 10} conns`, sizeLabels, 'appointments in the org', growth)}
${panel(1140, 'create p99 (ms)', sizeLabels, 'appointments in the org', growthP99)}
${legend}
<text x="${20}" y="320" font-size="11">solid: the service over HTTP; dashed: the same SQL straight through the driver (the limit)</text>
</svg>
`;
}
