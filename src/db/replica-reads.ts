import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Gauge } from 'prom-client';
import type { ReservedSql, Sql } from 'postgres';
import { boundedPool, createSql, POOL_WAIT_TIMEOUT_MS, STATEMENT_TIMEOUT_MS } from './client.js';
import { REPLICA_TARGETS } from './database-url.js';

// Where a read "as recorded at the instant T" goes: to DATABASE_REPLICA_URL when the replica has
// replayed every write that could have been stamped at or before T, else to the primary. The rule
// and its proof are in docs/design.md (reads from a replica); in short:
//
// - Every stamp (recorded_at, deleted_at, valid_from, valid_to) is written by one statement in a
//   transaction of its own (upsert, batch, delete), and is at least a clock_timestamp() read inside
//   that statement; the statement ends within statement_timeout of its start and commits at once.
//   So a transaction that wrote a stamp <= T has inserted its commit record by the primary's time
//   T + STAMP_TO_COMMIT_BOUND_MS (plus the margin).
// - Every SAMPLE_INTERVAL_MS the primary is asked its clock P and then its WAL insert position L:
//   every commit record inserted by P ends at or before L.
// - A read at T may use the sample with P >= T + bound + margin: a replica that has replayed L (on
//   the primary's cluster and timeline, not paused) holds every write the answer at T depends on,
//   and writes stamped later do not change that answer. The replica's position is read on the very
//   connection of the read, just before it, so the read's snapshot holds all that was replayed.
//
// T is only ever compared with the primary's clock (the clock of the stamps), never this process's.

/** From a stamp (a clock_timestamp() inside a write statement) to its commit record, at most. */
export const STAMP_TO_COMMIT_BOUND_MS = STATEMENT_TIMEOUT_MS;
// Timer and scheduling delays of the statement's cancel, the commit after it, a clock slewed by NTP.
export const REPLICA_MARGIN_MS = 1_000;
export const SAMPLE_INTERVAL_MS = 250;
// A minute of primary samples: for the rule only the last few seconds matter; the rest measure the lag.
const SAMPLES_KEPT = 240;
// A replica answer older than this is no answer: the replica is taken for down.
const REPLICA_STATE_TTL_MS = 2_000;
// The whole replica attempt (a connection, its position, the read) must leave the primary the time it
// needs within the 5 s answer bound: a pool wait and a statement_timeout.
export const REPLICA_BUDGET_MS = 5_000 - POOL_WAIT_TIMEOUT_MS - STATEMENT_TIMEOUT_MS - 250;
const REPLICA_CONNECT_TIMEOUT_SECONDS = 1;
// A backstop for a read abandoned after REPLICA_BUDGET_MS: the replica ends it soon after.
const REPLICA_STATEMENT_TIMEOUT_MS = 1_000;

/** Why a read at an instant went to the primary although a replica is configured. */
export type FallbackReason =
  | 'recent' // no primary sample late enough yet: the instant is too recent (or the primary is not sampled)
  | 'unavailable' // the replica does not answer, or is no replica
  | 'timeline' // the replica is of another cluster, or of another timeline than the primary
  | 'paused' // its replay is paused
  | 'behind' // it has not replayed what the read needs
  | 'busy' // every replica connection is reading
  | 'failed'; // the read failed on the replica (a conflict with recovery, a lost connection) or took too long

/** A canonical time (schemas/time.ts, with microseconds or milliseconds) in microseconds since 1970. */
export function instantMicros(time: string): bigint {
  const micros = time.length > 24 ? Number(time.slice(23, 26)) : 0;
  return BigInt(Date.parse(`${time.slice(0, 23)}Z`)) * 1000n + BigInt(micros);
}

/** A pg_lsn's text, `16/B374D848`, as a number. */
export const parseLsn = (lsn: string): bigint => {
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
};

/** What the primary said: its clock, then its WAL insert position, and whose WAL that is. */
export interface PrimarySample {
  at: bigint;
  lsn: bigint;
  lsnText: string;
  system: string;
  timeline: number;
}

/**
 * The earliest sample taken late enough for a read at `at` (microseconds): at or after at + bound +
 * margin on the primary's clock. Undefined when none is (the instant is too recent). `samples` are
 * oldest first.
 */
export function sampleFor(samples: readonly PrimarySample[], at: bigint): PrimarySample | undefined {
  const needed = at + BigInt((STAMP_TO_COMMIT_BOUND_MS + REPLICA_MARGIN_MS) * 1000);
  return samples.find((sample) => sample.at >= needed);
}

/**
 * How far behind the primary the replica is, in seconds of the primary's clock: from the last sample
 * it has replayed to the newest. Past every sample kept, the span of the samples (a lower bound).
 */
