import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { SseParser, openEventStream, type EventStream, type SseItem } from '../scripts/lib/sse.js';
import { sleep } from '../scripts/lib/time.js';
import { encodeSyncToken } from '../src/sync-tokens.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// GET /api/changes/stream over real HTTP, read as EventSource reads it (scripts/lib/sse.ts): the full
// sync then live changes, resuming by Last-Event-ID, refusals before the stream, heartbeats, shutdown,
// and clients that leave. The browser itself: scripts/check-browser.ts.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const agent = new Agent({ connections: 256, pipelining: 1 });
afterAll(() => agent.close());

const streams: EventStream[] = [];
afterAll(() => streams.forEach((s) => s.close()));

async function stream(base: string, orgId: string, query: Record<string, string> = {}, headers = {}) {
  const opened = await openEventStream(`${base}/api/changes/stream?${new URLSearchParams({ orgId, ...query })}`, {
    headers,
    dispatcher: agent,
  });
  streams.push(opened);
  return opened;
}

type Event = Extract<SseItem, { type: 'event' }>;

/** The next `n` events; fails when the stream ends first. */
async function events(s: EventStream, n: number, timeoutMs = 10_000): Promise<Event[]> {
  const got: Event[] = [];
  while (got.length < n) {
    const item = await s.nextEvent(timeoutMs);
    if (item.type === 'end') throw new Error(`the stream ended after ${got.length} of ${n} events`);
    got.push(item);
  }
  return got;
}

/** Nothing more arrives within `ms` (heartbeats aside). */
async function quiet(s: EventStream, ms: number) {
  await expect(s.nextEvent(ms)).rejects.toThrow('nothing arrived');
}

const summary = (e: Event) => {
  const change = JSON.parse(e.data);
  return [e.event, change.type, change.id, change.version, change.snapshot ?? false];
};

const write = (orgId: string, id: string, hour: number, updatedAt = '2020-09-28 14:23:12') =>
  post(server.baseUrl, {
    ...appointment(id, `2020-10-10 ${hour}:00`, `2020-10-10 ${hour}:30`, updatedAt),
    orgId,
  });

const remove = (orgId: string, id: string) => http(server.baseUrl, 'DELETE', `/api/appointments/${id}?orgId=${orgId}`);

describe('the SSE parser', () => {
  it('reads fields, comments and line ends as the HTML standard says, across chunk boundaries', () => {
    const text =
      '\uFEFFretry: 1000\r\n\r\n: keep-alive\n\nid: 1\nevent: upsert\ndata: {"a":\ndata:1}\n\n' +
      'data: no id field\r\rid\nevent:delete\ndata\n\nretry: soon\nid: 2\0\ndata: x\n\nid: 3\ndata: cut';
    for (const size of [1, 2, 3, 7, text.length]) {
      const parser = new SseParser();
      const items: SseItem[] = [];
      for (let i = 0; i < text.length; i += size) items.push(...parser.push(text.slice(i, i + size)));
      expect(items).toEqual([
        { type: 'retry', ms: 1000 },
        { type: 'comment', text: 'keep-alive' },
        { type: 'event', id: '1', event: 'upsert', data: '{"a":\n1}' },
        { type: 'event', id: '1', event: 'message', data: 'no id field' },
        { type: 'event', id: '', event: 'delete', data: '' },
        // an id with NUL is ignored: the last one stays
        { type: 'event', id: '', event: 'message', data: 'x' },
      ]);
    }
  });
});

