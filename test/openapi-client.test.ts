import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import createClient from 'openapi-fetch';
import pino from 'pino';
import { format, resolveConfig } from 'prettier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith } from '../src/config.js';
import { newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';
import type { paths } from './support/openapi.js';

const TYPES_FILE = new URL('./support/openapi.d.ts', import.meta.url);

describe('the generated types', () => {
  it('are what openapi-typescript makes of the document now (npm run openapi:types regenerates them)', async () => {
    // as scripts/openapi-types.sh makes them: the AUTH=required document, openapi-typescript, Prettier
    const app = await buildApp({
      ...configWith({ dbPoolMax: 1, auth: 'required' }),
      databaseUrl: 'postgres://localhost:1/none',
      logger: pino({ level: 'silent' }),
    });
    const dir = await mkdtemp(join(tmpdir(), 'openapi-types-'));
    try {
      await app.ready();
      await writeFile(join(dir, 'openapi.json'), `${JSON.stringify(app.swagger(), null, 2)}\n`);
      await promisify(execFile)('node_modules/.bin/openapi-typescript', [
        join(dir, 'openapi.json'),
        '--output',
        join(dir, 'openapi.d.ts'),
      ]);
      const generated = await readFile(join(dir, 'openapi.d.ts'), 'utf8');
      const committedPath = TYPES_FILE.pathname;
      const fresh = await format(generated, { ...(await resolveConfig(committedPath)), filepath: committedPath });
      expect(await readFile(TYPES_FILE, 'utf8'), 'stale: run npm run openapi:types').toBe(fresh);
    } finally {
      await app.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a client generated from the document (openapi-fetch) against the real server', () => {
  let server: TestServer;
  let client: ReturnType<typeof createClient<paths>>;
  beforeAll(async () => {
    server = await startTestServer();
    client = createClient<paths>({ baseUrl: server.baseUrl });
  });
  afterAll(() => server.close());

  const times = { createdAt: '2020-09-01 10:00', updatedAt: '2020-09-28 14:23:12' };

  it('creates, updates, lists a window page by page, reads, reads the history and the past, deletes', async () => {
    const orgId = newOrg('client');

    const created = await client.POST('/api/appointments', {
      body: { id: 'c1', start: '2020-10-10 09:00', end: '2020-10-10 09:30', ...times, orgId },
    });
    expect(created.response.status).toBe(201);
    expect(created.data?.status).toBe('created');
    expect(created.response.headers.get('location')).toBe(`/api/appointments/c1?orgId=${orgId}`);

    const updated = await client.POST('/api/appointments', {
      body: {
        id: 'c1',
        start: '2020-10-10 09:00',
        end: '2020-10-10 09:45',
        ...times,
        updatedAt: '2020-09-29 09:00',
        orgId,
      },
    });
    expect(updated.response.status).toBe(200);
    expect(updated.data?.status).toBe('updated');
    expect(updated.data?.appointment).toMatchObject({ id: 'c1', end: '2020-10-10T09:45:00.000Z', version: 2 });

    for (const [id, start, end] of [
      ['c2', '2020-10-10 10:00', '2020-10-10 10:30'],
      [3, '2020-10-10 11:00', '2020-10-10 11:30'],
      ['outside', '2020-10-12 11:00', '2020-10-12 11:30'],
    ] as const) {
      const res = await client.POST('/api/appointments', { body: { id, start, end, ...times, orgId } });
      expect(res.response.status).toBe(201);
    }

    // a window of one day, two at a time; the next page's cursor comes from the Link header
    const window = { orgId, from: '2020-10-10 00:00', to: '2020-10-11 00:00', limit: 2 };
    const first = await client.GET('/api/appointments', { params: { query: window } });
    expect(first.response.status).toBe(200);
    expect(first.data?.map((a) => a.id)).toEqual(['c1', 'c2']);
    const link = first.response.headers.get('link');
    expect(link).toMatch(/^<\/api\/appointments\?[^>]+>; rel="next"$/);
    const cursor = new URL(/^<([^>]+)>/.exec(link!)![1]!, server.baseUrl).searchParams.get('cursor') ?? undefined;
    expect(cursor).toBeDefined();
    const second = await client.GET('/api/appointments', { params: { query: { ...window, cursor } } });
    expect(second.data?.map((a) => a.id)).toEqual(['3']);
    expect(second.response.headers.get('link')).toBeNull();

    // limit left out: the server's default
    const all = await client.GET('/api/appointments', { params: { query: { orgId } } });
    expect(all.data?.map((a) => a.id)).toEqual(['c1', 'c2', '3', 'outside']);

    const read = await client.GET('/api/appointments/{id}', { params: { path: { id: 'c1' }, query: { orgId } } });
    expect(read.data).toEqual(updated.data?.appointment);

    const history = await client.GET('/api/appointments/{id}/history', {
      params: { path: { id: 'c1' }, query: { orgId } },
    });
    expect(history.data?.map((v) => [v.version, v.end, v.validTo === null])).toEqual([
      [1, '2020-10-10T09:30:00.000Z', false],
      [2, '2020-10-10T09:45:00.000Z', true],
    ]);

    const past = await client.GET('/api/appointments/{id}', {
      params: { path: { id: 'c1' }, query: { orgId, at: history.data![0]!.validFrom } },
    });
    expect(past.data).toMatchObject({ id: 'c1', version: 1, end: '2020-10-10T09:30:00.000Z' });

    // openapi-fetch sends Content-Type: application/json on a DELETE with no body, as many clients do
    const deleted = await client.DELETE('/api/appointments/{id}', {
      params: { path: { id: 'c1' }, query: { orgId } },
      headers: { 'content-type': 'application/json' },
    });
    expect(deleted.response.status).toBe(204);
    const gone = await client.GET('/api/appointments/{id}', { params: { path: { id: 'c1' }, query: { orgId } } });
    expect(gone.response.status).toBe(404);
    expect(gone.error?.code).toBe('NOT_FOUND');
  });

  it('gets the 409 of an overlap with the appointment in the way, and the 400 of a bad range', async () => {
    const orgId = newOrg('client');
    const first = await client.POST('/api/appointments', {
      body: { id: 'a', start: '2020-10-10 09:00', end: '2020-10-10 10:00', ...times, orgId },
    });
    expect(first.response.status).toBe(201);

    const overlap = await client.POST('/api/appointments', {
      body: { id: 'b', start: '2020-10-10 09:30', end: '2020-10-10 10:30', ...times, orgId },
    });
    expect(overlap.response.status).toBe(409);
    expect(overlap.data).toBeUndefined();
    expect(overlap.error?.code).toBe('APPOINTMENT_OVERLAP');
    expect(overlap.error?.conflictsWith).toEqual({
      id: 'a',
      start: '2020-10-10T09:00:00.000Z',
      end: '2020-10-10T10:00:00.000Z',
    });

    const bad = await client.POST('/api/appointments', {
      body: { id: 'c', start: '2020-10-10 12:00', end: '2020-10-10 11:00', ...times, orgId },
    });
    expect(bad.response.status).toBe(400);
    expect(bad.error).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      code: 'VALIDATION_ERROR',
      message: 'body/end must be after body/start',
    });
  });
});
