import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { generateApiKey } from '../src/auth.js';
import { configWith, type Config } from '../src/config.js';
import { insertApiKey } from '../src/db/api-keys.js';
import { openSecret, parseSecretKey } from '../src/webhook-secrets.js';
import { createTestDatabase } from './support/database.js';
import { newOrg } from './support/fixtures.js';
import { http, raw } from './support/http.js';

// The endpoints API of webhooks (issue 14) over real HTTP against a real PostgreSQL: create, list, read,
// delete, enable, rotate-secret; URL validation, the limit per org, the API keys' orgs, and secrets
// that are stored sealed and shown only in the answers of create and rotate.

const KEY_TEXT = randomBytes(32).toString('base64');
const KEY = parseSecretKey(KEY_TEXT)!;
const SECRET_FORM = /^whsec_[A-Za-z0-9+/]{43}=$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Server {
  baseUrl: string;
  sql: Sql;
  /** Every log line the service wrote, as text. */
  logs: string[];
  close(): Promise<void>;
}

/** The app on a real port against a database of its own, logging everything (trace) into `logs`. */
async function startServer(options: Partial<Config>): Promise<Server> {
  const databaseUrl = await createTestDatabase();
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const app = await buildApp({
    ...configWith({ dbPoolMax: 20, ...options }),
    databaseUrl,
    logger: pino({ level: 'trace' }, sink),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const sql = postgres(databaseUrl, { max: 4, onnotice: () => {} });
  return {
    baseUrl: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`,
    sql,
    logs,
    async close() {
      await app.close();
      await sql.end();
    },
  };
}

const storedOf = async (sql: Sql, id: string) => {
  const [row] = await sql<{ secret: string; previous: string | null; overlapSeconds: number | null }[]>`
    SELECT secret, previous_secret AS previous,
           extract(epoch FROM previous_secret_until - clock_timestamp())::float8 AS "overlapSeconds"
    FROM webhook_endpoints WHERE id = ${id}`;
  return row!;
};

describe('webhook endpoints', () => {
  let server: Server;
  const hook = (name: string) => `http://127.0.0.1:9/${name}`;
  const create = (body: unknown) => http(server.baseUrl, 'POST', '/api/webhooks', body);

  beforeAll(async () => {
    // no deliveries: the tests set the messages' states by hand and read them back
    server = await startServer({
      webhookDelivery: false,
      webhookAllowPrivateUrls: true,
      webhookSecretKey: KEY_TEXT,
      webhookSecretOverlap: '90s',
    });
  });
  afterAll(() => server.close());

  it('are created with a secret shown once, sealed in the database, and a Location to read them at', async () => {
    const orgId = newOrg();
    const res = await create({ url: hook('a'), description: 'billing', orgId });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: expect.stringMatching(UUID),
      orgId,
      url: hook('a'),
      description: 'billing',
      state: 'active',
      disabledReason: null,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/),
      secret: expect.stringMatching(SECRET_FORM),
    });
    expect(res.headers.location).toBe(`/api/webhooks/${res.body.id}?orgId=${orgId}`);

    const stored = await storedOf(server.sql, res.body.id);
    expect(stored.secret).toMatch(/^aes-256-gcm:/);
    expect(stored.secret).not.toContain(res.body.secret);
    expect(stored.secret).not.toContain(res.body.secret.slice('whsec_'.length));
    expect(openSecret(stored.secret, KEY)).toBe(res.body.secret);
    expect(stored.previous).toBeNull();

    const { secret: _secret, ...endpoint } = res.body;
    const read = await http(server.baseUrl, 'GET', res.headers.location as string);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(endpoint);
    expect(read.text).not.toContain('whsec_');
    const list = await http(server.baseUrl, 'GET', `/api/webhooks?orgId=${orgId}`);
    expect(list.body).toEqual([endpoint]);
    expect(list.text).not.toContain('whsec_');
  });

  it('have an empty description when none is given, and are listed oldest first, per org', async () => {
    const orgId = newOrg();
    const other = newOrg();
    const ids: string[] = [];
    for (const name of ['x', 'y', 'z']) {
      const res = await create({ url: hook(name), orgId });
      expect(res.status).toBe(201);
      expect(res.body.description).toBe('');
      ids.push(res.body.id);
    }
    expect((await create({ url: hook('w'), orgId: other })).status).toBe(201);
    const list = await http(server.baseUrl, 'GET', `/api/webhooks?orgId=${orgId}`);
    expect(list.status).toBe(200);
    expect(list.body.map((e: { id: string }) => e.id)).toEqual(ids);
    expect(list.body.map((e: { url: string }) => e.url)).toEqual([hook('x'), hook('y'), hook('z')]);
    expect((await http(server.baseUrl, 'GET', `/api/webhooks?orgId=${newOrg()}`)).body).toEqual([]);
  });

  it('land in the org `default` without an orgId, as appointments do', async () => {
    const res = await create({ url: hook('default') });
    expect(res.status).toBe(201);
    expect(res.body.orgId).toBe('default');
    expect((await http(server.baseUrl, 'GET', `/api/webhooks/${res.body.id}`)).status).toBe(200);
    expect((await http(server.baseUrl, 'DELETE', `/api/webhooks/${res.body.id}`)).status).toBe(204);
  });

  it('refuse unknown properties, a missing or malformed url, and a description over 1000 characters', async () => {
    const cases: Array<[unknown, string]> = [
      [{ url: hook('a'), secret: 'whsec_mine' }, "body must not have the property 'secret'"],
      [{ description: 'no url' }, "body must have the property 'url'"],
      [{ url: 42 }, 'body/url must be string'],
      [{ url: '' }, 'body/url must NOT have fewer than 1 characters'],
      [{ url: '/relative' }, 'body/url must be an absolute URL'],
      [{ url: 'ftp://127.0.0.1/x' }, 'body/url must be an http:// or https:// URL'],
      [{ url: 'http://user:pw@127.0.0.1/x' }, 'body/url must not hold a user name or password'],
      [{ url: `http://127.0.0.1/${'a'.repeat(2048)}` }, 'body/url must NOT have more than 2048 characters'],
      [{ url: hook('a'), description: 'd'.repeat(1001) }, 'body/description must NOT have more than 1000 characters'],
      [{ url: hook('a'), orgId: 'bad org' }, 'body/orgId must be 1 to 128 characters from A-Z a-z 0-9 . _ : -'],
    ];
    for (const [body, message] of cases) {
      const res = await create(body);
      expect({ body, status: res.status, code: res.body.code, message: res.body.message }).toEqual({
        body,
        status: 400,
        code: 'VALIDATION_ERROR',
        message,
      });
    }
    for (const path of ['/api/webhooks?orgId=a&other=1', `/api/webhooks/${randomUUIDText()}?x=1`]) {
      const res = await http(server.baseUrl, 'GET', path);
      expect(res.status, path).toBe(400);
      expect(res.body.message).toMatch(/^querystring must not have the property/);
    }
  });

  it('are at most 20 per org, also under 30 concurrent creates; a deleted one makes room', async () => {
    const orgId = newOrg();
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => create({ url: hook(`n${i}`), orgId })));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(20);
    expect(statuses.filter((s) => s === 400)).toHaveLength(10);
    for (const refused of answers.filter((a) => a.status === 400))
      expect(refused.body).toMatchObject({
        code: 'VALIDATION_ERROR',
        message: `The organization ${orgId} has 20 webhook endpoints already, the most it may have; delete one first`,
      });
    const [{ count }] = await server.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM webhook_endpoints WHERE org_id = ${orgId}`;
    expect(count).toBe(20);
    // disabled ones count
    const first = answers.find((a) => a.status === 201)!.body.id as string;
    await server.sql`
      UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = 'gone' WHERE id = ${first}`;
    expect((await create({ url: hook('21st'), orgId })).status).toBe(400);
    expect((await http(server.baseUrl, 'DELETE', `/api/webhooks/${first}?orgId=${orgId}`)).status).toBe(204);
    expect((await create({ url: hook('again'), orgId })).status).toBe(201);
    expect((await create({ url: hook('22nd'), orgId })).status).toBe(400);
    // another org is not held back
    expect((await create({ url: hook('other'), orgId: newOrg() })).status).toBe(201);
  });

  it("are 404 by another org's orgId, by an id that is no UUID, and 400 by an id of the wrong characters", async () => {
    const orgId = newOrg();
    const { id } = (await create({ url: hook('mine'), orgId })).body;
    const other = newOrg();
    for (const [method, suffix] of [
      ['GET', ''],
      ['DELETE', ''],
      ['POST', '/enable'],
      ['POST', '/rotate-secret'],
    ] as const) {
      const res = await http(server.baseUrl, method, `/api/webhooks/${id}${suffix}?orgId=${other}`);
      expect({ method, suffix, status: res.status, body: res.body }).toEqual({
        method,
        suffix,
        status: 404,
        body: {
          statusCode: 404,
          error: 'Not Found',
          code: 'NOT_FOUND',
          message: `There is no webhook endpoint ${id} in the organization ${other}`,
        },
      });
      const unknown = await http(server.baseUrl, method, `/api/webhooks/not-a-uuid${suffix}?orgId=${orgId}`);
      expect(unknown.status).toBe(404);
      expect(unknown.body.message).toBe(`There is no webhook endpoint not-a-uuid in the organization ${orgId}`);
      const absent = await http(server.baseUrl, method, `/api/webhooks/${randomUUIDText()}${suffix}?orgId=${orgId}`);
      expect(absent.status).toBe(404);
      const malformed = await http(server.baseUrl, method, `/api/webhooks/a%20b${suffix}?orgId=${orgId}`);
      expect(malformed.status).toBe(400);
      expect(malformed.body.message).toBe('params/id must be 1 to 128 characters from A-Z a-z 0-9 . _ : -');
    }
    // the paths have no trailing slash, and an empty id names nothing
    for (const [method, path] of [
      ['GET', '/api/webhooks/'],
      ['DELETE', '/api/webhooks/'],
      ['POST', '/api/webhooks//enable'],
      ['POST', '/api/webhooks//rotate-secret'],
    ] as const) {
      const res = await http(server.baseUrl, method, path);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.message, `${method} ${path}`).toMatch(/^Route .* not found/);
    }
    // the same endpoint, by the id in capitals
    expect((await http(server.baseUrl, 'GET', `/api/webhooks/${id.toUpperCase()}?orgId=${orgId}`)).body.id).toBe(id);
    // not even the rotation of another org's request changed it
    expect((await storedOf(server.sql, id)).previous).toBeNull();
  });

  it('are deleted with their messages and attempts, under the lock of the endpoint row', async () => {
    const orgId = newOrg();
    const { id } = (await create({ url: hook('gone'), orgId })).body;
    const { id: kept } = (await create({ url: hook('kept'), orgId })).body;
    for (const endpoint of [id, kept]) {
      await insertMessage(server.sql, endpoint, 1, 'pending');
      await insertAttempt(server.sql, endpoint, 1);
    }
    // a worker holding the endpoint row (as a claim does) holds the delete back until it commits
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const worker = server.sql.begin(async (tx) => {
      await tx`SELECT FROM webhook_endpoints WHERE id = ${id} FOR KEY SHARE`;
      locked();
      await held;
    });
    await isLocked;
    let answered = false;
    const deleting = http(server.baseUrl, 'DELETE', `/api/webhooks/${id}?orgId=${orgId}`).then((res) => {
      answered = true;
      return res;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answered).toBe(false);
    release();
    await worker;
    const res = await deleting;
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    const counts = async (endpoint: string) => {
      const [row] = await server.sql<{ endpoints: number; messages: number; attempts: number }[]>`
        SELECT (SELECT count(*)::int FROM webhook_endpoints WHERE id = ${endpoint}) AS endpoints,
               (SELECT count(*)::int FROM webhook_messages WHERE endpoint_id = ${endpoint}) AS messages,
               (SELECT count(*)::int FROM webhook_attempts WHERE endpoint_id = ${endpoint}) AS attempts`;
      return row;
    };
    expect(await counts(id)).toEqual({ endpoints: 0, messages: 0, attempts: 0 });
    expect(await counts(kept)).toEqual({ endpoints: 1, messages: 1, attempts: 1 });
    expect((await http(server.baseUrl, 'GET', `/api/webhooks/${id}?orgId=${orgId}`)).status).toBe(404);
    expect((await http(server.baseUrl, 'DELETE', `/api/webhooks/${id}?orgId=${orgId}`)).status).toBe(404);
    // a client that sends a content type on every request
    const viaRaw = await raw(server.baseUrl, 'DELETE', `/api/webhooks/${kept}?orgId=${orgId}`, undefined, {
      'content-type': 'application/json',
    });
    expect(viaRaw.status).toBe(204);
  });

  it('enable: an active endpoint is left as it is', async () => {
    const orgId = newOrg();
    const created = (await create({ url: hook('fine'), orgId })).body;
    await insertMessage(server.sql, created.id, 1, 'failed');
    await insertAttempt(server.sql, created.id, 1);
    const before = await messagesOf(server.sql, created.id);
    const res = await http(server.baseUrl, 'POST', `/api/webhooks/${created.id}/enable?orgId=${orgId}`);
    expect(res.status).toBe(200);
    const { secret: _secret, ...endpoint } = created;
    expect(res.body).toEqual(endpoint);
    expect(await messagesOf(server.sql, created.id)).toEqual(before);
  });

  it('enable: a disabled endpoint resumes from what it had not delivered since it began failing', async () => {
    const orgId = newOrg();
    const { id } = (await create({ url: hook('down'), orgId })).body;
    // 1: given up in an earlier spell of failures (a success came after it): stays given up
    // 2: delivered; 3: given up in this spell; 4: answered 410 (this spell); 5: pending, leased, far off;
    // 6: pending, made before the failures began, never attempted
    const attempts: Array<[number, number, string]> = [
      [1, 1, '2026-01-01 09:00+00'],
      [2, 1, '2026-01-01 10:30+00'],
      [3, 1, '2026-01-01 11:00+00'],
      [3, 2, '2026-01-02 11:00+00'],
      [4, 1, '2026-01-03 11:00+00'],
      [5, 1, '2026-01-03 11:00+00'],
    ];
    for (const [seq, state] of [
      [1, 'failed'],
      [2, 'delivered'],
      [3, 'failed'],
      [4, 'failed'],
      [5, 'pending'],
      [6, 'pending'],
    ] as const)
      await insertMessage(server.sql, id, seq, state);
    for (const [seq, attempt, at] of attempts) await insertAttempt(server.sql, id, seq, attempt, at);
    await server.sql`
      UPDATE webhook_messages SET next_attempt_at = '2030-01-01 00:00+00', lease_until = '2030-01-01 00:00+00',
             attempts = 3
      WHERE endpoint_id = ${id} AND feed_seq = 5`;
    await server.sql`
      UPDATE webhook_endpoints
      SET state = 'disabled', disabled_reason = 'gone', disabled_at = '2026-01-03 11:00+00',
          failing_since = '2026-01-01 11:00+00', paused_until = '2030-01-01 00:00+00'
      WHERE id = ${id}`;
    const before = await messagesOf(server.sql, id);
    expect((await http(server.baseUrl, 'GET', `/api/webhooks/${id}?orgId=${orgId}`)).body).toMatchObject({
      state: 'disabled',
      disabledReason: 'gone',
    });

    const res = await http(server.baseUrl, 'POST', `/api/webhooks/${id}/enable?orgId=${orgId}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id, orgId, state: 'active', disabledReason: null });
    const [endpoint] = await server.sql`
      SELECT state, disabled_reason, disabled_at, failing_since, paused_until FROM webhook_endpoints WHERE id = ${id}`;
    expect(endpoint).toEqual({
      state: 'active',
      disabled_reason: null,
      disabled_at: null,
      failing_since: null,
      paused_until: null,
    });
    const after = await messagesOf(server.sql, id);
    const fresh = { state: 'pending', attempts: 0, lease_until: null, due_now: true };
    expect(after).toEqual([
      before[0],
      before[1],
      { ...before[2], ...fresh },
      { ...before[3], ...fresh },
      { ...before[4], ...fresh },
      { ...before[5], ...fresh },
    ]);
    // and again: active, nothing to do
    const again = await http(server.baseUrl, 'POST', `/api/webhooks/${id}/enable?orgId=${orgId}`, undefined, {
      'content-type': 'application/json',
    });
    expect(again.status).toBe(200);
    expect(await messagesOf(server.sql, id)).toEqual(after);
  });

  it('rotate-secret: a new secret, the previous one kept for the overlap, never more than two', async () => {
    const orgId = newOrg();
    const created = (await create({ url: hook('rotating'), orgId })).body;
    const rotate = () => http(server.baseUrl, 'POST', `/api/webhooks/${created.id}/rotate-secret?orgId=${orgId}`);
    const first = await rotate();
    expect(first.status).toBe(200);
    const { secret: _secret, ...endpoint } = created;
    expect(first.body).toEqual({ ...endpoint, secret: expect.stringMatching(SECRET_FORM) });
    expect(first.body.secret).not.toBe(created.secret);
    let stored = await storedOf(server.sql, created.id);
    expect(openSecret(stored.secret, KEY)).toBe(first.body.secret);
    expect(openSecret(stored.previous!, KEY)).toBe(created.secret);
    // WEBHOOK_SECRET_OVERLAP=90s
    expect(stored.overlapSeconds).toBeGreaterThan(85);
    expect(stored.overlapSeconds).toBeLessThanOrEqual(90);

    const second = await rotate();
    expect(second.status).toBe(200);
    stored = await storedOf(server.sql, created.id);
    expect(openSecret(stored.secret, KEY)).toBe(second.body.secret);
    expect(openSecret(stored.previous!, KEY)).toBe(first.body.secret);
    expect(JSON.stringify(stored)).not.toContain(created.secret);
    const read = await http(server.baseUrl, 'GET', `/api/webhooks/${created.id}?orgId=${orgId}`);
    expect(read.body).toEqual(endpoint);
  });

  it('never log a secret', async () => {
    const orgId = newOrg();
    server.logs.length = 0;
    const created = await create({ url: hook('quiet'), orgId });
    const rotated = await http(server.baseUrl, 'POST', `/api/webhooks/${created.body.id}/rotate-secret?orgId=${orgId}`);
    expect(rotated.status).toBe(200);
    await http(server.baseUrl, 'GET', `/api/webhooks?orgId=${orgId}`);
    const logs = server.logs.join('');
    // the access-log lines of the three requests, at least
    expect(logs.match(/request completed/g)?.length).toBeGreaterThanOrEqual(3);
    for (const secret of [created.body.secret, rotated.body.secret]) {
      expect(logs).not.toContain(secret);
      expect(logs).not.toContain(secret.slice('whsec_'.length, 30));
    }
    expect(logs).not.toContain('whsec_');
  });
});

