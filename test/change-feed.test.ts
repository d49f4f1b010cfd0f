import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSyncToken } from '../src/sync-tokens.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// The change feed, one client at a time: full sync, resume, deletes, tokens and their refusals, long-poll.
// The concurrent proof is the history checker's (test/feed-history.test.ts).

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const changes = (orgId: string, query: Record<string, string> = {}) =>
  http(server.baseUrl, 'GET', `/api/changes?${new URLSearchParams({ orgId, ...query })}`);

/** Follows `next` until `more` is false; every change in order, and the last token. */
async function follow(orgId: string, since?: string, limit = 2) {
  const all: any[] = [];
  let token = since;
  for (;;) {
    const answer = await changes(orgId, { ...(token ? { since: token } : {}), limit: String(limit) });
    expect(answer.status).toBe(200);
    all.push(...answer.body.changes);
    token = answer.body.next;
    if (!answer.body.more) return { changes: all, next: token! };
  }
}

/** The client's rule: per id the last version applied and whether it was a delete. */
function apply(state: Map<string, { version: number; deleted: boolean; appointment?: any }>, change: any) {
  const held = state.get(change.id);
  if (change.type === 'upsert' && (!held || change.version > held.version))
    state.set(change.id, { version: change.version, deleted: false, appointment: change.appointment });
  if (change.type === 'delete' && (!held || change.version >= held.version))
    state.set(change.id, { version: change.version, deleted: true });
}

const live = (state: Map<string, { deleted: boolean; appointment?: any }>) =>
  [...state.values()]
    .filter((s) => !s.deleted)
    .map((s) => s.appointment)
    .sort((a, b) => (a.id < b.id ? -1 : 1));

