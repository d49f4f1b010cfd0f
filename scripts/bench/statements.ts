// npx tsx scripts/bench/statements.ts [--seconds=5] [--rounds=3] [--connections=10,50] [--pieces [--only=NAME,...]]
//   [--profile] [--warmup=1] [--out=DIR]
// The service's write statements against a baseline of the same statement at its simplest, both sent
// straight through the driver (the pool and settings of the bench's limit), in databases of their own
// on one PostgreSQL. The baseline keeps the core rules and nothing else: one INSERT ... ON CONFLICT DO
// UPDATE with the last-writer-wins guard and its tie-break (as upsert_appointment has them), an AFTER
// UPDATE trigger copying the old row into a versions table, one GiST index on the versions' periods;
// when nothing is written (stale), a second query reads the stored row, which the answer carries.
// Creates (a new id in a free slot) and updates of HOT_IDS hot ids (ever newer updatedAt) at each
// number of connections, in rounds, the variants one after the other in a rotating order, so that the
// drift of a shared machine falls on all of them alike.
//
// npm run bench runs the two (measureStatements); run alone, this starts an embedded PostgreSQL of its
// own with pg_stat_statements loaded, and can also:
//   --pieces   measure the service's statement with each of its pieces removed in turn (a database
//              each): what each piece costs. A measurement tool only: a variant without a piece does
//              not keep the guarantee that piece gives.
//   --profile  list what PostgreSQL spends per write, statement by statement inside the functions
//              (pg_stat_statements with track = all), for the service and the baseline.
import { readFileSync, mkdirSync, rmSync, writeFileSync, chmodSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres, { type Sql } from 'postgres';
import { configWith } from '../../src/config.js';
import { createSql } from '../../src/db/client.js';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { migrate } from '../../src/db/migrations.js';
import { parseTime } from '../../src/schemas/time.js';
import { directSender, runLoop, type ScenarioRequest, type Send, type Stats } from './load.js';
import { backendCpuSeconds } from './postgres.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROJECT = path.resolve(HERE, '../..');
export const HOT_IDS = 100;
const MINUTE = 60_000;
const SLOT = 30 * MINUTE;
const BASE = Date.UTC(2030, 0, 1);
const iso = (ms: number) => new Date(ms).toISOString();
const ORG = 'statements';

type Op = 'create' | 'update';
const OPS: Op[] = ['create', 'update'];

/** The baseline, in a database of its own. */
const BASELINE_SCHEMA = `
CREATE TABLE appointments (
  org_id text NOT NULL, id text NOT NULL, start_at timestamptz NOT NULL, end_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version integer NOT NULL,
  recorded_at timestamptz NOT NULL,
  PRIMARY KEY (org_id, id)
);
CREATE TABLE appointment_versions (
  org_id text NOT NULL, id text NOT NULL, version integer NOT NULL, start_at timestamptz NOT NULL,
  end_at timestamptz NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  valid_from timestamptz NOT NULL, valid_to timestamptz NOT NULL
);
CREATE INDEX appointment_versions_period ON appointment_versions USING gist (tstzrange(valid_from, valid_to, '[)'));
CREATE FUNCTION appointments_record_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO appointment_versions
  VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
          OLD.recorded_at, NEW.recorded_at);
  RETURN NULL;
END
$$;
CREATE TRIGGER appointments_record_version AFTER UPDATE ON appointments
  FOR EACH ROW EXECUTE FUNCTION appointments_record_version();
`;

const canonical = (value: unknown) => (typeof value === 'string' ? parseTime(value, 3) : null);

/** The baseline's write, answered with the status the route would give. */
export function baselineSender(sql: Sql): Send {
  return async (r) => {
    const b = r.body!;
    const [orgId, id] = [String(b.orgId), String(b.id)];
    const [start, end, createdAt, updatedAt] = [b.start, b.end, b.createdAt, b.updatedAt].map(canonical);
    if (!start || !end || !createdAt || !updatedAt || start >= end) return 400;
    const [row] = await sql<{ created: boolean }[]>`
      INSERT INTO appointments AS a (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
      VALUES (${orgId}, ${id}, ${start}::timestamptz, ${end}::timestamptz, ${createdAt}::timestamptz,
              ${updatedAt}::timestamptz, 1, clock_timestamp())
      ON CONFLICT (org_id, id) DO UPDATE SET
        start_at = excluded.start_at, end_at = excluded.end_at, created_at = excluded.created_at,
        updated_at = excluded.updated_at, version = a.version + 1,
        recorded_at = greatest(clock_timestamp(), a.recorded_at + interval '1 microsecond')
      WHERE (excluded.updated_at, excluded.start_at, excluded.end_at, excluded.created_at)
          > (a.updated_at, a.start_at, a.end_at, a.created_at)
      RETURNING a.id, a.org_id AS "orgId", a.start_at AS "start", a.end_at AS "end", a.created_at AS "createdAt",
                a.updated_at AS "updatedAt", a.version, a.recorded_at AS "recordedAt", a.xmax = 0 AS created`;
    if (row) return row.created ? 201 : 200;
    // stale or unchanged: the answer carries the stored version
    await sql`
      SELECT id, org_id AS "orgId", start_at AS "start", end_at AS "end", created_at AS "createdAt",
             updated_at AS "updatedAt", version, recorded_at AS "recordedAt"
      FROM appointments WHERE org_id = ${orgId} AND id = ${id}`;
    return 200;
  };
}

/** The baseline's tables, trigger and index, in an empty database. */
export async function createBaseline(sql: Sql) {
  await sql.unsafe(BASELINE_SCHEMA);
}

/** Takes pieces out of a migrated database: their DDL, and upsert_appointment without their clauses. */
export async function removePieces(sql: Sql, pieces: Piece[]) {
  let source = UPSERT_SOURCE();
  for (const p of pieces) {
    if (p.edit) source = p.edit(source);
    if (p.ddl) await sql.unsafe(p.ddl);
  }
  if (pieces.some((p) => p.edit)) await sql.unsafe(source);
}

/** Removes `part` (a string found once, or a pattern) from a function's source; fails when it is not there. */
function without(source: string, part: string | RegExp, replacement = ''): string {
  const found = typeof part === 'string' ? source.includes(part) : part.test(source);
  if (!found) throw new Error(`upsert-appointment.sql no longer has ${String(part).slice(0, 60)}: update the piece`);
  return source.replace(part, replacement);
}

const UPSERT_SOURCE = () => readFileSync(path.join(PROJECT, 'src/db/functions/upsert-appointment.sql'), 'utf8');

export interface Piece {
  name: string;
  /** What it is, and the guarantee it gives. */
  what: string;
  /** Edits upsert_appointment's source, or undefined. */
  edit?: (source: string) => string;
  ddl?: string;
}

/** The pieces of the service's write beyond the baseline, each removable on its own (--pieces). */
export const PIECES: Piece[] = [
  {
    name: 'advisory lock',
    what: "the org's write lock (lock_org_writes): a write sent again after a deadlock runs alone and gets an answer",
    edit: (s) => without(s, 'PERFORM lock_org_writes(p_org_id, p_alone);'),
  },
  {
    name: 'overlap pre-check',
    what: 'the check before the INSERT: a create refused for a committed appointment leaves no dead row behind, and names it',
    edit: (s) =>
      without(
        s,
        /\n {2}IF NOT EXISTS \(SELECT 1 FROM appointments a WHERE a\.org_id = p_org_id AND a\.id = p_id\)[\s\S]*?the constraint decides\n {2}END IF;\n/,
        '\n',
      ),
  },
  {
    name: 'settle query',
    what: 'the settle query after the write: no instant shows two overlapping versions (point-in-time reads)',
    edit: (s) =>
      without(s, /\n {2}SELECT max\(v\.valid_to\) INTO settled[\s\S]*?r\.recorded_at := settled;\n {2}END IF;\n/, '\n'),
  },
  {
    name: 'created-after-delete check',
    what: "the status query: a write over a tombstone answers 'created'",
    edit: (s) => without(s, /WHEN r\.version = 1 OR EXISTS \([\s\S]*?AND v\.deleted\)/, 'WHEN r.version = 1'),
  },
  {
    name: 'no-overlap constraint',
    what: 'appointments_no_overlap (GiST exclusion on the current rows): no two live appointments of an org overlap, under any race',
    ddl: 'ALTER TABLE appointments DROP CONSTRAINT appointments_no_overlap',
  },
  {
    name: 'versions exclusion',
    what: "appointment_versions_periods_apart (GiST exclusion): one appointment's periods never overlap; serves ?at= by id",
    ddl: 'ALTER TABLE appointment_versions DROP CONSTRAINT appointment_versions_periods_apart',
  },
  {
    name: 'timeline R-tree',
    what: 'appointment_versions_timeline (GiST over boxes): point-in-time lists in start order, a page at a time',
    ddl: 'DROP INDEX appointment_versions_timeline',
  },
  {
    name: 'valid-to btree',
    what: 'appointment_versions_org_valid_to: the settle query finds the versions that ended in the last moments',
    ddl: 'DROP INDEX appointment_versions_org_valid_to',
  },
  {
    name: 'recorded-at index',
    what: 'appointments_org_recorded: point-in-time reads of current rows recorded by an instant',
    ddl: 'DROP INDEX appointments_org_recorded',
  },
  {
    name: 'feed trigger',
    what: "appointments_feed_position: the change feed's position of each change, in commit-safe order (here the defaults give one in the INSERT)",
    ddl: `ALTER TABLE appointments ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id(),
            ALTER COLUMN feed_seq SET DEFAULT nextval('change_feed_seq');
          ALTER TABLE appointments DISABLE TRIGGER appointments_feed_position`,
  },
  {
    name: 'feed indexes',
    what: 'appointments_feed, appointment_versions_feed, appointment_versions_deleted_feed: a page of the feed in one range scan each',
    ddl: 'DROP INDEX appointments_feed, appointment_versions_feed, appointment_versions_deleted_feed',
  },
];

interface Variant {
  name: string;
  kind: 'baseline' | 'service';
  pieces: Piece[];
}

export const BASELINE = 'baseline';
export const SERVICE = 'service';
const piece = (name: string) => PIECES.find((p) => p.name === name)!;
/** With `pieces`, the service without each piece, without the two indexes whose columns every update changes
 * (then an update that keeps its range can be heap-only: no new index entries), and without all of them;
 * `only` keeps the variants named (the baseline and the service always). */
const variantsOf = (pieces: boolean, only?: string[]): Variant[] =>
  [
    { name: BASELINE, kind: 'baseline' as const, pieces: [] },
    { name: SERVICE, kind: 'service' as const, pieces: [] },
    ...(pieces
      ? [
          ...PIECES.map((p) => ({ name: `without ${p.name}`, kind: 'service' as const, pieces: [p] })),
          {
            name: 'without recorded-at index and feed indexes',
            kind: 'service' as const,
            pieces: [piece('recorded-at index'), piece('feed indexes')],
          },
          { name: 'without all of them', kind: 'service' as const, pieces: PIECES },
        ]
      : []),
  ].filter((v) => v.name === BASELINE || v.name === SERVICE || !only || only.includes(v.name));

export interface StatementsRow {
  op: Op;
  connections: number;
  variant: string;
  /** Medians over the rounds. */
  rps: number;
  p99: number;
  /** PostgreSQL backend CPU ms per write (from /proc), null when the server is not local. */
  cpuMs: number | null;
  /** This variant ÷ the baseline, and ÷ the service's statement as it is, per round. */
  vsBaseline: number[];
  vsService: number[];
  unexpected: number;
}

export interface ProfileEntry {
  query: string;
  toplevel: boolean;
  callsPerWrite: number;
  execMsPerWrite: number;
  sharedBlocksPerWrite: number;
  walBytesPerWrite: number;
}

export interface StatementsResult {
  date: string;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  poolMax: number;
  hotIds: number;
  rows: StatementsRow[];
  /** Updates of the current rows, and how many of them were heap-only (HOT), per variant. */
  hotUpdates?: Array<{ variant: string; updates: number; hot: number }>;
  profile?: Array<{ variant: string; op: Op; connections: number; writes: number; entries: ProfileEntry[] }>;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length ? (s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2) : 0;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

const write = (id: string, slot: number, updatedMs: number) => ({
  orgId: ORG,
  id,
  start: iso(BASE + slot * SLOT),
  end: iso(BASE + (slot + 1) * SLOT),
  createdAt: iso(BASE - MINUTE),
  updatedAt: iso(updatedMs),
});
const post = (body: Record<string, unknown>, expected: number[]): ScenarioRequest => ({
  method: 'POST',
  path: '/api/appointments',
  body,
  expected,
});

/**
 * The requests of one variant: a new id in a slot of its own, or one of the hot ids (in the first slots)
 * with an updatedAt newer than any sent before to that variant, so that an update loses (stale) only
 * when a later one to the same id overtakes it: the variants do the same work, whatever their speed.
 */
function requests(): Record<Op, (vu: number, iter: number) => ScenarioRequest> {
  let sent = 0;
  return {
    // slots above the hot ids', unique per (vu, iter) for up to 1024 workers
    create: (vu, iter) => post(write(`c-${vu}-${iter}`, HOT_IDS + iter * 1024 + vu, BASE), [201]),
    update: (vu, iter) => {
      const hot = ((Math.imul(vu + 1, 0x9e3779b1) ^ Math.imul(iter + 1, 0x85ebca6b)) >>> 0) % HOT_IDS;
      return post(write(`hot-${hot}`, hot, BASE + ++sent), [200]);
    },
  };
}

export interface MeasureOptions {
  /** A database of the server on which to create the variants' databases (dropped at the end). */
  url: string;
  /** The postmaster's pid, for the backends' CPU; undefined when the server is not local. */
  postmaster?: number;
  seconds: number;
  warmupSeconds: number;
  rounds: number;
  connections: number[];
  poolMax: number;
  pieces?: boolean;
  /** With pieces: only these variants (by name) beside the baseline and the service. */
  only?: string[];
  /** pg_stat_statements is loaded: list the statements of each write (track = all). */
  profile?: boolean;
  log: (message: string) => void;
}

/** Baseline and service (and with `pieces`, the service without each piece), alternating in rounds. */
export async function measureStatements(o: MeasureOptions): Promise<StatementsResult> {
  const admin = postgres(o.url, { max: 1, onnotice: () => {} });
  const tag = Math.random().toString(16).slice(2, 8);
  const databases: string[] = [];
  const pools: Sql[] = [];
  const dbUrl = (name: string) => {
    const u = new URL(o.url);
    u.pathname = `/${name}`;
    return u.toString();
  };
  try {
    const variants = variantsOf(o.pieces ?? false, o.only);
    const template = `stmt_${tag}_template`;
    await admin`CREATE DATABASE ${admin(template)}`;
    databases.push(template);
    await migrate(dbUrl(template), () => {});
    const setups: Array<{
      v: Variant;
      db: string;
      sql: Sql;
      send: Send;
      iterations: Record<Op, number[]>;
      build: ReturnType<typeof requests>;
    }> = [];
    for (const [k, v] of variants.entries()) {
      const db = `stmt_${tag}_${k}`;
      if (v.kind === 'baseline') await admin`CREATE DATABASE ${admin(db)}`;
      else await admin`CREATE DATABASE ${admin(db)} TEMPLATE ${admin(template)}`;
      databases.push(db);
      const sql = createSql({ databaseUrl: dbUrl(db), poolMax: o.poolMax }, true);
      pools.push(sql);
      if (v.kind === 'baseline') await createBaseline(sql);
      else await removePieces(sql, v.pieces);
      const send = v.kind === 'baseline' ? baselineSender(sql) : directSender(sql);
      // the hot ids, in the first slots
      for (let n = 0; n < HOT_IDS; n++) {
        const status = await send(post(write(`hot-${n}`, n, BASE), [201]));
        if (status !== 201) throw new Error(`${v.name}: seeding hot-${n} answered ${status}`);
      }
      setups.push({ v, db, sql, send, iterations: { create: [], update: [] }, build: requests() });
      o.log(`statements: ${v.name} in database ${db}`);
    }

    const cells: Array<{
      round: number;
      op: Op;
      connections: number;
      variant: string;
      stats: Stats;
      cpuMs: number | null;
    }> = [];
    for (let round = 1; round <= o.rounds; round++)
      for (const op of OPS)
        for (const connections of o.connections) {
          const order = setups.map((_, k) => setups[(k + round - 1) % setups.length]!);
          for (const s of order) {
            const cpu = () => (o.postmaster ? backendCpuSeconds(o.postmaster, s.db) : 0);
            let from = cpu();
            const mark = setTimeout(() => (from = cpu()), o.warmupSeconds * 1000);
            const stats = await runLoop({
              connections,
              warmupMs: o.warmupSeconds * 1000,
              durationMs: o.seconds * 1000,
              build: s.build[op],
              iterations: s.iterations[op],
              send: s.send,
            });
            clearTimeout(mark);
            const cpuMs = o.postmaster ? r2(((cpu() - from) * 1000) / Math.max(1, stats.requests)) : null;
            cells.push({ round, op, connections, variant: s.v.name, stats, cpuMs });
            o.log(
              `statements round ${round} ${op} @${connections} ${s.v.name}: ${stats.rps} req/s, p99 ${stats.p99} ms` +
                `${cpuMs === null ? '' : `, backend CPU ${cpuMs} ms/write`}, ${JSON.stringify(stats.statuses)}`,
            );
          }
        }

    const rows: StatementsRow[] = [];
    for (const op of OPS)
      for (const connections of o.connections) {
        const of = (variant: string) =>
          cells.filter((c) => c.op === op && c.connections === connections && c.variant === variant);
        const base = of(BASELINE);
        const service = of(SERVICE);
        for (const v of variants) {
          const mine = of(v.name);
          rows.push({
            op,
            connections,
            variant: v.name,
            rps: Math.round(median(mine.map((c) => c.stats.rps))),
            p99: r2(median(mine.map((c) => c.stats.p99))),
            cpuMs: o.postmaster ? r2(median(mine.map((c) => c.cpuMs!))) : null,
            vsBaseline: mine.map((c, i) => r2(c.stats.rps / base[i]!.stats.rps)),
            vsService: mine.map((c, i) => r2(c.stats.rps / service[i]!.stats.rps)),
            unexpected: mine.reduce((n, c) => n + c.stats.unexpected, 0),
          });
        }
      }
    const result: StatementsResult = {
      date: new Date().toISOString(),
      seconds: o.seconds,
      warmupSeconds: o.warmupSeconds,
      rounds: o.rounds,
      poolMax: o.poolMax,
      hotIds: HOT_IDS,
      rows,
    };
    // an update that changes no indexed column can be a heap-only tuple (HOT): no index entry at all
    result.hotUpdates = [];
    for (const s of setups) {
      const [row] = await s.sql<{ updates: string; hot: string }[]>`
        SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'appointments'`;
      result.hotUpdates.push({ variant: s.v.name, updates: Number(row?.updates ?? 0), hot: Number(row?.hot ?? 0) });
    }
    if (o.profile) result.profile = await profile(admin, setups.slice(0, 2), o);
    return result;
  } finally {
    await Promise.all(pools.map((sql) => sql.end({ timeout: 5 })));
    for (const db of databases.reverse()) await admin`DROP DATABASE IF EXISTS ${admin(db)} WITH (FORCE)`;
    await admin.end();
  }
}

/** What PostgreSQL spends per write, statement by statement (nested ones too), at the first connection count. */
async function profile(
  admin: Sql,
  setups: Array<{
    v: Variant;
    db: string;
    send: Send;
    iterations: Record<Op, number[]>;
    build: ReturnType<typeof requests>;
  }>,
  o: MeasureOptions,
): Promise<NonNullable<StatementsResult['profile']>> {
  await admin`ALTER SYSTEM SET pg_stat_statements.track = 'all'`;
  await admin`SELECT pg_reload_conf()`;
  const out: NonNullable<StatementsResult['profile']> = [];
  const connections = o.connections[0]!;
  try {
    for (const s of setups)
      for (const op of OPS) {
        const loop = (warmupMs: number, durationMs: number) =>
          runLoop({
            connections,
            warmupMs,
            durationMs,
            build: s.build[op],
            iterations: s.iterations[op],
            send: s.send,
          });
        await loop(0, 500); // every connection has seen the new setting
        await admin`SELECT pg_stat_statements_reset()`;
        const stats = await loop(0, o.seconds * 1000);
        const writes = stats.requests;
        const entries = await admin<
          Array<{ query: string; toplevel: boolean; calls: string; exec: number; blocks: string; wal: string }>
        >`
          SELECT query, toplevel, calls, total_exec_time AS exec,
                 shared_blks_hit + shared_blks_read AS blocks, wal_bytes AS wal
          FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${s.db})
          ORDER BY total_exec_time DESC
          LIMIT 14`;
        out.push({
          variant: s.v.name,
          op,
          connections,
          writes,
          entries: entries.map((e) => ({
            query: e.query.replace(/\s+/g, ' ').trim(),
            toplevel: e.toplevel,
            callsPerWrite: r2(Number(e.calls) / writes),
            execMsPerWrite: Math.round((e.exec / writes) * 1000) / 1000,
            sharedBlocksPerWrite: r2(Number(e.blocks) / writes),
            walBytesPerWrite: Math.round(Number(e.wal) / writes),
          })),
        });
        o.log(`statements profile ${s.v.name} ${op}: ${writes} writes`);
      }
  } finally {
    await admin`ALTER SYSTEM RESET pg_stat_statements.track`;
    await admin`SELECT pg_reload_conf()`;
  }
  return out;
}

const pct = (x: number) => `${Math.round(x * 100)}%`;

/** The markdown of a measurement: the service ÷ the baseline, and each variant's figures. */
export function renderStatements(r: StatementsResult): string {
  const lines: string[] = [
    `${r.rounds} rounds of ${r.seconds} s cells (after ${r.warmupSeconds} s of warm-up each), pool of ${r.poolMax}; ` +
      `updates of ${r.hotIds} hot ids, each newer than any sent before. Ratios are the median of the per-round ratios.`,
    '',
    '| write | conns | variant | req/s | p99 ms | backend CPU ms/write | ÷ baseline (per round) | median | ÷ service |',
    '|---|---:|---|---:|---:|---:|---|---:|---:|',
  ];
  for (const x of r.rows)
    lines.push(
      `| ${x.op} | ${x.connections} | ${x.variant} | ${x.rps} | ${x.p99} | ${x.cpuMs ?? 'n/a'} | ${x.vsBaseline.join(' / ')} | ` +
        `**${r2(median(x.vsBaseline))}** | ${r2(median(x.vsService))} |`,
    );
  if (r.hotUpdates?.length)
    lines.push(
      '',
      'Updates of the current rows that were heap-only (HOT: no new index entry): ' +
        r.hotUpdates.map((h) => `${h.variant} ${h.updates ? pct(h.hot / h.updates) : 'n/a'}`).join(', ') +
        '.',
    );
  for (const p of r.profile ?? []) {
    lines.push(
      '',
      `pg_stat_statements, ${p.variant}, ${p.op} at ${p.connections} connections (${p.writes} writes; nested statements included, ` +
        'so a top-level call contains the statements below it):',
      '',
      '| statement | top level | calls/write | exec ms/write | shared blocks/write | WAL bytes/write |',
      '|---|---|---:|---:|---:|---:|',
    );
    for (const e of p.entries)
      lines.push(
        `| \`${e.query.slice(0, 110).replace(/\|/g, '\\|')}${e.query.length > 110 ? '…' : ''}\` | ${e.toplevel ? 'yes' : ''} | ` +
          `${e.callsPerWrite} | ${e.execMsPerWrite} | ${e.sharedBlocksPerWrite} | ${e.walBytesPerWrite} |`,
      );
  }
  return lines.join('\n');
}

/** The target: the service's statements at ≥ 70% of the baseline for creates and updates at each count. */
export function statementsTarget(r: StatementsResult): { worst: number; met: boolean } {
  const ratios = r.rows.filter((x) => x.variant === SERVICE).map((x) => r2(median(x.vsBaseline)));
  const worst = Math.min(...ratios);
  return { worst, met: worst >= 0.7 };
}

async function main() {
  const args = process.argv.slice(2);
  const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const log = (message: string) => console.error(`[statements ${new Date().toISOString().slice(11, 19)}] ${message}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outDir = path.resolve(flag('out') ?? path.join(PROJECT, 'bench-results', `statements-${stamp}`));
  mkdirSync(outDir, { recursive: true });
  // a durable cluster of its own, restarted once with pg_stat_statements loaded
  const dir = mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), 'appointments-statements-'));
  chmodSync(dir, 0o755);
  const options = { dir: path.join(dir, 'pg'), database: 'bench', log };
  const first = await startEmbeddedPostgres({ ...options, persistent: true });
  const setup = postgres(first.adminUrl, { max: 1, onnotice: () => {} });
  await setup`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`;
  await setup.end();
  await first.stop();
  const pg = await startEmbeddedPostgres({ ...options, persistent: false });
  try {
    const admin = postgres(pg.adminUrl, { max: 1, onnotice: () => {} });
    await admin`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`;
    await admin.end();
    const result = await measureStatements({
      url: pg.adminUrl,
      postmaster: pg.pid,
      seconds: Number(flag('seconds') ?? 5),
      warmupSeconds: Number(flag('warmup') ?? 1),
      rounds: Number(flag('rounds') ?? 3),
      connections: (flag('connections') ?? '10,50').split(',').map(Number),
      poolMax: configWith().dbPoolMax,
      pieces: args.includes('--pieces'),
      only: flag('only')?.split(','),
      profile: args.includes('--profile'),
      log,
    });
    const report = renderStatements(result);
    writeFileSync(path.join(outDir, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(path.join(outDir, 'report.md'), `${report}\n`);
    console.log(report);
    const { worst, met } = statementsTarget(result);
    log(`service ÷ baseline, worst cell ${pct(worst)} (${met ? 'met' : 'below 70%'}); ${outDir}`);
  } finally {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
