import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { BatchItemRefusedError } from './db/appointment-batch.js';
import { AppointmentOverlapError, PreconditionFailedError } from './db/appointments.js';
import { poolLoad } from './db/client.js';
import { oldestWritingTransactionAge, webhookBacklog } from './db/metrics.js';
import type { WriteStatus } from './schemas/appointments.js';
import { ErrorCode } from './schemas/errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

/** What a write did; overlap and precondition_failed wrote nothing. */
export type WriteOutcome =
  'created' | 'updated' | 'unchanged' | 'stale' | 'deleted' | 'overlap' | 'precondition_failed';

/** The label of every request no route matched: the raw URL would make a series per path a scanner tries. */
export const UNMATCHED_ROUTE = '(unmatched)';

// From a cached read to a long-poll's end: long-polls and streams land in the last buckets, and the
// route label tells them apart from slow requests.
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// A query waits for a pool connection at most POOL_WAIT_TIMEOUT_MS (one second).
const POOL_WAIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
// From the change to the receiver's 2xx: the first attempt within a poll interval, retries after minutes or hours.
const DELIVERY_DELAY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600];

// The process's own metrics (CPU, memory, event loop, GC) are one set per process, however many apps a
// test builds in it: collected once, into a registry of their own, and printed before each app's.
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The instruments other plugins and routes record into; one set per app, in the app's registry. */
export interface Metrics {
  readonly registry: Registry;
  /**
   * Counts an answered request (the onResponse hook; a hijacked answer such as an event stream, which
   * skips the hooks, when it ends).
   */
  answered(request: FastifyRequest, statusCode: number, seconds: number): void;
  readonly writes: Counter<'outcome'>;
  readonly deadlocksResolved: Counter<'operation'>;
  readonly poolWait: Histogram;
  readonly poolRefused: Counter<'reason'>;
  readonly feedLongPolls: Gauge;
  readonly feedStreams: Gauge;
  /** Point-in-time and history reads (those a replica may answer), by where they were answered. */
  readonly dbReads: Counter<'target'>;
  /** Such reads that the replica did not answer, by why (db/replica-reads.ts). */
  readonly replicaFallbacks: Counter<'reason'>;
  readonly webhookAttempts: Counter<'outcome'>;
  readonly webhookDeliveryDelay: Histogram;
  /** The whole exposition: the process's metrics, then the app's. */
  exposition(): Promise<string>;
}

function createMetrics(app: FastifyInstance): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const gauge = (name: string, help: string, collect: (this: Gauge) => Promise<void> | void) =>
    new Gauge({ name, help, registers, collect });

  // Scrape-time reads: a database that is away must not fail the scrape, only leave those gauges NaN.
  const fromDatabase = <T>(read: () => Promise<T>) => {
    let pending: Promise<T | undefined> | undefined;
    return () =>
      (pending ??= read()
        .catch((error: unknown) => {
          app.log.debug({ err: error }, 'a metric could not be read from the database');
          return undefined;
        })
        .finally(() => (pending = undefined)));
  };
  const horizonAge = fromDatabase(() => oldestWritingTransactionAge(app.sql));
  const backlog = fromDatabase(() => webhookBacklog(app.sql));

  gauge('appointments_db_pool_size', 'Connections the pool may hold (DB_POOL_MAX).', function () {
    this.set(poolLoad(app.sql).max);
  });
  gauge('appointments_db_pool_connections_in_use', 'Pool connections running a query now.', function () {
    this.set(poolLoad(app.sql).running);
  });
  gauge('appointments_db_pool_connections_idle', 'Pool connections free for the next query.', function () {
    const load = poolLoad(app.sql);
    this.set(load.max - load.running);
  });
  gauge('appointments_db_pool_queries_waiting', 'Queries waiting for a free pool connection.', function () {
    this.set(poolLoad(app.sql).waiting);
  });
  gauge(
    'appointments_feed_oldest_writing_transaction_age_seconds',
    "Age of the oldest open transaction of the cluster that has written: the feed's horizon waits for it.",
    async function () {
      this.set((await horizonAge()) ?? Number.NaN);
    },
  );
  gauge(
    'appointments_feed_readers_waiting',
    'Long-polls and idle event streams of this instance waiting for a change now.',
    function () {
      this.set(app.changeFeed.waitingCount);
    },
  );
  gauge('appointments_webhook_events_pending', 'Webhook events not yet delivered nor given up.', async function () {
    this.set((await backlog())?.pending ?? Number.NaN);
  });
  gauge('appointments_webhook_endpoints_disabled', 'Webhook endpoints disabled (gone or failing).', async function () {
    this.set((await backlog())?.disabledEndpoints ?? Number.NaN);
  });
  gauge('appointments_webhook_attempts_in_flight', 'Webhook attempts this instance is making now.', function () {
    this.set(app.webhookDelivery.inFlightCount);
  });

  const labelNames = ['method', 'route', 'status_code'] as const;
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status.',
    labelNames,
    registers,
  });
  const durations = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'From the request to the end of its answer, by route pattern, method and status.',
    labelNames,
    buckets: DURATION_BUCKETS,
    registers,
  });

  return {
    registry,
    answered(request, statusCode, seconds) {
      const labels = {
        method: request.method,
        route: request.routeOptions.url ?? UNMATCHED_ROUTE,
        status_code: statusCode,
      };
      requests.inc(labels);
      durations.observe(labels, seconds);
    },
    writes: new Counter({
      name: 'appointments_writes_total',
      help: 'Appointment writes (single, batch items and deletes) by outcome.',
      labelNames: ['outcome'],
      registers,
    }),
    deadlocksResolved: new Counter({
      name: 'appointments_deadlocks_resolved_total',
      help: 'Writes aborted by a deadlock that succeeded when sent again.',
      labelNames: ['operation'],
      registers,
    }),
    poolWait: new Histogram({
      name: 'appointments_db_pool_wait_seconds',
      help: 'How long a query waited for a pool connection (0 when one was free).',
      buckets: POOL_WAIT_BUCKETS,
      registers,
    }),
    poolRefused: new Counter({
      name: 'appointments_db_pool_refused_total',
      help: 'Queries refused without reaching the database (answered 503): no connection in time, or too many waiting.',
      labelNames: ['reason'],
      registers,
    }),
    feedLongPolls: new Gauge({
      name: 'appointments_feed_long_polls_open',
      help: 'Change-feed requests with `wait` being answered now.',
      registers,
    }),
    feedStreams: new Gauge({
      name: 'appointments_feed_streams_open',
      help: 'Change-feed event streams open now.',
      registers,
    }),
    dbReads: new Counter({
      name: 'appointments_db_reads_total',
      help: 'Reads at an instant (lists, appointments, availability, history with `at`) by the database that answered.',
      labelNames: ['target'],
      registers,
    }),
    replicaFallbacks: new Counter({
      name: 'appointments_db_replica_fallbacks_total',
      help: 'Reads at an instant that went to the primary although a replica is configured, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    webhookAttempts: new Counter({
      name: 'appointments_webhook_attempts_total',
      help: 'Webhook delivery attempts of this instance by outcome (test attempts excluded).',
      labelNames: ['outcome'],
      registers,
    }),
    webhookDeliveryDelay: new Histogram({
      name: 'appointments_webhook_delivery_delay_seconds',
      help: 'From the change to its delivery (the 2xx of the attempt that delivered it).',
      buckets: DELIVERY_DELAY_BUCKETS,
      registers,
    }),
    async exposition() {
      return `${await processMetrics().metrics()}\n${await registry.metrics()}`;
    },
  };
}