async function calendar(orgId: string) {
  return (await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&limit=1000`)).body.sort(
    (a: any, b: any) => (a.id < b.id ? -1 : 1),
  );
}

describe('the change feed', () => {
  it('starts with a full sync of the live appointments, then serves every later change once, in order', async () => {
    const orgId = newOrg();
    for (const [id, hour] of [
      ['c', 10],
      ['a', 11],
      ['b', 12],
    ] as const)
      await post(server.baseUrl, { ...appointment(id, `2020-10-10 ${hour}:00`, `2020-10-10 ${hour}:30`), orgId });
    await post(server.baseUrl, {
      ...appointment('a', '2020-10-10 11:00', '2020-10-10 11:45', '2020-09-29 10:00'),
      orgId,
    });
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/b?orgId=${orgId}`)).status).toBe(204);

    const sync = await follow(orgId);
    // the snapshot: live ones only, in id order, each at its newest version
    expect(sync.changes.map((c) => [c.type, c.id, c.version, c.snapshot])).toEqual([
      ['upsert', 'a', 2, true],
      ['upsert', 'c', 1, true],
    ]);
    expect(sync.changes[0].appointment).toMatchObject({ id: 'a', orgId, end: '2020-10-10T11:45:00.000Z', version: 2 });
    expect(sync.changes[0].recordedAt).toBe(sync.changes[0].appointment.recordedAt);

    // then the changes after the snapshot
    await post(server.baseUrl, { ...appointment('d', '2020-10-10 13:00', '2020-10-10 13:30'), orgId });
    await post(server.baseUrl, {
      ...appointment('c', '2020-10-10 10:00', '2020-10-10 10:15', '2020-09-30 10:00'),
      orgId,
    });
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/d?orgId=${orgId}`)).status).toBe(204);
    await post(server.baseUrl, {
      ...appointment('d', '2020-10-10 14:00', '2020-10-10 14:30', '2020-10-01 10:00'),
      orgId,
    });
    // unchanged and stale write nothing, and so appear nowhere
    expect(
      (
        await post(server.baseUrl, {
          ...appointment('d', '2020-10-10 14:00', '2020-10-10 14:30', '2020-10-01 10:00'),
          orgId,
        })
      ).body.status,
    ).toBe('unchanged');
    expect(
      (
        await post(server.baseUrl, {
          ...appointment('d', '2020-10-10 15:00', '2020-10-10 15:30', '2020-09-01 10:00'),
          orgId,
        })
      ).body.status,
    ).toBe('stale');

    const rest = await follow(orgId, sync.next);
    expect(rest.changes.map((c) => [c.type, c.id, c.version, c.snapshot])).toEqual([
      ['upsert', 'd', 1, undefined],
      ['upsert', 'c', 2, undefined],
      ['delete', 'd', 1, undefined],
      ['upsert', 'd', 2, undefined],
    ]);
    const state = new Map();
    for (const change of [...sync.changes, ...rest.changes]) apply(state, change);
    expect(live(state)).toEqual(await calendar(orgId));

    // caught up: an empty page gives the same token back, byte for byte
    const empty = await changes(orgId, { since: rest.next });
    expect(empty.body).toEqual({ changes: [], next: rest.next, more: false });
  });

  it('gives the same changes for the same token, a full page identically', async () => {
    const orgId = newOrg();
    for (let i = 0; i < 5; i++)
      await post(server.baseUrl, { ...appointment(`x${i}`, `2020-10-1${i} 10:00`, `2020-10-1${i} 11:00`), orgId });
    const first = await changes(orgId, { limit: '2' });
    const token = first.body.next;
    const a = await changes(orgId, { since: token, limit: '2' });
    const b = await changes(orgId, { since: token, limit: '2' });
    expect(a.body).toEqual(b.body);
    expect(a.body.more).toBe(true);
    // the snapshot is as of the full sync's start: a write after it comes after the snapshot
    await post(server.baseUrl, {
      ...appointment('x0', '2020-10-10 10:00', '2020-10-10 10:30', '2020-09-30 10:00'),
      orgId,
    });
    const c = await changes(orgId, { since: token, limit: '2' });
    expect(c.body).toEqual(a.body);
    const all = await follow(orgId, token, 100);
    expect(all.changes.map((ch) => [ch.id, ch.version, ch.snapshot ?? false])).toEqual([
      ['x2', 1, true],
      ['x3', 1, true],
      ['x4', 1, true],
      ['x0', 2, false],
    ]);
  });

  it('refuses tokens: malformed, tampered and of another org 400; of another feed 410', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const { next } = (await changes(orgId)).body;
    expect((await changes(orgId, { since: 'garbage' })).body.code).toBe('VALIDATION_ERROR');
    const [payload, mac] = next.split('.');
    const fields = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const tampered = `${Buffer.from(JSON.stringify({ ...fields, h: '3' })).toString('base64url')}.${mac}`;
    const refusedTampered = await changes(orgId, { since: tampered });
    expect([refusedTampered.status, refusedTampered.body.code]).toEqual([400, 'VALIDATION_ERROR']);
    expect(refusedTampered.body.message).toContain('not a token this service issued');
    const foreign = await changes(newOrg(), { since: next });
    expect([foreign.status, foreign.body.code]).toEqual([400, 'VALIDATION_ERROR']);
    expect(foreign.body.message).toContain('another organization');

    // signed with the right secret, for another feed (a restored database): 410
    const [{ tokenSecret }] = await server.sql`SELECT token_secret AS "tokenSecret" FROM change_feed`;
    const otherFeed = encodeSyncToken(tokenSecret as Buffer, {
      feedId: '00000000-0000-4000-8000-000000000000',
      orgId,
      place: { kind: 'changes', xid: '1', seq: '1' },
    });
    const gone = await changes(orgId, { since: otherFeed });
    expect([gone.status, gone.body.code]).toEqual([410, 'SYNC_TOKEN_EXPIRED']);
    expect(gone.body.message).toContain('without since');
    // and a position beyond this database's: 410
    const [{ feedId }] = await server.sql`SELECT feed_id AS "feedId" FROM change_feed`;
    const beyond = encodeSyncToken(tokenSecret as Buffer, {
      feedId: feedId as string,
      orgId,
      place: { kind: 'changes', xid: '900000000000', seq: '1' },
    });
    const future = await changes(orgId, { since: beyond });
    expect([future.status, future.body.code]).toEqual([410, 'SYNC_TOKEN_EXPIRED']);
  });

  it('holds a long-poll until a change of the org commits, and answers an idle one after `wait`', async () => {
    const orgId = newOrg();
    const { next } = (await changes(orgId)).body;
    const polling = changes(orgId, { since: next, wait: '20' });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await post(server.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const answer = await polling;
    // woken by the change: a wait that ran out would have answered no changes
    expect(answer.body.changes.map((c: any) => c.id)).toEqual(['a']);

    const idle = await changes(orgId, { since: answer.body.next, wait: '1' });
    expect(idle.body).toEqual({ changes: [], next: answer.body.next, more: false });
  });
});
