// npx tsx scripts/bench/write-pieces.ts [--rounds=5] [--writes=2000] [--connections=1]
// What each piece of the change feed's write-side work costs PostgreSQL: creates and updates sent one at
// a time through upsert_appointment on each of `connections` connections (autocommit), measured as the
// backends' CPU time per write (from /proc, less disturbed by other work on a shared machine than
// throughput) and as wall time per write (at several connections, the inverse of throughput), with the pieces switched off in turn on one database:
//   as migrated         the trigger appointments_feed_position and the three feed indexes;
//   no trigger          the position computed by column defaults in the INSERT itself (the trigger
//                       disabled; updates then keep their position: cheaper than any real equivalent);
//   no feed indexes     the three indexes dropped;
//   neither             both, close to the write before the feed.
// The variants alternate within each round, in a rotating order. A measurement tool only: the
// variants without the trigger or the indexes do not keep the feed's guarantees.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres, { type Sql } from 'postgres';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { migrate } from '../../src/db/migrations.js';
import { backendCpuSeconds } from './postgres.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const ROUNDS = Number(flag('rounds') ?? 5);
const WRITES = Number(flag('writes') ?? 2000);
const CONNECTIONS = Number(flag('connections') ?? 1);
const HOT_IDS = 20;

const log = (message: string) => console.error(`[pieces ${new Date().toISOString().slice(11, 19)}] ${message}`);
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

type Variant = 'as migrated' | 'no trigger' | 'no feed indexes' | 'neither';
const VARIANTS: Variant[] = ['as migrated', 'no trigger', 'no feed indexes', 'neither'];

async function setVariant(sql: Sql, variant: Variant, indexDefinitions: string[]) {
  const trigger = variant === 'as migrated' || variant === 'no feed indexes';
  const indexes = variant === 'as migrated' || variant === 'no trigger';
  await sql.unsafe(`ALTER TABLE appointments ${trigger ? 'ENABLE' : 'DISABLE'} TRIGGER appointments_feed_position`);
  await sql`DROP INDEX IF EXISTS appointments_feed, appointment_versions_feed, appointment_versions_deleted_feed`;
  if (indexes) for (const definition of indexDefinitions) await sql.unsafe(definition);
}

async function main() {
  const dir = mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), 'appointments-pieces-'));
  chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), database: 'bench', persistent: false, log });
  const sql = postgres(pg.url, { max: CONNECTIONS, prepare: true, onnotice: () => {} });
  try {
    await migrate(pg.url, () => {});
    // with the trigger off, an INSERT takes its position from the defaults: as if computed in the INSERT
    await sql`ALTER TABLE appointments ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id(),
                                       ALTER COLUMN feed_seq SET DEFAULT nextval('change_feed_seq')`;
    const indexDefinitions = (
      await sql<{ definition: string }[]>`
        SELECT indexdef AS definition FROM pg_indexes
        WHERE indexname IN ('appointments_feed', 'appointment_versions_feed', 'appointment_versions_deleted_feed')`
    ).map((r) => r.definition);
    const cells: Array<{ round: number; variant: Variant; op: 'create' | 'update'; cpuMs: number; wallMs: number }> =
      [];
    let slot = 0;
    const updated = new Map<Variant, number>();
    const write = (org: string, id: string, s: number, updatedMs: number) => sql`
      SELECT status FROM upsert_appointment(${org}, ${id},
        ${'2040-01-01T00:00:00Z'}::timestamptz + ${s} * interval '30 minutes',
        ${'2040-01-01T00:00:00Z'}::timestamptz + (${s} + 1) * interval '30 minutes',
        ${'2039-12-31T00:00:00Z'}::timestamptz,
        ${'2040-01-01T00:00:00Z'}::timestamptz + ${updatedMs} * interval '1 millisecond', false)`;
    for (const variant of VARIANTS)
      for (let n = 0; n < HOT_IDS; n++) await write(`pieces-update-${variant}`, `hot-${n}`, n, 0);
    for (let round = 1; round <= ROUNDS; round++) {
      const order = VARIANTS.map((_, k) => VARIANTS[(k + round) % VARIANTS.length]!);
      for (const variant of order) {
        await setVariant(sql, variant, indexDefinitions);
        for (const op of ['create', 'update'] as const) {
          const org = `pieces-${op}-${variant}`;
          const cpu0 = backendCpuSeconds(pg.pid, 'bench');
          const t0 = performance.now();
          let sent = 0;
          const worker = async () => {
            while (sent++ < WRITES) {
              if (op === 'create') {
                const s = slot++;
                await write(org, `c-${s}`, s, 0);
              } else {
                const v = (updated.get(variant) ?? 0) + 1;
                updated.set(variant, v);
                await write(org, `hot-${v % HOT_IDS}`, v % HOT_IDS, v);
              }
            }
          };
          await Promise.all(Array.from({ length: CONNECTIONS }, worker));
          const cell = {
            round,
            variant,
            op,
            cpuMs: r3(((backendCpuSeconds(pg.pid, 'bench') - cpu0) * 1000) / WRITES),
            wallMs: r3((performance.now() - t0) / WRITES),
          };
          cells.push(cell);
          log(`round ${round} ${variant} ${op}: backend CPU ${cell.cpuMs} ms/write, wall ${cell.wallMs} ms/write`);
        }
      }
    }
    await setVariant(sql, 'as migrated', indexDefinitions);
    const lines = [
      '| write | variant | backend CPU ms/write (median) | ÷ as migrated | wall ms/write (median) | ÷ as migrated |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
    ];
    for (const op of ['create', 'update'] as const) {
      const of = (v: Variant) => cells.filter((c) => c.op === op && c.variant === v);
      const base = {
        cpu: median(of('as migrated').map((c) => c.cpuMs)),
        wall: median(of('as migrated').map((c) => c.wallMs)),
      };
      for (const variant of VARIANTS) {
        const cpu = median(of(variant).map((c) => c.cpuMs));
        const wall = median(of(variant).map((c) => c.wallMs));
        lines.push(
          `| ${op} | ${variant} | ${r3(cpu)} | ${r3(cpu / base.cpu)} | ${r3(wall)} | ${r3(wall / base.wall)} |`,
        );
      }
    }
    console.log(lines.join('\n'));
  } finally {
    await sql.end({ timeout: 5 });
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
