import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { withSql } from './database.js';
import { sleep } from './time.js';

// A PostgreSQL primary with a synchronous (or asynchronous) streaming standby, built from the embedded PostgreSQL's
// binaries, which have no pg_basebackup: a cluster stopped cleanly is a consistent base backup, so its
// data folder is copied, the copy gets standby.signal and a primary_conninfo, and both start. Used by
// test/failover.test.ts, scripts/check-fleet.ts and test/replica-reads.test.ts (no vitest here).

const STANDBY_NAME = 'standby1';

export interface ReplicatedPair {
  primaryPort: number;
  standbyPort: number;
  /** postgres://postgres:...@127.0.0.1:<primary>,127.0.0.1:<standby>/<database>?target_session_attrs=read-write */
  multiHostUrl(database: string): string;
  /** A URL of one node, primary or standby, of `database`. */
  urlOf(node: 'primary' | 'standby', database: string): string;
  /** SIGKILL to the primary's whole process group: the postmaster and every backend, at once. */
  killPrimary(): void;
  /** pg_promote() on the standby; resolves once it answers read-write. */
  promoteStandby(): Promise<void>;
  /** Stops the standby (a fast shutdown); with a synchronous one, commits on the primary then wait. */
  stopStandby(): Promise<void>;
  destroy(): Promise<void>;
}

const urlWith = (adminUrl: string, port: number, database: string) => {
  const url = new URL(adminUrl);
  url.port = String(port);
  url.pathname = `/${database}`;
  return url.toString();
};

/**
 * Builds the pair in `dir` (which must exist), on 127.0.0.1 only. Every commit on the primary waits
 * until the standby has it on disk (synchronous_standby_names, synchronous_commit = on): nothing
 * acknowledged is lost when the primary dies. With `synchronous: false`, an asynchronous replica:
 * commits do not wait for it (nor stop while it is down).
 */
export async function startReplicatedPair(
  dir: string,
  databases: string[],
  { synchronous = true }: { synchronous?: boolean } = {},
): Promise<ReplicatedPair> {
  // as root, PostgreSQL runs as its own user, who must be able to pass through this folder
  await fs.chmod(dir, 0o711);
  const primaryDir = path.join(dir, 'primary');
  const standbyDir = path.join(dir, 'standby');
  const log = () => {};
  let primary: EmbeddedPostgres = await startEmbeddedPostgres({
    dir: primaryDir,
    database: 'postgres',
    persistent: true,
    log,
  });
  const primaryPort = Number(new URL(primary.adminUrl).port);
  const password = decodeURIComponent(new URL(primary.adminUrl).password);
  try {
    await withSql(primary.adminUrl, async (sql) => {
      for (const database of databases) await sql`CREATE DATABASE ${sql(database)}`;
      // ALTER SYSTEM takes no parameters; the name is a constant of this file
      if (synchronous) await sql.unsafe(`ALTER SYSTEM SET synchronous_standby_names = '${STANDBY_NAME}'`);
      await sql`ALTER SYSTEM SET synchronous_commit = 'on'`;
      await sql`ALTER SYSTEM SET wal_level = 'replica'`;
    });
  } finally {
    await primary.stop(); // a clean shutdown: the copy is consistent without any WAL from elsewhere
  }

  const copied = spawnSync('cp', ['-a', primaryDir, standbyDir], { encoding: 'utf8' });
  if (copied.status !== 0) throw new Error(`copying the data folder failed: ${copied.stderr}`);
  const pgdata = path.join(standbyDir, 'pgdata');
  const owner = statSync(pgdata);
  const conninfo = `host=127.0.0.1 port=${primaryPort} user=postgres password=${password} application_name=${STANDBY_NAME}`;
  // the copy's own settings: it follows the primary, and is no primary waiting for a standby itself
  await fs.appendFile(
    path.join(pgdata, 'postgresql.auto.conf'),
    `primary_conninfo = '${conninfo}'\nsynchronous_standby_names = ''\nhot_standby = on\n`,
  );
  await fs.writeFile(path.join(pgdata, 'standby.signal'), '');
  await fs.chown(path.join(pgdata, 'standby.signal'), owner.uid, owner.gid);

  primary = await startEmbeddedPostgres({
    dir: primaryDir,
    database: 'postgres',
    persistent: true,
    port: primaryPort,
    log,
  });
  const standby = await startEmbeddedPostgres({ dir: standbyDir, database: 'postgres', persistent: true, log });
  const standbyPort = Number(new URL(standby.adminUrl).port);
  // streaming and synchronous before anyone writes
  const streaming = waitFor(
    () =>
      withSql(primary.adminUrl, async (sql) => {
        const rows = await sql`SELECT 1 FROM pg_stat_replication WHERE application_name = ${STANDBY_NAME}
          AND state = 'streaming' AND sync_state = ${synchronous ? 'sync' : 'async'}`;
        return rows.length === 1;
      }),
    30_000,
    `the standby did not stream ${synchronous ? 'synchronously' : 'asynchronously'}`,
  );
  await streaming.catch(async (error: unknown) => {
    await Promise.all([primary.stop(), standby.stop()]);
    throw error;
  });
  const adminUrl = primary.adminUrl;
  return {
    primaryPort,
    standbyPort,
    multiHostUrl(database) {
      const url = new URL(urlWith(adminUrl, primaryPort, database));
      url.searchParams.set('target_session_attrs', 'read-write');
      return url
        .toString()
        .replace(`@127.0.0.1:${primaryPort}/`, `@127.0.0.1:${primaryPort},127.0.0.1:${standbyPort}/`);
    },
    urlOf: (node, database) => urlWith(adminUrl, node === 'primary' ? primaryPort : standbyPort, database),
    killPrimary() {
      process.kill(-primary.pid, 'SIGKILL');
    },
    async promoteStandby() {
      await withSql(standby.adminUrl, (sql) => sql`SELECT pg_promote(true, 30)`.then(() => undefined));
      await waitFor(
        () =>
          withSql(standby.adminUrl, async (sql) => {
            const [row] = await sql`SELECT current_setting('transaction_read_only') AS ro`;
            return row!.ro === 'off';
          }),
        30_000,
        'the promoted standby did not answer read-write',
      );
    },
    stopStandby: () => standby.stop(),
    async destroy() {
      await Promise.all([primary.stop(), standby.stop()]);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not there yet
    }
    if (Date.now() > deadline) throw new Error(message);
    await sleep(100);
  }
}
