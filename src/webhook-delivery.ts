import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Agent } from 'undici';
import {
  claimDueMessages,
  completeAttempt,
  dispatchEndpoint,
  newEventId,
  pollState,
  purgeWebhookHistory,
  recordTestAttempt,
  type AttemptEffect,
  type ClaimedMessage,
} from './db/webhook-messages.js';
import { openSecret } from './webhook-secrets.js';
import { sendWebhook, webhookAgent, type SendResult } from './webhook-sender.js';

declare module 'fastify' {
  interface FastifyInstance {
    webhookDelivery: WebhookDelivery;
  }
}

export interface WebhookDeliveryOptions {
  /** WEBHOOK_DELIVERY: false, and this instance only makes test attempts. */
  deliver: boolean;
  /** How often the instance looks for changes to dispatch and messages due (FEED_POLL_INTERVAL). */
  pollIntervalMs: number;
  /** Attempts in flight per endpoint, across instances. */
  concurrency: number;
  timeoutMs: number;
  /** The delays before each retry, in ms. */
  retryScheduleMs: number[];
  disableAfterMs: number;
  /** WEBHOOK_RETENTION: finished events and delivery-log entries older than this are deleted. */
  retentionMs: number;
  allowPrivate: boolean;
  secretKey: Buffer | undefined;
  /** The instance's pool size (DB_POOL_MAX): deliveries take at most a quarter of it. */
  poolMax: number;
}

// A lease outlives its attempt by this much, so that recording the outcome (a statement under the
// pool's wait and statement timeouts) ends before another instance may take the message again.
const LEASE_MARGIN_MS = 5_000;
// Changes turned into messages per transaction of the dispatcher, and endpoints looked at per poll.
const DISPATCH_BATCH = 500;
const ENDPOINTS_PER_POLL = 100;
// The most attempts one instance keeps in flight, over all endpoints.
const MAX_IN_FLIGHT = 256;
// How often an instance deletes what is past WEBHOOK_RETENTION (or more often, for a shorter one),
// and how many rows of each table one statement deletes.
const PURGE_INTERVAL_MS = 10 * 60_000;
const PURGE_BATCH = 1_000;

/** The outcome of an attempt for its message and endpoint. */
export function effectOf(result: SendResult, attemptsBefore: number, retryScheduleMs: number[]): AttemptEffect {
  const code = result.statusCode;
  if (code !== null && code >= 200 && code < 300) return { next: 'delivered', pauseMs: null, gone: false };
  const gone = code === 410;
  // delays before each retry: the n-th failure waits the n-th delay; past the last, the event is given up
  const delay = retryScheduleMs[attemptsBefore];
  // jitter only adds, at most 10%, so that receivers that fail together are not retried together
  const next = gone || delay === undefined ? null : delay * (1 + Math.random() * 0.1);
  return { next, pauseMs: result.retryAfterMs, gone };
}

/** An attempt's outcome as the metrics count it: `failed` is retried later, `given_up` and `gone` are not. */
const attemptOutcome = (effect: AttemptEffect) =>
  effect.next === 'delivered' ? 'delivered' : effect.gone ? 'gone' : effect.next === null ? 'given_up' : 'failed';

/**
 * The delivery engine of one instance. One timer per instance, every poll interval: a read of the
 * active endpoints that are behind their org's feed (the dispatcher then makes their messages, one
 * transaction per endpoint and batch), and a claim of due messages, each sent in the background. A
 * finished attempt asks for the next poll at once, so a backlog drains at the receivers' pace. Every
 * piece of state lives in PostgreSQL: a killed instance leaves leases that expire.
 */
export class WebhookDelivery {
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private current: Promise<void> | undefined;
  /** When the last poll looked at the feed and the due messages. */
  private lookedAt = 0;
  private purgedAt = 0;
  private closed = true;
  private readonly inFlight = new Set<Promise<void>>();
  /** Attempts this instance has made since it started (tests excluded), for metrics and tests. */
  attempted = 0;
  // The delivery transactions (dispatch, claim, outcome) of this instance hold at most this many of
  // the pool's connections at once: a backlog must not take the connections the API's requests need.
  private dbSlots: number;
  private readonly dbWaiting: Array<() => void> = [];

  constructor(
    private readonly app: FastifyInstance,
    private readonly options: WebhookDeliveryOptions,
  ) {
    this.agent = webhookAgent({ allowPrivate: options.allowPrivate, timeoutMs: options.timeoutMs });
    this.dbSlots = Math.max(1, Math.floor(options.poolMax / 4));
  }

  /** Runs a delivery transaction once one of the engine's connections is free. */
  private async withDb<T>(fn: () => Promise<T>): Promise<T> {
    if (this.dbSlots > 0) this.dbSlots--;
    else await new Promise<void>((resolve) => this.dbWaiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.dbWaiting.shift();
      if (next) next();
      else this.dbSlots++;
    }
  }

  /** Attempts in flight on this instance now. */
  get inFlightCount() {
    return this.inFlight.size;
  }

  start() {
    this.closed = false;
    this.schedule(0);
  }

  /** Runs a poll as soon as the current one ends. */
  kick() {
    if (this.closed) return;
    if (this.running) this.again = true;
    else {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.schedule(0);
    }
  }