export function lagSeconds(samples: readonly PrimarySample[], replayed: bigint): number {
  const newest = samples.at(-1);
  if (newest === undefined) return Number.NaN;
  const caughtUp = samples.findLast((sample) => sample.lsn <= replayed) ?? samples[0]!;
  return Number(newest.at - caughtUp.at) / 1e6;
}

interface ReplicaState {
  recovery: boolean;
  paused: boolean;
  lsn: bigint;
  system: string;
  timeline: number;
  /** performance.now() when it answered */
  seenAt: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Runs `read`, a read as recorded at the instant `at` (canonical), on the replica when it is exact
     * there, else on the primary; counted in appointments_db_reads_total.
     */
    readAt<T>(at: string, read: (sql: Sql) => Promise<T>): Promise<T>;
  }
}

export interface ReplicaReadsOptions {
  replicaUrl?: string;
  poolMax: number;
}

/** The replica's refusal of a read that needs `sample`, or null when it may answer: on its own connection. */
const refusalOn = async (sql: ReservedSql, sample: PrimarySample) => {
  const [row] = await sql<{ refusal: FallbackReason | null }[]>`
    SELECT CASE
      WHEN NOT pg_is_in_recovery() THEN 'unavailable'
      WHEN (SELECT system_identifier::text FROM pg_control_system()) <> ${sample.system}
        OR (SELECT timeline_id FROM pg_control_checkpoint()) <> ${sample.timeline} THEN 'timeline'
      WHEN pg_get_wal_replay_pause_state() <> 'not paused' THEN 'paused'
      WHEN NOT coalesce(pg_last_wal_replay_lsn() >= ${sample.lsnText}::pg_lsn, false) THEN 'behind'
    END AS refusal`;
  return row!.refusal;
};

