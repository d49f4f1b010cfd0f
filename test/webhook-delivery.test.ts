import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReceiver, verifies, type Receiver } from '../scripts/lib/webhook-receiver.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';
import { createEndpoint } from './support/webhooks.js';

// Webhook delivery against a real receiver on 127.0.0.1: what arrives (signed, once per event, the
// feed's change as the body), retries, timeouts, refused connections, Retry-After, 410, redirects.

let server: TestServer;
const receivers: Receiver[] = [];
beforeAll(async () => {
  server = await startTestServer({
    webhookAllowPrivateUrls: true,
    webhookRetrySchedule: '100ms,100ms,100ms',
    webhookTimeoutMs: 1_000,
  });
});
afterAll(async () => {
  await server.close();
  await Promise.all(receivers.map((r) => r.close()));
});

async function receiver() {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

const deliveries = (orgId: string, id: string, query = '') =>
  http(server.baseUrl, 'GET', `/api/webhooks/${id}/deliveries?orgId=${orgId}${query}`);

const endpointRow = async (id: string) =>
  (
    await server.sql`SELECT state, disabled_reason, failing_since, paused_until FROM webhook_endpoints WHERE id = ${id}`
  )[0]!;

describe('webhook delivery', () => {
  it('delivers every change after the endpoint was made, signed, as the feed gives it, with the event types of the write answers', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    // a write answered before the endpoint exists never arrives
    expect(
      (await post(server.baseUrl, { ...appointment('before', '2020-10-10 08:00', '2020-10-10 08:30'), orgId })).status,
    ).toBe(201);
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    const created = await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    expect(created.status).toBe(201);
    const updated = await post(server.baseUrl, {
      ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:45', '2020-09-29 10:00'),
      orgId,
    });
    expect(updated.body.status).toBe('updated');
    expect(
      (
        await post(server.baseUrl, {
          ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:45', '2020-09-29 10:00'),
          orgId,
        })
      ).body.status,
    ).toBe('unchanged');
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/a?orgId=${orgId}`)).status).toBe(204);
    const recreated = await post(server.baseUrl, {
      ...appointment('a', '2020-10-10 11:00', '2020-10-10 11:30', '2020-09-30 10:00'),
      orgId,
    });
    expect(recreated.status).toBe(201);
    expect(recreated.body.appointment.version).toBe(3);

    await r.waitFor((requests) => requests.length >= 4);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.requests).toHaveLength(4);
    const bodies = r.requests.map((q) => JSON.parse(q.body));
    // no order is promised; the first attempts of one endpoint happen to be sent in feed order here
    const byVersion = [...bodies].sort((x, y) => x.data.version - y.data.version || (x.type < y.type ? -1 : 1));
    expect(byVersion.map((b) => [b.type, b.data.type, b.data.id, b.data.version])).toEqual([
      ['appointment.created', 'upsert', 'a', 1],
      ['appointment.deleted', 'delete', 'a', 2],
      ['appointment.updated', 'upsert', 'a', 2],
      ['appointment.created', 'upsert', 'a', 3],
    ]);
    for (const b of bodies) expect(b.timestamp).toBe(b.data.recordedAt);
    expect(byVersion[0].data.appointment).toEqual(created.body.appointment);
    expect(byVersion[3].data.appointment).toEqual(recreated.body.appointment);

    for (const q of r.requests) {
      expect(verifies(endpoint.secret, q), 'verified by standardwebhooks').toBe(true);
      expect(q.id).toMatch(/^msg_[0-9a-f]{32}$/);
      expect(q.headers['content-type']).toBe('application/json');
      expect(q.headers['user-agent']).toMatch(/appointments-service/);
      expect(Math.abs(Number(q.timestamp) - Date.now() / 1000)).toBeLessThan(30);
    }
    expect(new Set(r.requests.map((q) => q.id)).size).toBe(4);
    expect(bodies.some((b) => b.data.id === 'before')).toBe(false);

    const log = await deliveries(orgId, endpoint.id);
    expect(log.status).toBe(200);
    expect(log.body).toHaveLength(4);
    for (const entry of log.body)
      expect(entry).toMatchObject({ attempt: 1, statusCode: 204, error: null, nextAttemptAt: null });
    expect(new Set(log.body.map((e: { eventId: string }) => e.eventId))).toEqual(new Set(r.requests.map((q) => q.id)));
    const times = log.body.map((e: { attemptedAt: string }) => e.attemptedAt);
    expect([...times].sort().reverse()).toEqual(times);
  });

  it('skips a write answered before the create also while an older transaction holds the horizon back', async () => {
    const orgId = newOrg('whsnap');
    const r = await receiver();
    // an open transaction with an id older than the writes below: the feed's horizon stays behind it,
    // so the write answered before the create lies past the position the endpoint starts from
    const holder = await server.sql.reserve();
    try {
      await holder`BEGIN`;
      await holder`SELECT pg_current_xact_id()`;
      const before = await post(server.baseUrl, {
        ...appointment('before', '2020-10-10 08:00', '2020-10-10 08:30'),
        orgId,
      });
      expect(before.status).toBe(201);
      const created = await http(server.baseUrl, 'POST', '/api/webhooks', { url: r.url, orgId });
      expect(created.status).toBe(201);
      const after = await post(server.baseUrl, {
        ...appointment('after', '2020-10-10 09:00', '2020-10-10 09:30'),
        orgId,
      });
      expect(after.status).toBe(201);
      const [stored] = await server.sql<{ behind: boolean }[]>`
        SELECT feed_xid < (SELECT feed_xid FROM appointments WHERE org_id = ${orgId} AND id = 'before') AS behind
        FROM webhook_endpoints WHERE id = ${created.body.id}`;
      expect(stored!.behind).toBe(true);
    } finally {
      await holder`COMMIT`;
      holder.release();
    }
    await r.waitFor((requests) => requests.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.requests.map((q) => JSON.parse(q.body).data.id)).toEqual(['after']);
  });

  it('the body of a delivery equals the change the feed serves for it', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    await createEndpoint(server.sql, orgId, r.url);
    const start = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`);
    await post(server.baseUrl, { ...appointment('x', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/x?orgId=${orgId}`)).status).toBe(204);
    await r.waitFor((requests) => requests.length >= 2);
    const feed = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}&since=${start.body.next}`);
    const sent = r.requests.map((q) => JSON.parse(q.body).data);
    expect(sent.sort((a, b) => (a.type < b.type ? 1 : -1))).toEqual(feed.body.changes);
  });

  it('retries a receiver that fails with 500 after the schedule, with the same webhook-id and body, until it answers 2xx', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = (_q, n) => ({ status: n <= 2 ? 500 : 200 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 3);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.requests).toHaveLength(3);
    expect(new Set(r.requests.map((q) => q.id)).size).toBe(1);
    expect(new Set(r.requests.map((q) => q.body)).size).toBe(1);
    for (const q of r.requests) expect(verifies(endpoint.secret, q)).toBe(true);
    // the schedule's delay (100 ms, jitter only adds) separates the attempts
    for (let i = 1; i < 3; i++)
      expect(r.requests[i]!.receivedAt - r.requests[i - 1]!.answeredAt!).toBeGreaterThanOrEqual(95);
    const log = (await deliveries(orgId, endpoint.id)).body;
    expect(log.map((e: any) => [e.attempt, e.statusCode, e.error])).toEqual([
      [3, 200, null],
      [2, 500, null],
      [1, 500, null],
    ]);
    expect(log[0].nextAttemptAt).toBeNull();
    expect(log[1].nextAttemptAt).not.toBeNull();
    expect(await endpointRow(endpoint.id)).toMatchObject({ state: 'active', failing_since: null });
  });

  it('gives an event up after the last retry', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = () => ({ status: 500 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 4);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // 100ms,100ms,100ms: three retries, four attempts
    expect(r.requests).toHaveLength(4);
    const log = (await deliveries(orgId, endpoint.id)).body;
    expect(log[0]).toMatchObject({ attempt: 4, statusCode: 500, nextAttemptAt: null });
    const [message] =
      await server.sql`SELECT state, attempts, next_attempt_at FROM webhook_messages WHERE endpoint_id = ${endpoint.id}`;
    expect(message).toMatchObject({ state: 'failed', attempts: 4, next_attempt_at: null });
    expect((await endpointRow(endpoint.id)).failing_since).not.toBeNull();
  });

  it('records a timeout, a refused connection and a redirect as failed attempts, and follows no redirect', async () => {
    const orgId = newOrg('wh');
    const slow = await receiver();
    slow.respond = () => ({ status: 200, delayMs: 2_000 });
    const target = await receiver();
    const redirect = await receiver();
    redirect.respond = () => ({ status: 302, headers: { location: target.url } });
    const closed = await receiver();
    const closedUrl = closed.url;
    await closed.close();
    receivers.splice(receivers.indexOf(closed), 1);
    const timeouts = await createEndpoint(server.sql, orgId, slow.url);
    const refused = await createEndpoint(server.sql, orgId, closedUrl);
    const redirected = await createEndpoint(server.sql, orgId, redirect.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });

    const firstAttempt = async (id: string) => {
      for (let i = 0; i < 300; i++) {
        const log = (await deliveries(orgId, id)).body;
        const first = log.find((e: any) => e.attempt === 1);
        if (first) return first;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('no attempt logged');
    };
    const t = await firstAttempt(timeouts.id);
    expect(t).toMatchObject({ statusCode: null, error: 'timeout' });
    expect(t.durationMs).toBeGreaterThanOrEqual(950);
    expect(t.durationMs).toBeLessThan(1_900);
    expect(await firstAttempt(refused.id)).toMatchObject({ statusCode: null, error: 'connection refused' });
    expect(await firstAttempt(redirected.id)).toMatchObject({ statusCode: 302, error: null });
    expect(redirect.requests.length).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(target.requests).toHaveLength(0);
  });

  it('holds an endpoint for Retry-After of a 429, and the event waits the later of it and the schedule', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = (_q, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const row = await endpointRow(endpoint.id);
    expect(row.paused_until).not.toBeNull();
    // another event made during the pause waits for it too
    await post(server.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 11:30'), orgId });
    await r.waitFor((requests) => requests.length >= 3, 5_000);
    const first = r.requests[0]!;
    for (const later of r.requests.slice(1)) expect(later.receivedAt - first.answeredAt!).toBeGreaterThanOrEqual(950);
    const log = (await deliveries(orgId, endpoint.id)).body;
    const retried = log.find((e: any) => e.statusCode === 429);
    expect(Date.parse(retried.nextAttemptAt) - Date.parse(retried.attemptedAt)).toBeGreaterThanOrEqual(990);
  });

  it('a 410 disables the endpoint at once (gone) and fails the event; nothing more is attempted', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = () => ({ status: 410 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await endpointRow(endpoint.id)).toMatchObject({ state: 'disabled', disabled_reason: 'gone' });
    await post(server.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 11:30'), orgId });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(r.requests).toHaveLength(1);
    const messages =
      await server.sql`SELECT state, next_attempt_at FROM webhook_messages WHERE endpoint_id = ${endpoint.id}`;
    // the disabled endpoint keeps its place in the feed: no message made for b yet
    expect(messages).toEqual([{ state: 'failed', next_attempt_at: null }]);
  });

  it('enabled again after a 410, delivers the event that got the 410 and what came after', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = (_request, n) => (r.requests.length === 1 && n === 1 ? { status: 410 } : { status: 204 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 1);
    for (let i = 0; i < 100 && (await endpointRow(endpoint.id)).state === 'active'; i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await endpointRow(endpoint.id)).toMatchObject({ state: 'disabled', disabled_reason: 'gone' });
    await post(server.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 11:30'), orgId });
    // the event of the 410 began this spell of failures: it is attempted again, as the enable promises
    const enabled = await http(server.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/enable?orgId=${orgId}`);
    expect(enabled.status).toBe(200);
    await r.waitFor((requests) => requests.length >= 3, 5_000);
    const ids = (q: { body: string }) => (JSON.parse(q.body) as { data: { id: string } }).data.id;
    // after the enable both are due at once, and up to WEBHOOK_CONCURRENCY attempts run together
    expect(ids(r.requests[0]!)).toBe('a');
    expect(r.requests.slice(1).map(ids).sort()).toEqual(['a', 'b']);
    const again = r.requests.slice(1).find((q) => ids(q) === 'a')!;
    expect(again.id).toBe(r.requests[0]!.id);
  });

  it('disables an endpoint whose attempts have all failed for WEBHOOK_DISABLE_AFTER (failing)', async () => {
    const other = await startTestServer({
      webhookAllowPrivateUrls: true,
      webhookRetrySchedule: '100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms',
      webhookDisableAfter: '400ms',
    });
    try {
      const orgId = newOrg('wh');
      const r = await receiver();
      r.respond = () => ({ status: 500 });
      const endpoint = await createEndpoint(other.sql, orgId, r.url);
      await post(other.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
      await r.waitFor((requests) => requests.length >= 1);
      const firstAt = r.requests[0]!.receivedAt;
      for (
        let i = 0;
        i < 200 &&
        (await other.sql`SELECT state FROM webhook_endpoints WHERE id = ${endpoint.id}`)[0]!.state === 'active';
        i++
      )
        await new Promise((resolve) => setTimeout(resolve, 20));
      const [row] = await other.sql`SELECT state, disabled_reason FROM webhook_endpoints WHERE id = ${endpoint.id}`;
      expect(row).toEqual({ state: 'disabled', disabled_reason: 'failing' });
      const last = r.requests.at(-1)!;
      expect(last.receivedAt - firstAt).toBeGreaterThanOrEqual(400);
      const count = r.requests.length;
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(r.requests).toHaveLength(count);
    } finally {
      await other.close();
    }
  });

  it('after restart_change_feed (a restored database), endpoints resume with the changes made from then on', async () => {
    const restored = await startTestServer({ webhookAllowPrivateUrls: true });
    try {
      const orgId = newOrg('wh');
      const r = await receiver();
      await createEndpoint(restored.sql, orgId, r.url);
      await post(restored.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
      await r.waitFor((requests) => requests.length >= 1);
      // a logical restore starts the transaction ids again lower than the positions stored: as if
      // the endpoint had been made and moved on at transaction ids far above the database's
      await restored.sql`
        UPDATE webhook_endpoints SET feed_xid = '100000000', created_snapshot = '100000000:100000000:'`;
      await restored.sql`SELECT restart_change_feed()`;
      await post(restored.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 11:30'), orgId });
      await r.waitFor((requests) => requests.length >= 2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(r.requests.map((q) => JSON.parse(q.body).data.id)).toEqual(['a', 'b']);
    } finally {
      await restored.close();
    }
  });

  it('signs with both secrets during a rotation’s overlap, then with the new one only', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    const old = await createEndpoint(server.sql, orgId, r.url);
    const fresh = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    await server.sql`
      UPDATE webhook_endpoints SET previous_secret = secret, secret = ${'plain:' + fresh},
             previous_secret_until = now() + interval '1 hour' WHERE id = ${old.id}`;
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 10:30'), orgId });
    await r.waitFor((requests) => requests.length >= 1);
    const during = r.requests[0]!;
    expect(during.signature.split(' ')).toHaveLength(2);
    expect(verifies(fresh, during)).toBe(true);
    expect(verifies(old.secret, during)).toBe(true);
    await server.sql`UPDATE webhook_endpoints SET previous_secret_until = now() - interval '1 second' WHERE id = ${old.id}`;
    await post(server.baseUrl, { ...appointment('b', '2020-10-10 11:00', '2020-10-10 11:30'), orgId });
    await r.waitFor((requests) => requests.length >= 2);
    const after = r.requests[1]!;
    expect(after.signature.split(' ')).toHaveLength(1);
    expect(verifies(fresh, after)).toBe(true);
    expect(verifies(old.secret, after)).toBe(false);
  });

  it('keeps at most WEBHOOK_CONCURRENCY attempts in flight per endpoint, and a slow receiver holds up no other endpoint', async () => {
    const other = await startTestServer({ webhookAllowPrivateUrls: true, webhookConcurrency: 2 });
    try {
      const orgId = newOrg('wh');
      const slow = await receiver();
      slow.respond = () => ({ status: 200, delayMs: 300 });
      const fast = await receiver();
      await createEndpoint(other.sql, orgId, slow.url);
      await createEndpoint(other.sql, orgId, fast.url);
      const started = Date.now();
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          post(other.baseUrl, { ...appointment(`c${i}`, `2020-10-10 ${10 + i}:00`, `2020-10-10 ${10 + i}:30`), orgId }),
        ),
      );
      await fast.waitFor((requests) => requests.length >= 10, 5_000);
      const fastDone = Date.now() - started;
      await slow.waitFor((requests) => requests.filter((q) => q.answeredAt).length >= 10, 10_000);
      expect(slow.maxInFlight).toBe(2);
      // ten attempts two at a time at 300 ms each: at least 1.5 s; the fast endpoint did not wait for them
      expect(slow.requests.at(-1)!.answeredAt! - started).toBeGreaterThanOrEqual(1_500);
      expect(fastDone).toBeLessThan(1_400);
    } finally {
      await other.close();
    }
  });
});

describe('POST /api/webhooks/{id}/test and GET /api/webhooks/{id}/deliveries', () => {
  it('sends one signed webhook.test attempt, answers its outcome, logs it, and changes nothing', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    r.respond = () => ({ status: 500 });
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    const answer = await http(server.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/test?orgId=${orgId}`);
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ eventType: 'webhook.test', success: false, statusCode: 500, error: null });
    expect(answer.body.eventId).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(answer.body.durationMs).toBeGreaterThanOrEqual(0);
    expect(r.requests).toHaveLength(1);
    const q = r.requests[0]!;
    expect(verifies(endpoint.secret, q)).toBe(true);
    expect(q.id).toBe(answer.body.eventId);
    const body = JSON.parse(q.body);
    expect(body).toEqual({ type: 'webhook.test', timestamp: body.timestamp, data: { endpointId: endpoint.id } });
    expect(Number.isNaN(Date.parse(body.timestamp))).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(r.requests).toHaveLength(1); // never retried
    expect(await endpointRow(endpoint.id)).toMatchObject({ state: 'active', failing_since: null });
    const log = (await deliveries(orgId, endpoint.id)).body;
    expect(log).toEqual([
      {
        eventId: answer.body.eventId,
        eventType: 'webhook.test',
        attempt: 1,
        attemptedAt: answer.body.attemptedAt,
        statusCode: 500,
        error: null,
        durationMs: answer.body.durationMs,
        nextAttemptAt: null,
      },
    ]);

    // also to a disabled endpoint; a success says so
    await server.sql`UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'gone' WHERE id = ${endpoint.id}`;
    r.respond = () => ({ status: 200 });
    const again = await http(server.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/test?orgId=${orgId}`);
    expect(again.body).toMatchObject({ success: true, statusCode: 200, error: null });
    expect(await endpointRow(endpoint.id)).toMatchObject({ state: 'disabled', disabled_reason: 'gone' });
  });

  it('answers an attempt that got no answer with its error', async () => {
    const orgId = newOrg('wh');
    const closed = await startReceiver();
    const url = closed.url;
    await closed.close();
    const endpoint = await createEndpoint(server.sql, orgId, url);
    const answer = await http(server.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/test?orgId=${orgId}`);
    expect(answer.body).toMatchObject({ success: false, statusCode: null, error: 'connection refused' });
  });

  it('without WEBHOOK_ALLOW_PRIVATE_URLS, refuses to connect to a private address, given as a name or as an address', async () => {
    const strict = await startTestServer({ webhookAllowPrivateUrls: false });
    try {
      const orgId = newOrg('wh');
      const r = await receiver();
      const port = new URL(r.url).port;
      for (const url of [r.url, `http://localhost:${port}/hook`, `http://[::1]:${port}/hook`]) {
        const endpoint = await createEndpoint(strict.sql, orgId, url);
        const answer = await http(strict.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/test?orgId=${orgId}`);
        expect(answer.body, url).toMatchObject({ success: false, statusCode: null, error: 'address not allowed' });
      }
      expect(r.requests).toHaveLength(0);
    } finally {
      await strict.close();
    }
  });

  it('is 404 for another org’s endpoint, an unknown id and a malformed one', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    for (const path of [
      `/api/webhooks/${endpoint.id}/test?orgId=someone-else`,
      `/api/webhooks/00000000-0000-4000-8000-000000000000/test?orgId=${orgId}`,
      `/api/webhooks/not-a-uuid/test?orgId=${orgId}`,
    ]) {
      const answer = await http(server.baseUrl, 'POST', path);
      expect(answer.status, path).toBe(404);
      expect(answer.body.code).toBe('NOT_FOUND');
    }
    // outside the id rule, as for every webhook route and the appointments
    const tooLong = await http(server.baseUrl, 'POST', `/api/webhooks/${'a'.repeat(300)}/test?orgId=${orgId}`);
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.code).toBe('VALIDATION_ERROR');
    for (const path of [
      `/api/webhooks/${endpoint.id}/deliveries?orgId=someone-else`,
      `/api/webhooks/00000000-0000-4000-8000-000000000000/deliveries?orgId=${orgId}`,
      `/api/webhooks/not-a-uuid/deliveries?orgId=${orgId}`,
    ]) {
      const answer = await http(server.baseUrl, 'GET', path);
      expect(answer.status, path).toBe(404);
    }
    expect(r.requests).toHaveLength(0);
  });

  it('pages the deliveries newest first with Link rel="next", and checks limit and cursor', async () => {
    const orgId = newOrg('wh');
    const r = await receiver();
    const endpoint = await createEndpoint(server.sql, orgId, r.url);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await http(server.baseUrl, 'POST', `/api/webhooks/${endpoint.id}/test?orgId=${orgId}`)).body.eventId);
    const seen: string[] = [];
    let path: string | undefined = `/api/webhooks/${endpoint.id}/deliveries?orgId=${orgId}&limit=2`;
    let pages = 0;
    while (path) {
      const page = await http(server.baseUrl, 'GET', path);
      expect(page.status).toBe(200);
      seen.push(...page.body.map((e: { eventId: string }) => e.eventId));
      pages++;
      const link = page.headers.link as string | undefined;
      path = link === undefined ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)![1];
    }
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());
    for (const query of ['limit=0', 'limit=1001', 'limit=1.5', 'cursor=!!', 'cursor=WyJ4Il0'])
      expect((await deliveries(orgId, endpoint.id, `&${query}`)).status, query).toBe(400);
  });
});
