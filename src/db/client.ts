import fp from 'fastify-plugin';
import postgres, { type Options, type Sql } from 'postgres';
import { hostLocator, locatedSocket, parseDatabaseUrl, type TargetSessionAttrs } from './database-url.js';

declare module 'fastify' {
  interface FastifyInstance {
    sql: Sql;
  }
}

export interface DatabaseOptions {
  databaseUrl: string;
  poolMax: number;
}

/**
 * PostgreSQL's text for a timestamptz, `2020-10-10 20:20:00.5+00` (DateStyle ISO and TimeZone UTC, both
 * set for every connection below: its fraction stops at the last digit that is not 0), in the
 * canonical form of schemas/time.ts with microseconds: `2020-10-10T20:20:00.500000Z`. Formatted here
 * rather than by to_char() in each query, which was a large part of PostgreSQL's time for a page of
 * appointments (docs/performance.md).
 */
export function canonicalTimestamptz(text: string): string {
  // 'YYYY-MM-DD HH:MM:SS' is 19 characters (the service keeps to the years 1 to 9999); '+00' ends it
  const fraction = text.charCodeAt(19) === 46 /* . */ ? text.slice(20, -3) : '';
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${fraction.padEnd(6, '0')}Z`;
}

/** A canonical time with microseconds cut to the milliseconds that appointment times keep. */
export const toMilliseconds = (time: string) => `${time.slice(0, 23)}Z`;

/** Times travel as text both ways: no JavaScript Date, so no lost microseconds and no local time zone. */
export const timeAsText = {
  to: 1184,
  from: [1184],
  serialize: (value: unknown) => (value instanceof Date ? value.toISOString() : String(value)),
  parse: canonicalTimestamptz,
};

// Two overlapping inserts can wait on each other inside the exclusion check; PostgreSQL breaks such a
// deadlock only after deadlock_timeout (1 s by default), and we answer it as an overlap. Only a
// superuser (or, from PostgreSQL 15, a role granted SET on it) may change it: for another role an
// administrator can run ALTER ROLE ... SET deadlock_timeout = '50ms'.
const DEADLOCK_TIMEOUT = '50ms';

// A slow or locked database answers 503 instead of holding requests without end. lock_timeout stays
// well above the waits of legitimate contention (a writer queued behind others on one row waits a
// few milliseconds per writer ahead of it), so a write that should lose as 409 or `stale` never
// turns into a 503; statement_timeout bounds a statement as a whole, its lock waits included.
export const STATEMENT_TIMEOUT_MS = 3_000;
export const LOCK_TIMEOUT_MS = 2_000;
// The change feed serves a change only once every older transaction of the whole cluster has ended,
// so a session left idle in a transaction stalls every feed: the service's own never stay idle long.
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000;
// postgres.js queues queries without bound while every connection is busy (and pipelines them behind
// slow ones). A query waits for a free connection at most this long, and at most this many wait.
// Wait plus statement_timeout stays under the 5 s within which every request must be answered.
export const POOL_WAIT_TIMEOUT_MS = 1_000;
export const POOL_MAX_WAITING = 1_000;
// A query given to a closed connection first waits out postgres.js's reconnect backoff, which grows
// to 20 s while the database is down: requests would hang that long instead of a quick 503. Capped
// at 0.5 s, a down database costs at most `max` connection attempts every half second.
const reconnectBackoff = (retries: number) => Math.min(0.05 * 2 ** retries, 0.5);

/** No connection of the pool became free in time, or too many queries wait already. */
export class DatabaseBusyError extends Error {
  readonly code = 'DATABASE_BUSY';
}

/** Told of each query's wait for a place (0 when one was free) and of each query refused. */
export interface PoolObserver {
  waited?(seconds: number): void;
  refused?(reason: 'queue_full' | 'wait_timeout'): void;
}

type Handler = (query: PendingQuery) => unknown;
interface PendingQuery extends Promise<unknown> {
  handler: Handler;
  reject(error: unknown): void;
}

/**
 * Wraps the pool so that at most `max` queries run at once (one a connection) and the others wait in
 * a bounded line: past `maxWaiting` waiting, or after `waitTimeoutMs`, a query fails with
 * DatabaseBusyError without reaching the database. postgres.js runs a query through its own
 * `handler` when the query is first awaited; the wrapper gates that handler. Fragments (sql`...`
 * nested in another query) are never awaited, so they never take a place.
 */
export function boundedPool(
  sql: Sql,
  { max, maxWaiting, waitTimeoutMs }: { max: number; maxWaiting: number; waitTimeoutMs: number },
  observer: PoolObserver = {},
): Sql {
  let running = 0;
  const waiting: Array<{ start(): void; timer: NodeJS.Timeout }> = [];
  const release = () => {
    running--;
    const next = waiting.shift();
    if (next) {
      clearTimeout(next.timer);
      next.start();
    }
  };
  const gate = (query: PendingQuery) => {
    const run = query.handler;
    query.handler = (q) => {
      // `since`: when the query began to wait for a place, if it had to
      const start = (since?: number) => {
        running++;
        observer.waited?.(since === undefined ? 0 : (performance.now() - since) / 1000);
        // Promise.prototype.then: the Query's own then would start it again
        void Promise.prototype.then.call(q, release, release);
        run(q);
      };
      if (running < max) return start();
      if (waiting.length >= maxWaiting) {
        observer.refused?.('queue_full');
        return q.reject(new DatabaseBusyError(`${waiting.length} queries wait for a database connection already`));
      }
      const since = performance.now();
      const entry = {
        start: () => start(since),
        timer: setTimeout(() => {
          waiting.splice(waiting.indexOf(entry), 1);
          observer.refused?.('wait_timeout');
          observer.waited?.((performance.now() - since) / 1000);
          q.reject(new DatabaseBusyError(`no database connection became free within ${waitTimeoutMs} ms`));
        }, waitTimeoutMs),
      };
      waiting.push(entry);
    };
    return query;
  };
  const bounded = new Proxy(sql, {
    apply(target, thisArg, args) {
      const result = Reflect.apply(target, thisArg, args) as unknown;
      const isQuery = result instanceof Promise && typeof (result as Partial<PendingQuery>).handler === 'function';
      return isQuery ? gate(result as PendingQuery) : result;
    },
  });
  loads.set(bounded, () => ({ max, running, waiting: waiting.length }));
  return bounded;
}

/** How full a pool of boundedPool is now: its places, those running a query, the queries waiting. */
export interface PoolLoad {
  max: number;
  running: number;
  waiting: number;
}
const loads = new WeakMap<Sql, () => PoolLoad>();

/** The load of a pool made by boundedPool (all zero for another). */
export const poolLoad = (sql: Sql): PoolLoad => loads.get(sql)?.() ?? { max: 0, running: 0, waiting: 0 };

/**
 * The URL and postgres.js options that reach the database of `databaseUrl`. A URL of one host is
 * postgres.js's as it is. With several hosts, every new connection goes to the host that answers as
 * target_session_attrs asks, found by trying them in order (db/database-url.ts): after a failover,
 * connections find the new primary alone. postgres.js's own target_session_attrs is not used: from
 * PostgreSQL 14 it takes a hot standby for read-write (the standby reports
 * default_transaction_read_only off), and with several hosts it hangs while all are down.
 */
export function connectionTo(
  databaseUrl: string,
  targets?: readonly TargetSessionAttrs[],
  connectTimeoutSeconds = CONNECT_TIMEOUT_SECONDS,
): { url: string; options: Options<Record<string, never>> } {
  // postgres.js reads a `socket` function (its hook for custom transports) that its types leave out
  const url = parseDatabaseUrl(databaseUrl, targets);
  if (url.hosts.length <= 1) return { url: databaseUrl, options: {} };
  return {
    url: url.forHost(0),
    options: {
      socket: locatedSocket(url, hostLocator(url)),
      connect_timeout: Math.min(connectTimeoutSeconds, CONNECT_TIMEOUT_SECONDS),
    } as Options<Record<string, never>>,
  };
}

// A connection begun while a standby is being promoted, or while PostgreSQL restarts, can stall in
// its start-up until the connect timeout (seen in test/failover.test.ts and test/faults.test.ts, the
// cause not found): failing it after 2 s keeps a request that waits for it within the 5 s answer
// bound, and the next attempt finds the server (or the promoted standby).
const CONNECT_TIMEOUT_SECONDS = 2;

/**
 * How the service's sessions plan. Each statement is planned once per connection, for any parameters,
 * not again at each call: planning the point-in-time list took longer than running it. The queries are
 * written so that one plan serves every parameter (test/query-plans.test.ts checks the plans of both
 * modes; test/plans-after-growth.test.ts those made while the tables were small, once they are large).
 */
export const PLANNING = { plan_cache_mode: 'force_generic_plan' } as const;

/** What a pool other than the primary's (the replica's) does differently. */
export interface PoolSettings {
  /** The target_session_attrs its URL may ask for. */
  targets?: readonly TargetSessionAttrs[];
  connectTimeoutSeconds?: number;
  statementTimeoutMs?: number;
}

export function createSql(
  { databaseUrl, poolMax }: DatabaseOptions,
  setDeadlockTimeout = false,
  {
    targets,
    connectTimeoutSeconds = CONNECT_TIMEOUT_SECONDS,
    statementTimeoutMs = STATEMENT_TIMEOUT_MS,
  }: PoolSettings = {},
): Sql {
  const { url, options } = connectionTo(databaseUrl, targets, connectTimeoutSeconds);
  return postgres(url, {
    max: poolMax,
    prepare: true,
    connect_timeout: connectTimeoutSeconds,
    ...options,
    backoff: reconnectBackoff,
    onnotice: () => {},
    types: { timeAsText },
    connection: {
      application_name: 'appointments-service',
      TimeZone: 'UTC',
      DateStyle: 'ISO',
      statement_timeout: statementTimeoutMs,
      lock_timeout: LOCK_TIMEOUT_MS,
      idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
      ...PLANNING,
      ...(setDeadlockTimeout ? { deadlock_timeout: DEADLOCK_TIMEOUT } : {}),
    },
  });
}

/**
 * Whether the pool's connections set deadlock_timeout: `set` when this role may, `given` when the
 * role's or server's own setting is already as short, `refused` otherwise (a connection asking for a
 * setting it may not have fails).
 */
async function deadlockTimeoutPlan(databaseUrl: string): Promise<'set' | 'given' | 'refused'> {
  const { url, options } = connectionTo(databaseUrl);
  const probe = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {}, ...options });
  try {
    const [{ superuser, version, given }] = await probe<{ superuser: boolean; version: number; given: boolean }[]>`
      SELECT current_setting('is_superuser') = 'on' AS superuser,
             current_setting('server_version_num')::int AS version,
             current_setting('deadlock_timeout')::interval <= ${DEADLOCK_TIMEOUT}::interval AS given`;
    if (superuser) return 'set';
    if (given) return 'given';
    if (version < 150000) return 'refused';
    const [{ granted }] = await probe<
      { granted: boolean }[]
    >`SELECT has_parameter_privilege('deadlock_timeout', 'SET') AS granted`;
    return granted ? 'set' : 'refused';
  } finally {
    await probe.end();
  }
}

/** Decorates the app with `sql`, a postgres.js pool, and ends the pool when the app closes. */
export const databasePlugin = fp<DatabaseOptions>(
  async (app, options) => {
    let setDeadlockTimeout = false;
    try {
      const plan = await deadlockTimeoutPlan(options.databaseUrl);
      setDeadlockTimeout = plan === 'set';
      if (plan === 'refused')
        app.log.warn("this role may not set deadlock_timeout: writers that deadlock wait for the server's setting");
    } catch (error) {
      app.log.warn({ err: error }, 'could not check the database role; deadlock_timeout stays as the server sets it');
    }
    const pool = createSql(options, setDeadlockTimeout);
    const { poolWait, poolRefused } = app.metrics;
    const sql = boundedPool(
      pool,
      { max: options.poolMax, maxWaiting: POOL_MAX_WAITING, waitTimeoutMs: POOL_WAIT_TIMEOUT_MS },
      { waited: (seconds) => poolWait.observe(seconds), refused: (reason) => poolRefused.inc({ reason }) },
    );
    app.decorate('sql', sql);
    app.addHook('onClose', async () => {
      await sql.end({ timeout: 5 });
    });
  },
  { name: 'database', dependencies: ['metrics'] },
);
