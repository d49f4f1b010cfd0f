import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith, type Config } from '../src/config.js';
import { http } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

type Doc = Record<string, any>;

async function documentOf(options: Partial<Config> = {}): Promise<Doc> {
  const app = await buildApp({
    ...configWith({ dbPoolMax: 1, ...options }),
    databaseUrl: 'postgres://localhost:1/none',
    logger: pino({ level: 'silent' }),
  });
  try {
    await app.ready();
    return structuredClone(app.swagger()) as Doc;
  } finally {
    await app.close();
  }
}

/** [method, path, operation] of every operation of the document. */
const operations = (doc: Doc): Array<[string, string, Doc]> =>
  Object.entries(doc.paths as Doc).flatMap(([path, item]) =>
    Object.entries(item as Doc).map(([method, operation]) => [method, path, operation as Doc] as [string, string, Doc]),
  );

const media = (response: Doc) => response.content['application/json'];

let plain: Doc;
let keyed: Doc;
let unlimited: Doc;
beforeAll(async () => {
  [plain, keyed, unlimited] = await Promise.all([
    documentOf(),
    documentOf({ auth: 'required' }),
    documentOf({ rateLimitMax: 0 }),
  ]);
});

describe('the OpenAPI document', () => {
  it('has the paths the routes answer at, without a trailing slash, and hides /api/docs', () => {
    expect(Object.keys(plain.paths).sort()).toEqual([
      '/api/appointments',
      '/api/appointments/batch',
      '/api/appointments/{id}',
      '/api/appointments/{id}/history',
      '/api/availability',
      '/api/changes',
      '/api/changes/stream',
      '/api/webhooks',
      '/api/webhooks/{id}',
      '/api/webhooks/{id}/deliveries',
      '/api/webhooks/{id}/enable',
      '/api/webhooks/{id}/rotate-secret',
      '/api/webhooks/{id}/test',
      '/health',
      '/ready',
    ]);
  });

  it('names every operation and has a relative server for Swagger UI and generated clients', () => {
    expect(operations(plain).map(([method, path, op]) => `${method} ${path} ${op.operationId}`)).toEqual([
      'get /health getHealth',
      'get /ready getReadiness',
      'post /api/appointments upsertAppointment',
      'get /api/appointments listAppointments',
      'get /api/appointments/{id} getAppointment',
      'delete /api/appointments/{id} deleteAppointment',
      'get /api/appointments/{id}/history getAppointmentHistory',
      'get /api/changes listChanges',
      'get /api/changes/stream streamChanges',
      'post /api/appointments/batch upsertAppointmentBatch',
      'get /api/availability getAvailability',
      'post /api/webhooks createWebhookEndpoint',
      'get /api/webhooks listWebhookEndpoints',
      'get /api/webhooks/{id} getWebhookEndpoint',
      'delete /api/webhooks/{id} deleteWebhookEndpoint',
      'post /api/webhooks/{id}/enable enableWebhookEndpoint',
      'post /api/webhooks/{id}/rotate-secret rotateWebhookSecret',
      'post /api/webhooks/{id}/test testWebhookEndpoint',
      'get /api/webhooks/{id}/deliveries listWebhookDeliveries',
    ]);
    for (const [, , op] of operations(plain)) expect(op.description, op.operationId).toMatch(/\S/);
    expect(plain.servers).toEqual([{ url: '/', description: expect.any(String) }]);
  });

  it('tags the webhook operations, shows a secret only in the answers of create and rotate-secret', () => {
    const webhookOps = operations(plain).filter(([, path]) => path.startsWith('/api/webhooks'));
    expect(webhookOps).toHaveLength(8);
    for (const [method, path, op] of webhookOps) {
      expect(op.tags, `${method} ${path}`).toEqual(['webhooks']);
      const ok200 = JSON.stringify(op.responses['200'] ?? {});
      // the delivery log and the test attempt answer attempts, never an endpoint or its secret
      if (['testWebhookEndpoint', 'listWebhookDeliveries'].includes(op.operationId)) {
        expect(ok200, op.operationId).not.toMatch(/WebhookEndpoint|secret/);
        continue;
      }
      const ok = op.responses['201'] ?? op.responses['200'] ?? op.responses['204'];
      const schema = ok.content?.['application/json']?.schema ?? {};
      const withSecret = ['createWebhookEndpoint', 'rotateWebhookSecret'].includes(op.operationId);
      expect(JSON.stringify(schema), op.operationId).toContain(
        withSecret ? 'WebhookEndpointWithSecret' : op.operationId === 'deleteWebhookEndpoint' ? '' : 'WebhookEndpoint',
      );
      if (!withSecret) expect(JSON.stringify(schema), op.operationId).not.toContain('WithSecret');
      if (op.operationId !== 'deleteWebhookEndpoint')
        expect([media(ok).example].flat()[0], op.operationId).toMatchObject({ orgId: 'example' });
    }
    expect(plain.tags.map((t: Doc) => t.name)).toContain('webhooks');
    const create = plain.paths['/api/webhooks'].post;
    expect(Object.keys(create.responses['201'].headers)).toContain('Location');
    expect(media(create.responses['201']).example.secret).toMatch(/^whsec_/);
    expect(media(create.requestBody).example).toMatchObject({ url: expect.stringMatching(/^https:\/\//) });
    const { WebhookEndpoint, WebhookEndpointWithSecret } = plain.components.schemas;
    expect(Object.keys(WebhookEndpoint.properties)).toEqual([
      'id',
      'orgId',
      'url',
      'description',
      'state',
      'disabledReason',
      'createdAt',
    ]);
    expect(Object.keys(WebhookEndpointWithSecret.properties)).toEqual([
      ...Object.keys(WebhookEndpoint.properties),
      'secret',
    ]);
  });

  it('has limit optional with its default', () => {
    const limit = plain.paths['/api/appointments'].get.parameters.find((p: Doc) => p.name === 'limit');
    expect(limit).toMatchObject({ in: 'query', required: false, schema: { type: 'integer', default: 100 } });
  });

  it('declares the headers of every answer', () => {
    for (const [method, path, op] of operations(plain)) {
      for (const [status, response] of Object.entries(op.responses as Doc)) {
        const where = `${method} ${path} ${status}`;
        const headers = Object.keys(response.headers ?? {});
        expect(headers, where).toContain('X-Request-Id');
        // the 503 of /ready is a probe's answer: orchestrators poll on their own schedule
        if (path.startsWith('/api/') && ['429', '503'].includes(status))
          expect(headers, where).toContain('Retry-After');
        if (path.startsWith('/api/'))
          expect(headers, where).toEqual(
            expect.arrayContaining(['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']),
          );
        else expect(headers, where).not.toContain('X-RateLimit-Limit');
      }
    }
    expect(Object.keys(plain.paths['/api/appointments'].post.responses['201'].headers)).toContain('Location');
    expect(Object.keys(plain.paths['/api/appointments'].get.responses['200'].headers)).toContain('Link');
    expect(Object.keys(plain.paths['/api/appointments'].post.responses['200'].headers)).not.toContain('Location');
    // with rate limiting off, no 429 and no rate-limit headers
    for (const [method, path, op] of operations(unlimited)) {
      expect(Object.keys(op.responses), `${method} ${path}`).not.toContain('429');
      for (const response of Object.values(op.responses as Doc))
        expect(Object.keys(response.headers ?? {})).not.toContain('X-RateLimit-Limit');
    }
    // with keys: the 401 says how to authenticate, and the key check comes before the rate limit
    const unauthorized = keyed.paths['/api/appointments'].post.responses['401'];
    expect(Object.keys(unauthorized.headers)).toEqual(['WWW-Authenticate', 'X-Request-Id']);
  });

  it('has an example of its own for each status, the 409 an overlap with the appointment in the way', () => {
    for (const [method, path, op] of operations(keyed)) {
      if (!path.startsWith('/api/')) continue;
      expect(Object.keys(op.responses), `${method} ${path}`).toEqual(
        expect.arrayContaining(['400', '401', '403', '429', '503']),
      );
      for (const [status, response] of Object.entries(op.responses as Doc)) {
        if (Number(status) < 400) continue;
        const { example } = media(response);
        expect(example, `${method} ${path} ${status}`).toMatchObject({ statusCode: Number(status) });
      }
    }
    const write = keyed.paths['/api/appointments'].post.responses;
    expect(media(write['409']).example).toMatchObject({
      code: 'APPOINTMENT_OVERLAP',
      conflictsWith: { id: expect.any(String), start: expect.any(String), end: expect.any(String) },
    });
    expect(media(write['404'] ?? keyed.paths['/api/appointments/{id}'].get.responses['404']).example.code).toBe(
      'NOT_FOUND',
    );
    for (const [status, code] of [
      ['413', 'PAYLOAD_TOO_LARGE'],
      ['415', 'UNSUPPORTED_MEDIA_TYPE'],
      ['429', 'RATE_LIMITED'],
      ['503', 'SERVICE_UNAVAILABLE'],
      ['401', 'UNAUTHORIZED'],
      ['403', 'FORBIDDEN'],
    ])
      expect(media(write[status]).example.code, status).toBe(code);
    expect(media(write['201']).example.status).toBe('created');
    const named = media(write['200']).examples;
    expect(Object.keys(named)).toEqual(['updated', 'unchanged', 'stale']);
    for (const [status, example] of Object.entries(named as Doc)) expect(example.value.status).toBe(status);
  });

  it('puts bearerAuth on every /api operation with AUTH=required, and no key on the probes', () => {
    expect(keyed.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    for (const [method, path, op] of operations(keyed))
      expect(op.security, `${method} ${path}`).toEqual(path.startsWith('/api/') ? [{ bearerAuth: [] }] : []);
    // AUTH=off: no key anywhere
    expect(plain.components.securitySchemes).toBeUndefined();
    for (const [method, path, op] of operations(plain)) expect(op.security, `${method} ${path}`).toEqual([]);
  });

  it('declares the times of the answers as date-time, and describes the forms the inputs accept', () => {
    const { Appointment, HistoryEntry, ErrorResponse } = plain.components.schemas;
    for (const key of ['start', 'end', 'createdAt', 'updatedAt', 'recordedAt', 'deletedAt'])
      expect(Appointment.properties[key].format, key).toBe('date-time');
    for (const key of ['start', 'end', 'createdAt', 'updatedAt', 'validFrom'])
      expect(HistoryEntry.properties[key].format, key).toBe('date-time');
    expect(HistoryEntry.properties.validTo.anyOf[0].format).toBe('date-time');
    const conflict = ErrorResponse.properties.conflictsWith.anyOf[0];
    expect([conflict.properties.start.format, conflict.properties.end.format]).toEqual(['date-time', 'date-time']);
    const body = media(plain.paths['/api/appointments'].post.requestBody).schema;
    for (const key of ['start', 'end', 'createdAt', 'updatedAt'])
      expect(body.properties[key].description).toContain('`YYYY-MM-DD HH:MM`');
    expect(ErrorResponse.properties.code.description).toContain('`METHOD_NOT_ALLOWED`: 405');
  });
});

describe('"Try it out" with the examples of the document', () => {
  let server: TestServer;
  let doc: Doc;
  beforeAll(async () => {
    server = await startTestServer();
    doc = (await http(server.baseUrl, 'GET', '/api/docs/json')).body;
  });
  afterAll(() => server.close());

  /** The query Swagger UI fills in: each parameter's first example, as the document gives it. */
  function exampleQuery(operation: Doc): string {
    const query = new URLSearchParams();
    for (const p of operation.parameters.filter((p: Doc) => p.in === 'query')) {
      const value = p.example ?? (p.examples ? (Object.values(p.examples)[0] as Doc).value : undefined);
      if (value !== undefined) query.set(p.name, String(value));
    }
    return query.toString();
  }

  it('writes the POST example outside the default org, then reads it back with the examples of the reads', async () => {
    const post = doc.paths['/api/appointments'].post;
    const body = media(post.requestBody).example;
    expect(body.orgId).not.toBe('default');
    const written = await http(server.baseUrl, 'POST', '/api/appointments', body);
    expect(written.status).toBe(201);
    // the headers the document declares are the ones sent
    for (const name of Object.keys(post.responses['201'].headers))
      expect(written.headers[name.toLowerCase()], name).toBeDefined();
    expect(written.body).toMatchObject({ ...media(post.responses['201']).example, appointment: expect.any(Object) });

    const list = doc.paths['/api/appointments'].get;
    const listed = await http(server.baseUrl, 'GET', `/api/appointments?${exampleQuery(list)}`);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual([written.body.appointment]);

    const item = doc.paths['/api/appointments/{id}'];
    const id = item.get.parameters.find((p: Doc) => p.in === 'path');
    const idExample = (Object.values(id.examples)[0] as Doc).value;
    expect(idExample).toBe(String(body.id));
    const read = await http(server.baseUrl, 'GET', `/api/appointments/${idExample}?${exampleQuery(item.get)}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(written.body.appointment);
    const history = await http(
      server.baseUrl,
      'GET',
      `/api/appointments/${idExample}/history?${exampleQuery(doc.paths['/api/appointments/{id}/history'].get)}`,
    );
    expect(history.status).toBe(200);
    expect(history.body).toHaveLength(1);
  });
});
