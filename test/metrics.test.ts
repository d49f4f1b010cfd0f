import { Writable } from 'node:stream';
import parsePrometheusTextFormat, { type MetricFamily } from 'parse-prometheus-text-format';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEventStream } from '../scripts/lib/sse.js';
import { startReceiver, type Receiver } from '../scripts/lib/webhook-receiver.js';
import { buildApp } from '../src/app.js';
import { configWith, ConfigError, loadConfig } from '../src/config.js';
import { createTestDatabase } from './support/database.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';
import { createEndpoint } from './support/webhooks.js';

// GET /metrics read as Prometheus reads it (a real text-format parser), before and after requests.

let server: TestServer;
let receiver: Receiver;
beforeAll(async () => {
  server = await startTestServer({ webhookAllowPrivateUrls: true, webhookRetrySchedule: '100ms' });
  receiver = await startReceiver();
});
afterAll(async () => {
  await server.close();
  await receiver.close();
});

/**
 * The families of an exposition. The parser folds the samples of a histogram into one and drops their
 * labels, so each histogram's `_count`, `_sum` and `_bucket` series are also read as untyped families
 * of their own (the exposition once more without the histograms' HELP and TYPE lines).
 */
function parse(text: string): MetricFamily[] {
  const histograms = [...text.matchAll(/^# TYPE (\S+) histogram$/gm)].map((m) => m[1]!);
  const untyped = text
    .split('\n')
    .filter(
      (line) => !histograms.some((name) => line.startsWith(`# HELP ${name} `) || line === `# TYPE ${name} histogram`),
    )
    .join('\n');
  const series = parsePrometheusTextFormat(untyped).filter((f) => /_(count|sum|bucket)$/.test(f.name));
  return [...parsePrometheusTextFormat(text), ...series];
}

async function scrape(baseUrl = server.baseUrl): Promise<MetricFamily[]> {
  const res = await http<string>(baseUrl, 'GET', '/metrics');
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(res.body);
}

const family = (families: MetricFamily[], name: string) => {
  const found = families.find((f) => f.name === name);
  if (!found) throw new Error(`no metric ${name} in the exposition`);
  return found;
};

/** The sum of the samples of `name` whose labels include `labels`; 0 when there is none yet. */
function value(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  family(families, name); // declared, observed or not
  // a histogram's series, read as untyped families, come as one family per run of lines
  const samples = families
    .filter((f) => f.name === name)
    .flatMap((f) => f.metrics)
    .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return samples.reduce((sum, m) => sum + Number(m.value), 0);
}

/** A histogram's count over the series whose labels include `labels`; 0 when there is none yet. */
function histogramCount(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  family(families, name);
  return families.some((f) => f.name === `${name}_count`) ? value(families, `${name}_count`, labels) : 0;
}

const OUTCOMES = ['created', 'updated', 'unchanged', 'stale', 'deleted', 'overlap', 'precondition_failed'];

describe('GET /metrics', () => {
  it('counts every write by its outcome: single writes, batch items and deletes', async () => {
    const orgId = newOrg('metrics');
    const writes = (families: MetricFamily[]) =>
      Object.fromEntries(OUTCOMES.map((o) => [o, value(families, 'appointments_writes_total', { outcome: o })]));
    const before = writes(await scrape());

    const first = appointment('a', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 10:00');
    expect((await post(server.baseUrl, { ...first, orgId })).status).toBe(201);
    const newer = appointment('a', '2020-10-10 10:00', '2020-10-10 11:30', '2020-09-28 11:00');
    const updated = await post(server.baseUrl, { ...newer, orgId });
    expect(updated.body.status).toBe('updated');
    expect((await post(server.baseUrl, { ...newer, orgId })).body.status).toBe('unchanged');
    expect((await post(server.baseUrl, { ...first, orgId })).body.status).toBe('stale');
    const overlapping = appointment('b', '2020-10-10 11:00', '2020-10-10 12:00');
    expect((await post(server.baseUrl, { ...overlapping, orgId })).status).toBe(409);
    const ifMatch = { 'if-match': '"not-the-tag"' };
    expect((await http(server.baseUrl, 'POST', '/api/appointments', { ...newer, orgId }, ifMatch)).status).toBe(412);
    // a batch: one item created, one refused for an overlap
    const batch = await http(server.baseUrl, 'POST', '/api/appointments/batch', {
      appointments: [
        { ...appointment('c', '2020-10-11 10:00', '2020-10-11 11:00'), orgId },
        { ...appointment('d', '2020-10-11 10:30', '2020-10-11 11:30'), orgId },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.results.map((r: { status: string }) => r.status)).toEqual(['created', 'rejected']);
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/c?orgId=${orgId}`)).status).toBe(204);
    // nothing to delete: no write
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/c?orgId=${orgId}`)).status).toBe(404);

    const after = writes(await scrape());
    const moved = Object.fromEntries(OUTCOMES.map((o) => [o, after[o]! - before[o]!]));
    expect(moved).toEqual({
      created: 2,
      updated: 1,
      unchanged: 1,
      stale: 1,
      deleted: 1,
      overlap: 2,
      precondition_failed: 1,
    });
  });

  it('labels requests by route pattern, never by the raw URL; unmatched paths share one label', async () => {
    const orgId = newOrg('metrics-route');
    const id = 'raw-id-that-must-not-be-a-label';
    const before = await scrape();
    const route = { route: '/api/appointments/:id', method: 'GET', status_code: '404' };
    expect((await http(server.baseUrl, 'GET', `/api/appointments/${id}?orgId=${orgId}`)).status).toBe(404);
    expect((await http(server.baseUrl, 'GET', `/api/appointments/${id}x?orgId=${orgId}`)).status).toBe(404);
    expect((await http(server.baseUrl, 'GET', '/no-such-path/scanner-probe')).status).toBe(404);

    const res = await http<string>(server.baseUrl, 'GET', '/metrics');
    expect(res.body).not.toContain(id);
    expect(res.body).not.toContain('scanner-probe');
    const after = parse(res.body);
    expect(value(after, 'http_requests_total', route) - value(before, 'http_requests_total', route)).toBe(2);
    const unmatched = { route: '(unmatched)', method: 'GET', status_code: '404' };
    expect(value(after, 'http_requests_total', unmatched) - value(before, 'http_requests_total', unmatched)).toBe(1);
    // the histogram counts the same requests
    expect(
      histogramCount(after, 'http_request_duration_seconds', route) -
        histogramCount(before, 'http_request_duration_seconds', route),
    ).toBe(2);
    const created = { route: '/api/appointments', method: 'POST', status_code: '201' };
    expect(value(after, 'http_requests_total', created)).toBeGreaterThan(0);
  });

  it('shows the pool, the change feed and the process', async () => {
    const families = await scrape();
    expect(value(families, 'appointments_db_pool_size')).toBe(20);
    expect(value(families, 'appointments_db_pool_connections_idle')).toBeLessThanOrEqual(20);
    expect(value(families, 'appointments_db_pool_queries_waiting')).toBe(0);
    expect(histogramCount(families, 'appointments_db_pool_wait_seconds')).toBeGreaterThan(0);
    // collectDefaultMetrics
    expect(value(families, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(family(families, 'nodejs_eventloop_lag_seconds').type).toBe('GAUGE');
  });

  it('counts long-polls and event streams open, and the readers waiting', async () => {
    const orgId = newOrg('metrics-feed');
    const first = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`);
    expect(first.status).toBe(200);
    const poll = http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}&since=${first.body.next}&wait=3`);
    const stream = await openEventStream(`${server.baseUrl}/api/changes/stream?orgId=${orgId}`);
    expect(stream.status).toBe(200);
    let families = await scrape();
    for (let i = 0; i < 50 && value(families, 'appointments_feed_readers_waiting') < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      families = await scrape();
    }
    expect(value(families, 'appointments_feed_long_polls_open')).toBe(1);
    expect(value(families, 'appointments_feed_streams_open')).toBe(1);
    expect(value(families, 'appointments_feed_readers_waiting')).toBe(2);

    expect(
      (await post(server.baseUrl, { ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00'), orgId })).status,
    ).toBe(201);
    expect((await poll).body.changes).toHaveLength(1);
    stream.close();
    for (let i = 0; i < 50 && value(families, 'appointments_feed_streams_open') > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      families = await scrape();
    }
    expect(value(families, 'appointments_feed_long_polls_open')).toBe(0);
    expect(value(families, 'appointments_feed_streams_open')).toBe(0);
    // the stream, hijacked from Fastify, is counted when it ends; the long-poll as any request
    const stream200 = { route: '/api/changes/stream', method: 'GET', status_code: '200' };
    expect(value(families, 'http_requests_total', stream200)).toBe(1);
    expect(histogramCount(families, 'http_request_duration_seconds', stream200)).toBe(1);
    expect(value(families, 'http_requests_total', { route: '/api/changes', status_code: '200' })).toBe(2);
  });

  it("tells the age of the oldest open writing transaction, which holds the feed's horizon back", async () => {
    const held = server.sql.reserve();
    const connection = await held;
    try {
      await connection`BEGIN`;
      await connection`SELECT pg_current_xact_id()`;
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const age = value(await scrape(), 'appointments_feed_oldest_writing_transaction_age_seconds');
      expect(age).toBeGreaterThanOrEqual(1);
      expect(age).toBeLessThan(60);
    } finally {
      await connection`ROLLBACK`;
      connection.release();
    }
  });

  it('counts webhook attempts by outcome, the delivery delay, events pending and endpoints disabled', async () => {
    const orgId = newOrg('metrics-wh');
    const before = await scrape();
    let failFirst = true;
    receiver.respond = () => {
      const status = failFirst ? 500 : 204;
      failFirst = false;
      return { status };
    };
    const endpoint = await createEndpoint(server.sql, orgId, receiver.url);
    expect(
      (await post(server.baseUrl, { ...appointment('w', '2020-10-10 10:00', '2020-10-10 11:00'), orgId })).status,
    ).toBe(201);
    await receiver.waitFor((requests) => requests.some((r) => r.status === 204));
    const delivered = { outcome: 'delivered' };
    let after = await scrape();
    for (let i = 0; i < 100 && value(after, 'appointments_webhook_attempts_total', delivered) < 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await scrape();
    }
    const moved = (families: MetricFamily[], outcome: string) =>
      value(families, 'appointments_webhook_attempts_total', { outcome }) -
      (family(before, 'appointments_webhook_attempts_total').metrics.length === 0
        ? 0
        : value(before, 'appointments_webhook_attempts_total', { outcome }));
    expect(moved(after, 'failed')).toBe(1);
    expect(moved(after, 'delivered')).toBe(1);
    expect(histogramCount(after, 'appointments_webhook_delivery_delay_seconds')).toBe(1);
    expect(value(after, 'appointments_webhook_events_pending')).toBe(0);

    const disabledBefore = value(after, 'appointments_webhook_endpoints_disabled');
    await server.sql`UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'failing', disabled_at = now()
                     WHERE id = ${endpoint.id}`;
    expect(value(await scrape(), 'appointments_webhook_endpoints_disabled')).toBe(disabledBefore + 1);
  });

  it('is not in the OpenAPI document', async () => {
    const res = await http(server.baseUrl, 'GET', '/api/docs/json');
    expect(res.status).toBe(200);
    expect(Object.keys(res.body.paths)).not.toContain('/metrics');
    expect(Object.keys(res.body.paths)).toContain('/health');
  });
});

describe('METRICS_TOKEN', () => {
  const TOKEN = 'metrics-token-0123456789';
  const lines: string[] = [];
  let baseUrl: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const app = await buildApp({
      ...configWith({ metricsToken: TOKEN, rateLimitMax: 2, rateLimitWindowSeconds: 60 }),
      databaseUrl: await createTestDatabase(),
      logger: pino({ level: 'info' }, sink),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    close = () => app.close();
  });
  afterAll(() => close());

  it('needs `Authorization: Bearer <token>` when set: 401 otherwise', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: TOKEN }] as Record<
      string,
      string
    >[]) {
      const res = await http(baseUrl, 'GET', '/metrics', undefined, headers);
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(String(res.body)).not.toContain('http_requests_total');
    }
    const res = await http<string>(baseUrl, 'GET', '/metrics', undefined, { authorization: `Bearer ${TOKEN}` });
    expect(res.status).toBe(200);
    expect(parsePrometheusTextFormat(res.body).map((f) => f.name)).toContain('http_requests_total');
  });

  it('is never rate-limited and never in the access log', async () => {
    const authorization = `Bearer ${TOKEN}`;
    for (let i = 0; i < 5; i++) {
      const res = await http(baseUrl, 'GET', '/metrics', undefined, { authorization });
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
    // the API's limit of 2 holds meanwhile
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await http(baseUrl, 'GET', '/api/appointments')).status);
    expect(statuses).toEqual([200, 200, 429]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const completed = lines.map((line) => JSON.parse(line)).filter((l) => l.msg === 'request completed');
    expect(completed.some((l) => l.req.url === '/api/appointments')).toBe(true);
    expect(completed.filter((l) => String(l.req.url).startsWith('/metrics'))).toEqual([]);
  });

  it('is at least 16 characters, and never shown in a message', () => {
    const secret = 'short-secret';
    let message = '';
    try {
      loadConfig({ METRICS_TOKEN: secret });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      message = (error as Error).message;
    }
    expect(message).toContain('METRICS_TOKEN="***"');
    expect(message).not.toContain(secret);
    expect(loadConfig({ METRICS_TOKEN: TOKEN }).metricsToken).toBe(TOKEN);
  });
});