describe('webhook URLs without WEBHOOK_ALLOW_PRIVATE_URLS', () => {
  let server: Server;
  beforeAll(async () => {
    server = await startServer({});
  });
  afterAll(() => server.close());

  it('must be https:// and resolve to public addresses only', async () => {
    const orgId = newOrg();
    const refused: Array<[string, string]> = [
      ['http://93.184.215.14/hook', 'must be an https:// URL'],
      ['https://127.0.0.1/hook', 'must resolve to public addresses only'],
      ['https://localhost/hook', 'must resolve to public addresses only'],
      ['https://10.1.2.3/hook', 'must resolve to public addresses only'],
      ['https://192.168.0.10/hook', 'must resolve to public addresses only'],
      ['https://169.254.169.254/latest/meta-data', 'must resolve to public addresses only'],
      ['https://100.64.0.1/hook', 'must resolve to public addresses only'],
      ['https://[::1]/hook', 'must resolve to public addresses only'],
      ['https://[fd00::1]/hook', 'must resolve to public addresses only'],
      ['https://[::ffff:127.0.0.1]/hook', 'must resolve to public addresses only'],
      ['https://0.0.0.0/hook', 'must resolve to public addresses only'],
    ];
    for (const [url, problem] of refused) {
      const res = await http(server.baseUrl, 'POST', '/api/webhooks', { url, orgId });
      expect({ url, status: res.status, code: res.body.code, message: res.body.message }).toEqual({
        url,
        status: 400,
        code: 'VALIDATION_ERROR',
        message: `body/url ${problem}`,
      });
    }
    const accepted = await http(server.baseUrl, 'POST', '/api/webhooks', { url: 'https://93.184.215.14/hook', orgId });
    expect(accepted.status).toBe(201);
    const list = await http(server.baseUrl, 'GET', `/api/webhooks?orgId=${orgId}`);
    expect(list.body.map((e: { url: string }) => e.url)).toEqual(['https://93.184.215.14/hook']);
  });

  it('store the secret in plain text without WEBHOOK_SECRET_KEY', async () => {
    const res = await http(server.baseUrl, 'POST', '/api/webhooks', { url: 'https://93.184.215.14/plain' });
    expect(res.status).toBe(201);
    expect((await storedOf(server.sql, res.body.id)).secret).toBe(`plain:${res.body.secret}`);
  });
});

