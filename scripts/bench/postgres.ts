import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';

/**
 * A durable embedded PostgreSQL (fsync on) in a new folder, for one benchmark run. `cleanups` gets its
 * stop and the folder's removal, in the order to run them backwards.
 */
export async function startBenchPostgres(
  label: string,
  log: (message: string) => void,
  cleanups: Array<() => unknown>,
): Promise<EmbeddedPostgres> {
  // as root PostgreSQL runs as the user postgres, who must reach the folder: /var/tmp, opened to others
  const dir = mkdtempSync(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), `appointments-${label}-`));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // its ERROR lines are the expected 409s (exclusion violations, deadlocks): only FATAL and PANIC are shown
  const pgLog = (message: string) => (/^postgres: .*\bERROR:/.test(message) ? undefined : log(message));
  const pg = await startEmbeddedPostgres({
    dir: path.join(dir, 'pg'),
    database: 'bench',
    persistent: false,
    log: pgLog,
  });
  cleanups.push(() => pg.stop());
  return pg;
}

/**
 * CPU seconds so far of the postmaster's children connected to `database` (a backend's title names its
 * database): what PostgreSQL spent on a measurement, less disturbed by other work than throughput.
 */
export function backendCpuSeconds(postmaster: number, database: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== postmaster) continue;
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(` ${database} `)) continue;
      total += (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
    } catch {
      // the process has ended meanwhile
    }
  }
  return total;
}