  private schedule(ms: number) {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.current = this.poll();
    }, ms);
  }

  private async poll() {
    this.timer = undefined;
    this.running = true;
    try {
      // a poll asked for by a finished attempt claims at once; the feed is looked at once an interval
      if (Date.now() - this.lookedAt >= this.options.pollIntervalMs) {
        this.lookedAt = Date.now();
        const state = await pollState(this.app.sql, ENDPOINTS_PER_POLL);
        const made = await this.dispatch(state.behind);
        if (state.due || made > 0) await this.claim();
      } else {
        await this.claim();
      }
      await this.purge();
    } catch (error) {
      // the database is away or busy: the next poll tries again, nothing is lost meanwhile
      this.app.log.debug({ err: error }, 'webhook delivery poll failed');
    } finally {
      this.running = false;
      const again = this.again;
      this.again = false;
      this.schedule(again ? 0 : this.options.pollIntervalMs);
    }
  }

  /** Makes the messages of the endpoints behind their feed; returns how many. */
  private async dispatch(behind: string[]): Promise<number> {
    let made = 0;
    for (const id of behind) {
      for (;;) {
        if (this.closed) return made;
        const step = await this.withDb(() => dispatchEndpoint(this.app.sql, id, DISPATCH_BATCH));
        made += step?.made ?? 0;
        if (!step?.more) break;
      }
    }
    return made;
  }

  /** Deletes what is past the retention, a batch at a time, once an interval. */
  private async purge() {
    if (Date.now() - this.purgedAt < Math.min(PURGE_INTERVAL_MS, this.options.retentionMs)) return;
    this.purgedAt = Date.now();
    while (!this.closed) {
      const deleted = await this.withDb(() => purgeWebhookHistory(this.app.sql, this.options.retentionMs, PURGE_BATCH));
      if (deleted < PURGE_BATCH) break;
    }
  }

  private async claim() {
    const room = MAX_IN_FLIGHT - this.inFlight.size;
    if (room <= 0 || this.closed) return;
    const claimed = await this.withDb(() =>
      claimDueMessages(this.app.sql, {
        concurrency: this.options.concurrency,
        leaseMs: this.options.timeoutMs + LEASE_MARGIN_MS,
        endpoints: Math.min(ENDPOINTS_PER_POLL, room),
        perEndpoint: Math.min(this.options.concurrency, room),
      }),
    );
    for (const message of claimed) {
      const attempt = this.attempt(message).finally(() => {
        this.inFlight.delete(attempt);
        this.kick();
      });
      this.inFlight.add(attempt);
    }
  }

  private secretsOf(e: { secret: string; previousSecret: string | null }): string[] {
    const secrets = [openSecret(e.secret, this.options.secretKey)];
    if (e.previousSecret !== null) secrets.push(openSecret(e.previousSecret, this.options.secretKey));
    return secrets;
  }

  private async attempt(message: ClaimedMessage) {
    this.attempted++;
    try {
      const result = await sendWebhook(this.agent, {
        url: message.url,
        eventId: message.eventId,
        body: message.body,
        secrets: this.secretsOf(message),
        timeoutMs: this.options.timeoutMs,
        allowPrivate: this.options.allowPrivate,
      });
      const effect = effectOf(result, message.attempts, this.options.retryScheduleMs);
      await this.withDb(() => completeAttempt(this.app.sql, message, result, effect, this.options.disableAfterMs));
      const { webhookAttempts, webhookDeliveryDelay } = this.app.metrics;
      webhookAttempts.inc({ outcome: attemptOutcome(effect) });
      // the database's clock made madeAt: a skew between the clocks is no negative delay
      if (effect.next === 'delivered')
        webhookDeliveryDelay.observe(Math.max(0, Date.now() - Date.parse(message.madeAt)) / 1000);
    } catch (error) {
      this.app.metrics.webhookAttempts.inc({ outcome: 'unrecorded' });
      // the outcome could not be recorded: the lease expires and the message is attempted again
      this.app.log.warn(
        { err: error, endpointId: message.endpointId, eventId: message.eventId },
        'webhook attempt not recorded',
      );
    }
  }

  /** One attempt now of a webhook.test event to the endpoint: logged, never retried, no change of state. */
  async test(endpoint: { id: string; url: string; secret: string; previousSecret: string | null }) {
    const eventId = newEventId();
    const eventType = 'webhook.test' as const;
    const body = JSON.stringify({
      type: eventType,
      timestamp: new Date().toISOString(),
      data: { endpointId: endpoint.id },
    });
    const result = await sendWebhook(this.agent, {
      url: endpoint.url,
      eventId,
      body,
      secrets: this.secretsOf(endpoint),
      timeoutMs: this.options.timeoutMs,
      allowPrivate: this.options.allowPrivate,
    });
    await recordTestAttempt(this.app.sql, { endpointId: endpoint.id, eventId, eventType, ...result });
    const success = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    return {
      eventId,
      eventType,
      // a system time, printed with six digits as the deliveries print it (the attempt's clock has milliseconds)
      attemptedAt: result.attemptedAt.replace(/Z$/, '000Z'),
      success,
      statusCode: result.statusCode,
      error: result.error,
      durationMs: result.durationMs,
    };
  }

  /** Stops polling and waits for the attempts in flight (each ends within the timeout). */
  async close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.current;
    await Promise.allSettled([...this.inFlight]);
    await this.agent.close();
  }
}

export const webhookDeliveryPlugin = fp<WebhookDeliveryOptions>(
  async (app, options) => {
    const delivery = new WebhookDelivery(app, options);
    app.decorate('webhookDelivery', delivery);
    if (options.deliver) app.addHook('onReady', async () => delivery.start());
    // before the pool ends (onClose): attempts in flight record their outcome
    app.addHook('preClose', async () => delivery.close());
  },
  { name: 'webhook-delivery', dependencies: ['database', 'metrics'] },
);