describe('webhook endpoints with API keys (AUTH=required)', () => {
  let server: Server;
  const auth: Record<string, Record<string, string>> = {};
  const ALPHA = newOrg('alpha');
  const BRAVO = newOrg('bravo');

  beforeAll(async () => {
    server = await startServer({ auth: 'required', webhookAllowPrivateUrls: true });
    for (const org of [ALPHA, BRAVO]) {
      const key = generateApiKey();
      await insertApiKey(server.sql, { keyId: key.keyId, orgId: org, secretHash: key.secretHash });
      auth[org] = { authorization: `Bearer ${key.key}` };
    }
  });
  afterAll(() => server.close());

  it("use the key's org, refuse another explicit one with 403, and hide other orgs' endpoints as 404", async () => {
    const as = (org: string, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) =>
      http(server.baseUrl, method, path, body, auth[org]);
    expect((await http(server.baseUrl, 'GET', '/api/webhooks')).status).toBe(401);
    const created = await as(ALPHA, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/alpha' });
    expect(created.status).toBe(201);
    expect(created.body.orgId).toBe(ALPHA);
    expect(created.headers.location).toBe(`/api/webhooks/${created.body.id}?orgId=${ALPHA}`);
    const explicit = await as(ALPHA, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/a2', orgId: ALPHA });
    expect(explicit.status).toBe(201);

    const forbidden = await as(BRAVO, 'POST', '/api/webhooks', { url: 'http://127.0.0.1:9/b', orgId: ALPHA });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe('FORBIDDEN');
    expect((await as(BRAVO, 'GET', `/api/webhooks?orgId=${ALPHA}`)).status).toBe(403);
    expect((await as(BRAVO, 'GET', `/api/webhooks/${created.body.id}?orgId=${ALPHA}`)).status).toBe(403);
    expect((await as(BRAVO, 'GET', '/api/webhooks')).body).toEqual([]);
    for (const [method, suffix] of [
      ['GET', ''],
      ['POST', '/enable'],
      ['POST', '/rotate-secret'],
      ['DELETE', ''],
    ] as const) {
      const res = await as(BRAVO, method, `/api/webhooks/${created.body.id}${suffix}`);
      expect({ method, suffix, status: res.status, message: res.body.message }).toEqual({
        method,
        suffix,
        status: 404,
        message: `There is no webhook endpoint ${created.body.id} in the organization ${BRAVO}`,
      });
    }
    const list = await as(ALPHA, 'GET', '/api/webhooks');
    expect(list.body.map((e: { id: string }) => e.id)).toEqual([created.body.id, explicit.body.id]);
    expect((await as(ALPHA, 'POST', `/api/webhooks/${created.body.id}/rotate-secret`)).status).toBe(200);
    expect((await as(ALPHA, 'DELETE', `/api/webhooks/${created.body.id}`)).status).toBe(204);
  });
});

function randomUUIDText(): string {
  const hex = randomBytes(16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** A message of the endpoint at feed position (1, seq), as the dispatcher would make it. */
async function insertMessage(sql: Sql, endpointId: string, seq: number, state: 'pending' | 'delivered' | 'failed') {
  await sql`
    INSERT INTO webhook_messages (endpoint_id, event_id, event_type, body, feed_xid, feed_seq, state, attempts,
                                  next_attempt_at)
    VALUES (${endpointId}, ${`msg_${endpointId.replaceAll('-', '')}${seq}`}, 'appointment.created', '{}', '1', ${seq},
            ${state}, ${state === 'pending' ? 0 : 1}, ${state === 'pending' ? sql`clock_timestamp()` : null})`;
}

async function insertAttempt(sql: Sql, endpointId: string, seq: number, attempt = 1, at = '2026-01-01 10:00+00') {
  await sql`
    INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, status_code, error,
                                  duration_ms)
    VALUES (${endpointId}, ${`msg_${endpointId.replaceAll('-', '')}${seq}`}, 'appointment.created', ${attempt},
            ${at}, 500, NULL, 12)`;
}

/** The delivery state of the endpoint's messages, in feed order; due_now: next_attempt_at within a minute. */
function messagesOf(sql: Sql, endpointId: string) {
  return sql`
    SELECT feed_seq::int AS seq, state, attempts, lease_until,
           next_attempt_at IS NOT NULL AND abs(extract(epoch FROM next_attempt_at - clock_timestamp())) < 60 AS due_now
    FROM webhook_messages WHERE endpoint_id = ${endpointId} ORDER BY feed_seq`;
}
