import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/auth.js';
import { insertApiKey, revokeApiKey } from '../src/db/api-keys.js';
import { appointment } from './support/fixtures.js';
import { http, type HttpResult } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// Two tenants, each with a key. Alpha's data uses ids and times that appear nowhere else, so a response to
// Bravo that mentions any of them has leaked something.
const ALPHA = 'tenant-alpha';
const BRAVO = 'tenant-bravo';
const ALPHA_SECRET_ID = 'alpha-board-meeting';
const ALPHA_MARKERS = [ALPHA, ALPHA_SECRET_ID, '10:07', '10:53', '2020-09-11'];

describe('tenants with API keys (AUTH=required)', () => {
  let server: TestServer;
  const auth: Record<string, Record<string, string>> = {};
  let revokedKey = '';
  let alphaKeyId = '';
  const bravoResponses: HttpResult[] = [];

  const as = async (tenant: string, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => {
    const res = await http(server.baseUrl, method, path, body, auth[tenant]);
    if (tenant === BRAVO) bravoResponses.push(res);
    return res;
  };

  beforeAll(async () => {
    server = await startTestServer({ auth: 'required' });
    for (const org of [ALPHA, BRAVO]) {
      const key = generateApiKey();
      await insertApiKey(server.sql, {
        keyId: key.keyId,
        orgId: org,
        secretHash: key.secretHash,
        label: `${org} test`,
      });
      auth[org] = { authorization: `Bearer ${key.key}` };
      if (org === ALPHA) alphaKeyId = key.keyId;
    }
    const revoked = generateApiKey();
    await insertApiKey(server.sql, { keyId: revoked.keyId, orgId: ALPHA, secretHash: revoked.secretHash });
    await revokeApiKey(server.sql, revoked.keyId);
    revokedKey = revoked.key;

    const created = await as(ALPHA, 'POST', '/api/appointments', {
      ...appointment(ALPHA_SECRET_ID, '2020-10-10 10:07', '2020-10-10 10:53', '2020-09-11 08:00'),
      createdAt: '2020-09-11 07:00',
    });
    expect(created.status).toBe(201);
    expect(created.body.appointment.orgId).toBe(ALPHA);
    const shared = await as(ALPHA, 'POST', '/api/appointments', {
      ...appointment('shared-id', '2020-10-11 10:07', '2020-10-11 10:53', '2020-09-11 08:00'),
      createdAt: '2020-09-11 07:00',
      orgId: ALPHA,
    });
    expect(shared.status).toBe(201);
  });
  afterAll(() => server.close());

  it('refuses requests without a valid key with 401 and WWW-Authenticate: Bearer', async () => {
    const alphaKey = auth[ALPHA]!.authorization!.slice('Bearer '.length);
    const wrongSecret = `apk_${alphaKeyId}_${'A'.repeat(43)}`;
    const unknownId = `apk_${'0'.repeat(16)}_${alphaKey.slice(-43)}`;
    const headerSets: Array<Record<string, string>> = [
      {},
      { authorization: '' },
      { authorization: 'Bearer' },
      { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` },
      { authorization: 'Bearer not-a-key' },
      { authorization: `Bearer ${wrongSecret}` },
      { authorization: `Bearer ${unknownId}` },
      { authorization: `Bearer ${revokedKey}` },
      { authorization: `Bearer ${alphaKey}x` },
    ];
    for (const headers of headerSets) {
      for (const [method, path] of [
        ['GET', '/api/appointments'],
        ['GET', `/api/appointments/${ALPHA_SECRET_ID}`],
        ['DELETE', `/api/appointments/${ALPHA_SECRET_ID}`],
      ] as const) {
        const res = await http(server.baseUrl, method, path, undefined, headers);
        expect(res.status, `${method} ${path} with ${JSON.stringify(headers)}`).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Bearer');
        expect(res.body).toMatchObject({ statusCode: 401, code: 'UNAUTHORIZED' });
        expect(JSON.stringify(res.body)).not.toContain(ALPHA);
      }
      const write = await http(
        server.baseUrl,
        'POST',
        '/api/appointments',
        appointment('x', '2020-10-12 10:00', '2020-10-12 11:00'),
        headers,
      );
      expect(write.status).toBe(401);
    }
    // nothing was deleted or written by the refused requests
    const alphaList = await as(ALPHA, 'GET', '/api/appointments');
    expect(alphaList.body.map((a: { id: string }) => a.id)).toEqual([ALPHA_SECRET_ID, 'shared-id']);
  });

  it('leaves /health, /ready and the docs open', async () => {
    for (const path of ['/health', '/api/docs/json', '/api/docs/'])
      expect((await http(server.baseUrl, 'GET', path)).status).toBe(200);
    expect((await http(server.baseUrl, 'GET', '/ready')).status).not.toBe(401);
  });

  it("takes the org from the key: another org's id in the body or query is 403, its own is fine", async () => {
    const body = appointment('b-1', '2020-10-13 10:00', '2020-10-13 11:00');
    expect((await as(BRAVO, 'POST', '/api/appointments', { ...body, orgId: ALPHA })).status).toBe(403);
    for (const path of [
      `/api/appointments?orgId=${ALPHA}`,
      `/api/appointments?orgId=${ALPHA}&at=2030-01-01T00:00:00Z`,
      `/api/appointments/${ALPHA_SECRET_ID}?orgId=${ALPHA}`,
      `/api/appointments/${ALPHA_SECRET_ID}/history?orgId=${ALPHA}`,
    ]) {
      const res = await as(BRAVO, 'GET', path);
      expect(res.status, path).toBe(403);
      expect(res.body).toMatchObject({ statusCode: 403, code: 'FORBIDDEN' });
    }
    expect((await as(BRAVO, 'DELETE', `/api/appointments/${ALPHA_SECRET_ID}?orgId=${ALPHA}`)).status).toBe(403);
    // the default org is another org too
    expect((await as(BRAVO, 'GET', '/api/appointments?orgId=default')).status).toBe(403);

    const own = await as(BRAVO, 'POST', '/api/appointments', { ...body, orgId: BRAVO });
    expect(own.status).toBe(201);
    expect(own.body.appointment.orgId).toBe(BRAVO);
    expect(own.headers.location).toBe(`/api/appointments/b-1?orgId=${BRAVO}`);
    expect((await as(BRAVO, 'GET', `/api/appointments/b-1?orgId=${BRAVO}`)).status).toBe(200);
    const rows = await server.sql`SELECT org_id FROM appointments WHERE id = 'b-1'`;
    expect(rows.map((r) => r.org_id)).toEqual([BRAVO]);
  });

  it("cannot read, list, see the history of, or delete another tenant's appointments", async () => {
    expect((await as(BRAVO, 'GET', `/api/appointments/${ALPHA_SECRET_ID}`)).status).toBe(404);
    expect((await as(BRAVO, 'GET', `/api/appointments/${ALPHA_SECRET_ID}?at=2030-01-01T00:00:00Z`)).status).toBe(404);
    expect((await as(BRAVO, 'GET', `/api/appointments/${ALPHA_SECRET_ID}/history`)).status).toBe(404);
    const ids = (res: HttpResult) => res.body.map((a: { id: string; orgId: string }) => `${a.orgId}/${a.id}`);
    const list = await as(BRAVO, 'GET', '/api/appointments?from=2020-10-01 00:00&to=2020-10-31 00:00');
    expect(list.status).toBe(200);
    expect(ids(list)).toEqual([`${BRAVO}/b-1`]);
    expect(ids(await as(BRAVO, 'GET', '/api/appointments'))).toEqual([`${BRAVO}/b-1`]);
    const past = await as(BRAVO, 'GET', '/api/appointments?at=2030-01-01T00:00:00Z');
    expect(past.status).toBe(200);
    expect(ids(past)).toEqual([`${BRAVO}/b-1`]);
    expect((await as(BRAVO, 'DELETE', `/api/appointments/${ALPHA_SECRET_ID}`)).status).toBe(404);

    const alphaView = await as(ALPHA, 'GET', `/api/appointments/${ALPHA_SECRET_ID}`);
    expect(alphaView.status).toBe(200);
    expect(alphaView.body).toMatchObject({ orgId: ALPHA, version: 1 });
  });

  it('writing an id another tenant uses creates a separate appointment and leaves theirs untouched', async () => {
    // a newer updatedAt, which would win over Alpha's version if it were the same appointment
    const write = await as(
      BRAVO,
      'POST',
      '/api/appointments',
      appointment('shared-id', '2020-10-11 10:00', '2020-10-11 11:00', '2021-01-01 00:00'),
    );
    expect(write.status).toBe(201);
    expect(write.body).toMatchObject({ status: 'created', appointment: { orgId: BRAVO, version: 1 } });
    const deleted = await as(BRAVO, 'DELETE', '/api/appointments/shared-id');
    expect(deleted.status).toBe(204);

    const alphas = await as(ALPHA, 'GET', '/api/appointments/shared-id');
    expect(alphas.body).toMatchObject({ orgId: ALPHA, start: '2020-10-11T10:07:00.000Z', version: 1 });
    const history = await as(ALPHA, 'GET', '/api/appointments/shared-id/history');
    expect(history.body).toHaveLength(1);
    const bravoHistory = await as(BRAVO, 'GET', '/api/appointments/shared-id/history');
    expect(bravoHistory.body.map((v: { deleted: boolean }) => v.deleted)).toEqual([true]);
  });

  it("does not learn of another tenant's appointments through a 409", async () => {
    // Bravo's range covers Alpha's appointment; within Bravo's org nothing is in the way.
    const first = await as(
      BRAVO,
      'POST',
      '/api/appointments',
      appointment('b-over', '2020-10-10 10:00', '2020-10-10 11:00'),
    );
    expect(first.status).toBe(201);
    // a real conflict in Bravo's own org names only Bravo's appointment
    const conflict = await as(
      BRAVO,
      'POST',
      '/api/appointments',
      appointment('b-clash', '2020-10-10 10:30', '2020-10-10 12:00'),
    );
    expect(conflict.status).toBe(409);
    expect(conflict.body.conflictsWith).toEqual({
      id: 'b-over',
      start: '2020-10-10T10:00:00.000Z',
      end: '2020-10-10T11:00:00.000Z',
    });
    // Alpha, in turn, is not blocked by Bravo
    const alphaWrite = await as(
      ALPHA,
      'POST',
      '/api/appointments',
      appointment('alpha-2', '2020-10-10 10:53', '2020-10-10 11:30'),
    );
    expect(alphaWrite.status).toBe(201);
  });

  it("no response to Bravo mentioned any of Alpha's ids, org or times", () => {
    expect(bravoResponses.length).toBeGreaterThan(15);
    for (const res of bravoResponses) {
      const text = JSON.stringify({ body: res.body, headers: res.headers });
      for (const marker of ALPHA_MARKERS.filter((m) => m !== ALPHA_SECRET_ID)) expect(text).not.toContain(marker);
      // the id Bravo asked about may be echoed in a 404 message; Alpha's data about it may not
      if (res.status !== 404 && res.status !== 403) expect(text).not.toContain(ALPHA_SECRET_ID);
    }
  });
});
