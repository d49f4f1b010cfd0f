import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { purgeWebhookHistory } from '../src/db/webhook-messages.js';
import { newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';
import { createEndpoint } from './support/webhooks.js';

// WEBHOOK_RETENTION: finished events and the delivery log are deleted once older than it, except the
// given-up events of a disabled endpoint, which enable may start again.

let server: TestServer;
beforeAll(async () => {
  // a retention this short makes every instance purge about once a second
  server = await startTestServer({ webhookAllowPrivateUrls: true, webhookRetention: '1s' });
});
afterAll(() => server.close());

type State = 'pending' | 'delivered' | 'failed';

async function insertMessage(endpointId: string, seq: number, state: State, age: string, on = server) {
  await on.sql`
    INSERT INTO webhook_messages (endpoint_id, event_id, event_type, body, feed_xid, feed_seq, state, attempts,
                                  next_attempt_at, made_at)
    VALUES (${endpointId}, ${`msg_ret${seq}_${endpointId.slice(0, 8)}`}, 'appointment.created', '{}', '1', ${seq},
            ${state}, 1, ${state === 'pending' ? '2999-01-01 00:00+00' : null}, now() - ${age}::interval)`;
}

async function insertAttempt(endpointId: string, seq: number, age: string, on = server) {
  await on.sql`
    INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, status_code, duration_ms)
    VALUES (${endpointId}, ${`msg_ret${seq}_${endpointId.slice(0, 8)}`}, 'appointment.created', 1,
            now() - ${age}::interval, 500, 3)`;
}

const messagesOf = async (endpointId: string) =>
  (
    await server.sql<{ seq: string; state: string }[]>`
      SELECT feed_seq::text AS seq, state FROM webhook_messages WHERE endpoint_id = ${endpointId} ORDER BY feed_seq`
  ).map((m) => `${m.seq}:${m.state}`);

const attemptsOf = async (endpointId: string) =>
  (await server.sql`SELECT 1 FROM webhook_attempts WHERE endpoint_id = ${endpointId}`).length;

describe('webhook retention', () => {
  it('the engine deletes old finished events and log entries, and keeps pending ones and a disabled endpoint’s', async () => {
    const orgId = newOrg('whret');
    const active = await createEndpoint(server.sql, orgId, 'http://127.0.0.1:9/active');
    const disabled = await createEndpoint(server.sql, orgId, 'http://127.0.0.1:9/disabled');
    await server.sql`
      UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'failing', disabled_at = now()
      WHERE id = ${disabled.id}`;
    await insertMessage(active.id, 1, 'delivered', '1 hour');
    await insertMessage(active.id, 2, 'failed', '1 hour');
    await insertMessage(active.id, 3, 'pending', '1 hour');
    await insertMessage(disabled.id, 1, 'failed', '1 hour');
    await insertMessage(disabled.id, 2, 'delivered', '1 hour');
    await insertAttempt(active.id, 1, '1 hour');
    await insertAttempt(disabled.id, 1, '1 hour');

    // the purge deletes each kind of row in statements of its own: wait until everything it should
    // delete is gone, then look at what is left
    const deadline = Date.now() + 15_000;
    const purged = async () =>
      (await messagesOf(active.id)).length === 1 &&
      (await messagesOf(disabled.id)).length === 1 &&
      (await attemptsOf(active.id)) + (await attemptsOf(disabled.id)) === 0;
    while (!(await purged()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await messagesOf(active.id)).toEqual(['3:pending']);
    expect(await messagesOf(disabled.id)).toEqual(['1:failed']);
    expect(await attemptsOf(active.id)).toBe(0);
    expect(await attemptsOf(disabled.id)).toBe(0);
  });

  it('deletes only what is older than the retention, at most a batch of each table a statement', async () => {
    // an instance that delivers nothing (and so purges nothing): the purge runs only when called here
    const quiet = await startTestServer({ webhookDelivery: false });
    try {
      const endpoint = await createEndpoint(quiet.sql, newOrg('whret'), 'http://127.0.0.1:9/batch');
      for (const [seq, age] of [
        [1, '3 hours'],
        [2, '2 hours'],
        [3, '1 minute'],
      ] as const) {
        await insertMessage(endpoint.id, seq, 'delivered', age, quiet);
        await insertAttempt(endpoint.id, seq, age, quiet);
      }
      const purge = () => purgeWebhookHistory(quiet.sql, 3_600_000, 1);
      // one message and one log entry per statement, the older than an hour only
      expect([await purge(), await purge(), await purge()]).toEqual([2, 2, 0]);
      const left = await quiet.sql<{ messages: number; attempts: number }[]>`
        SELECT (SELECT count(*)::int FROM webhook_messages WHERE endpoint_id = ${endpoint.id}) AS messages,
               (SELECT count(*)::int FROM webhook_attempts WHERE endpoint_id = ${endpoint.id}) AS attempts`;
      expect(left).toEqual([{ messages: 1, attempts: 1 }]);
    } finally {
      await quiet.close();
    }
  });
});