describe('GET /api/changes/stream', () => {
  it('sends the full sync, then every live change in order, each event named after its change', async () => {
    const orgId = newOrg();
    await write(orgId, 'b', 10);
    await write(orgId, 'a', 11);
    await write(orgId, 'a', 11, '2020-09-29 10:00');
    const s = await stream(server.baseUrl, orgId);
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(s.headers['cache-control']).toBe('no-store');
    expect(await s.next()).toEqual({ type: 'retry', ms: 1000 });
    const snapshot = await events(s, 2);
    expect(snapshot.map(summary)).toEqual([
      ['upsert', 'upsert', 'a', 2, true],
      ['upsert', 'upsert', 'b', 1, true],
    ]);

    await write(orgId, 'c', 12);
    expect((await remove(orgId, 'b')).status).toBe(204);
    await write(orgId, 'b', 13, '2020-09-30 10:00');
    await write(orgId, 'a', 11, '2020-09-29 10:00'); // unchanged: no event
    await write(orgId, 'c', 12, '2020-01-01 10:00'); // stale: no event
    const live = await events(s, 3);
    expect(live.map(summary)).toEqual([
      ['upsert', 'upsert', 'c', 1, false],
      ['delete', 'delete', 'b', 1, false],
      ['upsert', 'upsert', 'b', 2, false],
    ]);
    expect(JSON.parse(live[2]!.data).appointment).toMatchObject({ id: 'b', orgId, version: 2 });
    await quiet(s, 300);

    // every id is a token: as `since` of the pull API it continues exactly after that event
    const after = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}&since=${live[0]!.id}`);
    expect(after.body.changes.map((c: any) => [c.type, c.id, c.version])).toEqual([
      ['delete', 'b', 1],
      ['upsert', 'b', 2],
    ]);
    expect(after.body.next).toBe(live[2]!.id);
    // and the pull API's token starts a stream after it
    const fromNext = await stream(server.baseUrl, orgId, { since: after.body.next });
    expect(fromNext.status).toBe(200);
    await write(orgId, 'd', 14);
    expect((await events(fromNext, 1)).map(summary)).toEqual([['upsert', 'upsert', 'd', 1, false]]);
  });

  it('resumes exactly after the event whose id comes back as Last-Event-ID: the next one, no repeats', async () => {
    const orgId = newOrg();
    for (const [i, id] of ['a', 'b', 'c'].entries()) await write(orgId, id, 10 + i);
    const first = await stream(server.baseUrl, orgId);
    const snapshot = await events(first, 3);
    await write(orgId, 'd', 14);
    await write(orgId, 'a', 10, '2020-09-29 10:00');
    const live = await events(first, 2);
    first.close();
    const all = [...snapshot, ...live];
    expect(all.map(summary).map((x) => `${x[2]}${x[3]}`)).toEqual(['a1', 'b1', 'c1', 'd1', 'a2']);

    // from every event, a snapshot one or a live one, the rest of the feed exactly once
    for (const [k, event] of all.entries()) {
      const again = await stream(server.baseUrl, orgId, {}, { 'last-event-id': event.id });
      expect(again.status).toBe(200);
      const rest = await events(again, all.length - k - 1);
      expect(rest.map((e) => [e.id, e.data])).toEqual(all.slice(k + 1).map((e) => [e.id, e.data]));
      await quiet(again, 200);
      again.close();
    }
  });

  it('lets a non-empty Last-Event-ID win over since, and uses since when Last-Event-ID is empty', async () => {
    const orgId = newOrg();
    await write(orgId, 'a', 10);
    const { next: early } = (await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
    await write(orgId, 'b', 11);
    await write(orgId, 'c', 12);
    const { next: late } = (await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}&since=${early}&limit=1`))
      .body;

    const byHeader = await stream(server.baseUrl, orgId, { since: early }, { 'last-event-id': late });
    expect((await events(byHeader, 1)).map(summary)).toEqual([['upsert', 'upsert', 'c', 1, false]]);
    // a malformed since does not matter either when the header is there
    const overGarbage = await stream(server.baseUrl, orgId, { since: 'x.y' }, { 'last-event-id': late });
    expect((await events(overGarbage, 1)).map(summary)).toEqual([['upsert', 'upsert', 'c', 1, false]]);

    const bySince = await stream(server.baseUrl, orgId, { since: early }, { 'last-event-id': '' });
    expect((await events(bySince, 2)).map(summary)).toEqual([
      ['upsert', 'upsert', 'b', 1, false],
      ['upsert', 'upsert', 'c', 1, false],
    ]);
  });

  it('refuses a bad Last-Event-ID before the stream starts: malformed, tampered, other org 400; other feed 410', async () => {
    const orgId = newOrg();
    await write(orgId, 'a', 10);
    const { next } = (await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
    const [payload, mac] = next.split('.');
    const fields = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const tampered = `${Buffer.from(JSON.stringify({ ...fields, s: '1' })).toString('base64url')}.${mac}`;
    const [{ tokenSecret, feedId }] = await server.sql`
      SELECT token_secret AS "tokenSecret", feed_id AS "feedId" FROM change_feed`;
    const otherFeed = encodeSyncToken(tokenSecret as Buffer, {
      feedId: '00000000-0000-4000-8000-000000000000',
      orgId,
      place: { kind: 'changes', xid: '1', seq: '1' },
    });
    const beyond = encodeSyncToken(tokenSecret as Buffer, {
      feedId: feedId as string,
      orgId,
      place: { kind: 'changes', xid: '900000000000', seq: '1' },
    });
    const cases: Array<[string, string, number, string, string]> = [
      ['malformed', 'not-a-token', 400, 'VALIDATION_ERROR', 'headers/last-event-id is not a change-feed token'],
      ['malformed payload', 'e30.AAAA', 400, 'VALIDATION_ERROR', 'headers/last-event-id is not a change-feed token'],
      ['tampered', tampered, 400, 'VALIDATION_ERROR', 'not a token this service issued'],
      [
        'another org',
        (await http(server.baseUrl, 'GET', `/api/changes?orgId=${newOrg()}`)).body.next,
        400,
        'VALIDATION_ERROR',
        'another organization',
      ],
      ['another feed', otherFeed, 410, 'SYNC_TOKEN_EXPIRED', 'without since'],
      ['beyond the feed', beyond, 410, 'SYNC_TOKEN_EXPIRED', 'without since'],
    ];
    for (const [what, token, status, code, message] of cases) {
      const refused = await stream(server.baseUrl, orgId, {}, { 'last-event-id': token });
      expect([what, refused.status, String(refused.headers['content-type'])]).toEqual([
        what,
        status,
        'application/json; charset=utf-8',
      ]);
      expect((refused.body as any).code, what).toBe(code);
      expect((refused.body as any).message, what).toContain(message);
    }
    // the same refusals for since
    const bySince = await stream(server.baseUrl, orgId, { since: tampered });
    expect([bySince.status, (bySince.body as any).code]).toEqual([400, 'VALIDATION_ERROR']);
    expect((bySince.body as any).message).toContain('not a token this service issued');
  });
});