/** The outcome of a write that was refused (it wrote nothing), or undefined for another error. */
export function refusalOf(error: unknown): WriteOutcome | undefined {
  if (error instanceof BatchItemRefusedError) return refusalOf(error.refusal);
  if (error instanceof AppointmentOverlapError) return 'overlap';
  if (error instanceof PreconditionFailedError) return 'precondition_failed';
  return undefined;
}

/** The outcome of a batch item or a single write, as the metrics label it. */
export const outcomeOf = (status: WriteStatus | 'overlap' | 'precondition failed'): WriteOutcome =>
  status === 'precondition failed' ? 'precondition_failed' : status;

/** Counts what `write` did, refusals included; its result or error is passed on as it is. */
export async function countWrite<T>(
  metrics: Metrics,
  write: Promise<T>,
  outcomes: (result: T) => Iterable<WriteOutcome>,
): Promise<T> {
  let result: T;
  try {
    result = await write;
  } catch (error) {
    const refusal = refusalOf(error);
    if (refusal !== undefined) metrics.writes.inc({ outcome: refusal });
    throw error;
  }
  for (const outcome of outcomes(result)) metrics.writes.inc({ outcome });
  return result;
}

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Whether the Authorization header carries the token; compared in constant time (as digests of equal length). */
export function hasMetricsToken(header: string | undefined, token: string): boolean {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  return timingSafeEqual(digest(match?.[1] ?? ''), digest(token)) && match !== null;
}

/**
 * GET /metrics in the Prometheus text format, and the HTTP metrics of every request. Registered before
 * @fastify/swagger (it is no part of the API's document), outside the API's scope (no key, no rate
 * limit), and silent in the access log (a scrape every few seconds would drown it).
 */
export const metricsPlugin = fp<{ token?: string }>(
  async (app, options) => {
    const metrics = createMetrics(app);
    app.decorate('metrics', metrics);
    app.addHook('onResponse', (request, reply, done) => {
      metrics.answered(request, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });

    app.get('/metrics', { logLevel: 'silent' }, async (request, reply) => {
      if (options.token !== undefined && !hasMetricsToken(request.headers.authorization, options.token)) {
        return reply.code(401).header('www-authenticate', 'Bearer realm="metrics"').send({
          statusCode: 401,
          error: 'Unauthorized',
          code: ErrorCode.UNAUTHORIZED,
          message: 'A metrics token is needed',
        });
      }
      const text = await metrics.exposition();
      return reply.header('content-type', metrics.registry.contentType).header('cache-control', 'no-store').send(text);
    });
  },
  { name: 'metrics' },
);