function replicaReads(app: FastifyInstance, replicaUrl: string, poolMax: number) {
  const replica = boundedPool(
    // one connection more than reads may take, for the replica's sampling
    createSql({ databaseUrl: replicaUrl, poolMax: poolMax + 1 }, false, {
      targets: REPLICA_TARGETS,
      connectTimeoutSeconds: REPLICA_CONNECT_TIMEOUT_SECONDS,
      statementTimeoutMs: REPLICA_STATEMENT_TIMEOUT_MS,
    }),
    { max: poolMax + 1, maxWaiting: 1, waitTimeoutMs: SAMPLE_INTERVAL_MS },
  );
  let samples: PrimarySample[] = [];
  let state: ReplicaState | undefined;
  let readsInFlight = 0;
  let closed = false;
  const timers: NodeJS.Timeout[] = [];

  const samplePrimary = async () => {
    const [row] = await app.sql<{ at: string; lsn: string; walFile: string; system: string }[]>`
      SELECT t.at, pg_current_wal_insert_lsn()::text AS lsn, pg_walfile_name(pg_current_wal_insert_lsn()) AS "walFile",
             (SELECT system_identifier::text FROM pg_control_system()) AS system
      FROM (SELECT clock_timestamp() AS at OFFSET 0) AS t`;
    const sample: PrimarySample = {
      at: instantMicros(row!.at),
      lsn: parseLsn(row!.lsn),
      lsnText: row!.lsn,
      system: row!.system,
      timeline: Number.parseInt(row!.walFile.slice(0, 8), 16),
    };
    const last = samples.at(-1);
    // positions of another timeline (a failover) or cluster say nothing about this one's
    if (last && (last.system !== sample.system || last.timeline !== sample.timeline || last.at > sample.at))
      samples = [];
    samples.push(sample);
    if (samples.length > SAMPLES_KEPT) samples.shift();
  };

  const sampleReplica = async () => {
    const [row] = await replica<
      { recovery: boolean; pause: string | null; lsn: string | null; system: string; timeline: number }[]
    >`
      SELECT pg_is_in_recovery() AS recovery,
             CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS pause,
             pg_last_wal_replay_lsn()::text AS lsn,
             (SELECT system_identifier::text FROM pg_control_system()) AS system,
             (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline`;
    if (state === undefined) app.log.info('the replica answers: reads at an instant may go there');
    state = {
      recovery: row!.recovery,
      paused: row!.pause !== 'not paused',
      lsn: row!.lsn === null ? -1n : parseLsn(row!.lsn),
      system: row!.system,
      timeline: row!.timeline,
      seenAt: performance.now(),
    };
  };

  /** Runs `sample` every SAMPLE_INTERVAL_MS, one at a time; a failure is only logged. */
  const every = (name: string, sample: () => Promise<void>, failed: () => void) => {
    let running = false;
    const timer = setInterval(() => {
      if (running || closed) return;
      running = true;
      sample()
        .catch((error: unknown) => {
          failed();
          if (!closed) app.log.debug({ err: error }, `${name} could not be sampled`);
        })
        .finally(() => (running = false));
    }, SAMPLE_INTERVAL_MS);
    timer.unref();
    timers.push(timer);
  };
  every('the primary', samplePrimary, () => {});
  every('the replica', sampleReplica, () => {
    if (state !== undefined) app.log.warn('the replica does not answer: reads at an instant go to the primary');
    state = undefined;
  });

  new Gauge({
    name: 'appointments_db_replica_lag_seconds',
    help: "How far the replica's replay is behind the primary, in seconds of the primary's clock (NaN: no answer).",
    registers: [app.metrics.registry],
    collect() {
      this.set(state === undefined ? Number.NaN : lagSeconds(samples, state.lsn));
    },
  });

  /** Why the replica may not answer a read that needs `sample`, as far as its last answer tells. */
  const refusalByState = (sample: PrimarySample): FallbackReason | undefined => {
    if (state === undefined || performance.now() - state.seenAt > REPLICA_STATE_TTL_MS || !state.recovery)
      return 'unavailable';
    if (state.system !== sample.system || state.timeline !== sample.timeline) return 'timeline';
    if (state.paused) return 'paused';
    if (state.lsn < sample.lsn) return 'behind';
    if (readsInFlight >= poolMax) return 'busy';
    return undefined;
  };

  return {
    /** The answer of `read` on the replica, or why there is none. */
    async tryRead<T>(at: string, read: (sql: Sql) => Promise<T>): Promise<{ value: T } | { reason: FallbackReason }> {
      const sample = sampleFor(samples, instantMicros(at));
      if (sample === undefined) return { reason: 'recent' };
      const reason = refusalByState(sample);
      if (reason !== undefined) return { reason };
      readsInFlight++;
      // the position and the read on one connection, in that order: the read's snapshot then holds
      // everything replayed when the position was read (another connection could reach another host,
      // or the replica restarted and replaying from an older point). The read is sent behind the
      // check without waiting for its answer (postgres.js pipelines them); when the check refuses,
      // the read's answer is thrown away.
      const attempt = (async () => {
        const sql = await replica.reserve();
        try {
          const refusal = refusalOn(sql, sample);
          const reading = read(sql);
          reading.catch(() => {});
          if ((await refusal) !== null) return { reason: (await refusal)! };
          return { value: await reading };
        } finally {
          sql.release();
        }
      })().finally(() => readsInFlight--);
      let timer: NodeJS.Timeout | undefined;
      const outOfTime = new Promise<'out of time'>((resolve) => {
        timer = setTimeout(() => resolve('out of time'), REPLICA_BUDGET_MS);
      });
      try {
        const outcome = await Promise.race([attempt, outOfTime]);
        if (outcome !== 'out of time') return outcome;
        app.log.warn('a read on the replica took too long; reads go to the primary until it answers again');
      } catch (error) {
        app.log.warn({ err: error }, 'a read on the replica failed; reads go to the primary until it answers again');
      } finally {
        clearTimeout(timer);
      }
      // taken for down until its next answer
      state = undefined;
      attempt.catch(() => {});
      return { reason: 'failed' };
    },
    async close() {
      closed = true;
      timers.forEach(clearInterval);
      await replica.end({ timeout: 5 });
    },
  };
}

/**
 * `readAt` for the routes' reads at an instant, and with DATABASE_REPLICA_URL a pool of the replica
 * and the samples of both sides that decide which reads it may answer.
 */
export const replicaReadsPlugin = fp<ReplicaReadsOptions>(
  async (app, { replicaUrl, poolMax }) => {
    const { dbReads, replicaFallbacks } = app.metrics;
    const replica = replicaUrl === undefined ? undefined : replicaReads(app, replicaUrl, poolMax);
    app.decorate('readAt', async <T>(at: string, read: (sql: Sql) => Promise<T>): Promise<T> => {
      if (replica !== undefined) {
        const outcome = await replica.tryRead(at, read);
        if ('value' in outcome) {
          dbReads.inc({ target: 'replica' });
          return outcome.value;
        }
        replicaFallbacks.inc({ reason: outcome.reason });
      }
      dbReads.inc({ target: 'primary' });
      return read(app.sql);
    });
    if (replica !== undefined) app.addHook('onClose', () => replica.close());
  },
  { name: 'replica-reads', dependencies: ['database', 'metrics'] },
);