describe('a stream over time', () => {
  it('gets a heartbeat comment while idle, every FEED_HEARTBEAT_INTERVAL, and its events between them', async () => {
    const quick = await startTestServer({ feedHeartbeatMs: 150 });
    try {
      const orgId = newOrg();
      const { next } = (await http(quick.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
      const s = await stream(quick.baseUrl, orgId, { since: next });
      const started = Date.now();
      expect(await s.next()).toEqual({ type: 'retry', ms: 1000 });
      for (let i = 0; i < 3; i++) expect(await s.next(2_000)).toEqual({ type: 'comment', text: 'keep-alive' });
      // no sooner than one interval apart (each came within s.next's bound)
      expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 150 - 20);
      await post(quick.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
      expect((await events(s, 1)).map(summary)).toEqual([['upsert', 'upsert', 'a', 1, false]]);
      expect(await s.next(2_000)).toEqual({ type: 'comment', text: 'keep-alive' });
      s.close();
    } finally {
      await quick.close();
    }
  });

  it('ends cleanly when the app closes, and app.close() does not wait for the open streams', async () => {
    const closing = await startTestServer();
    const orgId = newOrg();
    await post(closing.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const open = await Promise.all(Array.from({ length: 20 }, () => stream(closing.baseUrl, orgId)));
    for (const s of open) expect((await events(s, 1)).map(summary)).toEqual([['upsert', 'upsert', 'a', 1, true]]);
    // some of them in the middle of a full sync's first page, some idle
    const late = await Promise.all(Array.from({ length: 5 }, () => stream(closing.baseUrl, orgId)));
    await sleep(100);
    expect(closing.app.changeFeed.waitingCount).toBeGreaterThanOrEqual(20);
    const started = Date.now();
    await closing.close();
    const closeMs = Date.now() - started;
    expect(closeMs).toBeLessThan(3_000);
    for (const s of [...open, ...late]) {
      const end = await Promise.race([s.ended, sleep(3_000).then(() => 'still open')]);
      // the end of the body as the server sent it: no reset, no error
      expect(end).toEqual({ type: 'end' });
    }
    expect(closing.app.changeFeed.waitingCount).toBe(0);
  });

  it('frees the waiter of a client that disconnects, however often clients come and go', async () => {
    const orgId = newOrg();
    const { next } = (await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
    const feed = server.app.changeFeed;
    const before = feed.waitingCount;
    for (let round = 0; round < 10; round++) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => stream(server.baseUrl, orgId, { since: next })));
      for (const s of batch) expect(await s.next()).toEqual({ type: 'retry', ms: 1000 });
      await until(() => feed.waitingCount >= before + 20);
      for (const s of batch) s.close();
      // freed when the connection closes, not at the next heartbeat (15 s here)
      await until(() => feed.waitingCount === before, 2_000);
    }
    // and clients that leave before their first page is read: the request sent, the socket closed
    const { port } = new URL(server.baseUrl);
    await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<void>((resolve, reject) => {
            const socket = connect(Number(port), '127.0.0.1', () => {
              socket.write(`GET /api/changes/stream?orgId=${orgId} HTTP/1.1\r\nHost: x\r\n\r\n`, () =>
                socket.destroy(),
              );
            });
            socket.once('close', () => resolve()).once('error', reject);
          }),
      ),
    );
    await sleep(300);
    await until(() => feed.waitingCount === before, 2_000);
    // the instance still streams
    const s = await stream(server.baseUrl, orgId, { since: next });
    await write(orgId, 'a', 10);
    expect((await events(s, 1)).map(summary)).toEqual([['upsert', 'upsert', 'a', 1, false]]);
    s.close();
    await until(() => feed.waitingCount === before, 2_000);
  });
});

