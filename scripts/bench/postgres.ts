import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
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