describe('a stream while the database is away', () => {
  it('stays open, and goes on exactly where it was once the database answers again', async () => {
    // one connection, so that the test decides when none is free: a read that waits longer than the
    // pool's wait bound fails as "the database is unavailable", as during a restart
    const lone = await startTestServer({ dbPoolMax: 1 });
    try {
      const orgId = newOrg();
      const { next } = (await http(lone.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
      // more than one page of the stream (500): the second page is read right after the first is sent
      await lone.sql`
        SELECT upsert_appointment(${orgId}, 'i' || g, '2030-01-01'::timestamptz + g * interval '1 hour',
                                  '2030-01-01'::timestamptz + g * interval '1 hour' + interval '30 minutes',
                                  '2029-12-01', '2029-12-02', false)
        FROM generate_series(1, 600) AS g`;
      const holding = lone.app.sql`SELECT pg_sleep(0.7)`.then(() => {});
      await sleep(50);
      const opening = stream(lone.baseUrl, orgId, { since: next });
      await sleep(300);
      // queued behind the first page's read: the connection is taken from the moment that read is done
      const busy = lone.app.sql`SELECT pg_sleep(2.8)`.then(() => {});
      const s = await opening;
      expect(s.status).toBe(200);
      const got = await events(s, 600, 15_000);
      await Promise.all([holding, busy]);
      expect(got.map((e) => JSON.parse(e.data).id)).toEqual(Array.from({ length: 600 }, (_, i) => `i${i + 1}`));
      expect(new Set(got.map((e) => e.id)).size).toBe(600);
      // the stream is still the same one: it carries on with live changes
      await post(lone.baseUrl, { ...appointment('z', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
      expect((await events(s, 1)).map(summary)).toEqual([['upsert', 'upsert', 'z', 1, false]]);
      s.close();
    } finally {
      await lone.close();
    }
  });
});

describe('a stream that opens while the database is away', () => {
  it('starts, and sends what the token resumes once the database answers', async () => {
    const lone = await startTestServer({ dbPoolMax: 1 });
    try {
      const orgId = newOrg();
      const { next } = (await http(lone.baseUrl, 'GET', `/api/changes?orgId=${orgId}`)).body;
      await post(lone.baseUrl, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
      // the one connection taken for longer than a query may wait for it
      const busy = lone.app.sql`SELECT pg_sleep(1.6)`.then(() => {});
      await sleep(50);
      const s = await stream(lone.baseUrl, orgId, { since: next });
      expect(s.status).toBe(200);
      expect((await events(s, 1)).map(summary)).toEqual([['upsert', 'upsert', 'a', 1, false]]);
      await busy;
      // and a full sync (no token) likewise
      const again = lone.app.sql`SELECT pg_sleep(1.6)`.then(() => {});
      await sleep(50);
      const sync = await stream(lone.baseUrl, orgId);
      expect(sync.status).toBe(200);
      expect((await events(sync, 1)).map(summary)).toEqual([['upsert', 'upsert', 'a', 1, true]]);
      await again;
      s.close();
      sync.close();
    } finally {
      await lone.close();
    }
  });
});

/** Waits until `condition` holds; fails after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${condition.toString()}`);
    await sleep(10);
  }
}
