import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerOf,
  checkHistory,
  clientOps,
  describeAnomalies,
  etagOfVersion,
  readRecordedState,
  runWorkload,
  UNSEEN_ETAG,
  type AnswerFields,
  type HistoryEvent,
  type RecordedState,
  type Version,
  type WriteOp,
} from '../scripts/lib/history-checker.js';
import { checkFeed, type ConsumerRecord, type FeedChange } from '../scripts/lib/feed-checker.js';
import { systemTimeText } from '../scripts/lib/time.js';
import { newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ dbPoolMax: 10 });
});
afterAll(() => server.close());

describe('the concurrency history checker', () => {
  it('finds no anomaly in a randomized run of 24 clients over 3 orgs, with conditional writes and batches', async () => {
    const seed = Number(process.env.HISTORY_SEED ?? Date.now() % 2 ** 31);
    const workload = { seed, orgPrefix: newOrg('hist'), orgs: 3, idsPerOrg: 6, clients: 24, opsPerClient: 20 };
    const events = await runWorkload(server.baseUrl, workload);
    const state = await readRecordedState(server.baseUrl, workload);
    const anomalies = checkHistory(events, state);
    console.log(
      `history checker: seed ${seed}, ${events.length} operations, ${state.versions.length} versions, ${anomalies.length} anomalies`,
    );
    expect(anomalies, describeAnomalies(anomalies, seed)).toEqual([]);
    // the workload reaches every kind of answer the checker has rules for
    const statuses = new Set(
      events.map((e) =>
        e.op.kind === 'write' && e.status === 200 ? answerOf(e.body).status : `${e.op.kind} ${e.status}`,
      ),
    );
    for (const s of ['write 201', 'updated', 'stale', 'write 409', 'delete 204', 'read 200', 'write 412'])
      expect(statuses, [...statuses].join(', ')).toContain(s);
    // and conditional writes that held
    const held = events.filter(
      (e) =>
        e.op.kind === 'write' && 'ifMatch' in e.op && ['created', 'updated'].includes(String(answerOf(e.body).status)),
    );
    expect(held.length).toBeGreaterThan(0);
    // and batches, atomic and not, with items written
    expect(events.some((e) => e.batch?.atomic)).toBe(true);
    expect(events.some((e) => e.batch && !e.batch.atomic && (e.status === 201 || e.status === 200))).toBe(true);
  });

  it('generates the same operation streams from the same seed', () => {
    const take = (seed: number, client: number) => {
      const next = clientOps({ seed, orgPrefix: 'p' }, client);
      return Array.from({ length: 50 }, next);
    };
    expect(take(42, 3)).toEqual(take(42, 3));
    expect(take(42, 3)).not.toEqual(take(43, 3));
    expect(take(42, 3)).not.toEqual(take(42, 4));
  });
});

// Doctored histories: the checker must be able to fail.
const T0 = Date.parse('2026-01-01T00:00:00Z') * 1000;
const ms = (n: number) => T0 + n * 1000;
const body = (v: Version) => ({
  id: v.id,
  orgId: v.orgId,
  start: v.start,
  end: v.end,
  createdAt: v.createdAt,
  updatedAt: v.updatedAt,
  version: v.version,
  recordedAt: `${new Date(v.validFrom / 1000).toISOString().slice(0, 23)}${String(v.validFrom % 1000).padStart(3, '0')}Z`,
});
const content = { createdAt: '2020-01-01T00:00:00.000Z', updatedAt: '2020-06-01T00:00:00.000Z' };
const vA1: Version = {
  orgId: 'o',
  id: 'a',
  version: 1,
  start: '2030-01-01T01:00:00.000Z',
  end: '2030-01-01T02:00:00.000Z',
  ...content,
  validFrom: ms(10),
  validTo: null,
  deleted: false,
};
const vB1: Version = {
  ...vA1,
  id: 'b',
  start: '2030-01-01T03:00:00.000Z',
  end: '2030-01-01T04:00:00.000Z',
  validFrom: ms(20),
};
const write = (
  index: number,
  v: Version,
  sent: number,
  answered: number,
  status = 201,
  status2 = 'created',
): HistoryEvent => ({
  index,
  client: index,
  sentAt: ms(sent),
  answeredAt: ms(answered),
  status,
  op: {
    kind: 'write',
    orgId: v.orgId,
    id: v.id,
    start: v.start,
    end: v.end,
    createdAt: v.createdAt,
    updatedAt: v.updatedAt,
  },
  body: { status: status2, appointment: body(v) },
});
const good = (): { events: HistoryEvent[]; state: RecordedState } => ({
  events: [write(0, vA1, 9, 11), write(1, vB1, 19, 21)],
  state: { versions: [vA1, vB1], finalState: new Map([['o', [body(vA1), body(vB1)]]]) },
});
const rulesOf = (events: HistoryEvent[], state: RecordedState) => checkHistory(events, state).map((a) => a.rule);

describe('the checker on doctored histories', () => {
  it('accepts the correct little history', () => {
    const { events, state } = good();
    expect(checkHistory(events, state)).toEqual([]);
  });

  it('reports a lost acknowledged write', () => {
    const { events, state } = good();
    state.versions = [vA1];
    state.finalState.set('o', [body(vA1)]);
    const anomalies = checkHistory(events, state);
    expect(anomalies.map((a) => a.rule)).toContain('lost-write');
    expect(describeAnomalies(anomalies, 7)).toMatch(/seed 7[\s\S]*event #1/);
  });

  it('reports a version that no request asked for, and one acknowledged with other content', () => {
    const { events, state } = good();
    const phantom: Version = { ...vB1, id: 'c', start: '2030-01-01T05:00:00.000Z', end: '2030-01-01T06:00:00.000Z' };
    state.versions.push(phantom);
    state.finalState.get('o')!.push(body(phantom));
    expect(rulesOf(events, state)).toContain('phantom-version');
    const changed = good();
    changed.state.versions[1] = { ...vB1, end: '2030-01-01T05:00:00.000Z' };
    expect(rulesOf(changed.events, changed.state)).toContain('wrong-content');
  });

  it('reports an overlapping snapshot and broken tiling', () => {
    const { events, state } = good();
    const overlapping: Version = { ...vB1, start: '2030-01-01T01:30:00.000Z' };
    state.versions[1] = overlapping;
    events[1] = write(1, overlapping, 19, 21);
    state.finalState.set('o', [body(vA1), body(overlapping)]);
    expect(rulesOf(events, state)).toEqual(['overlapping-snapshot']);
    const gap = good();
    const a2: Version = { ...vA1, version: 2, updatedAt: '2020-06-01T00:01:00.000Z', validFrom: ms(31) };
    gap.state.versions = [{ ...vA1, validTo: ms(30) }, a2, vB1];
    gap.events.push(write(2, a2, 30, 32, 200, 'updated'));
    gap.state.finalState.set('o', [body(a2), body(vB1)]);
    expect(rulesOf(gap.events, gap.state)).toEqual(['broken-tiling']);
  });

  it('reports a 409 with no blocker, and a 409 naming one that was not current then', () => {
    const { events, state } = good();
    const refused = (c: unknown, sent: number): HistoryEvent => ({
      index: 2,
      client: 2,
      sentAt: ms(sent),
      answeredAt: ms(sent + 1),
      status: 409,
      op: {
        kind: 'write',
        orgId: 'o',
        id: 'z',
        start: '2030-01-01T01:30:00.000Z',
        end: '2030-01-01T02:30:00.000Z',
        ...content,
      },
      body: { code: 'APPOINTMENT_OVERLAP', conflictsWith: c },
    });
    expect(rulesOf([...events, refused({ id: 'a', start: vA1.start, end: vA1.end }, 40)], state)).toEqual([]);
    expect(rulesOf([...events, refused(null, 40)], state)).toEqual([]);
    expect(rulesOf([...events, refused({ id: 'b', start: vB1.start, end: vB1.end }, 40)], state)).toEqual([
      'conflict-without-blocker',
    ]);
    expect(rulesOf([...events, refused({ id: 'a', start: vA1.start, end: vA1.end }, 2)], state)).toEqual([
      'conflict-without-blocker',
    ]);
    expect(rulesOf([...events, refused(null, 2)], state)).toEqual(['conflict-without-blocker']);
  });

  it('reports a stale answer with no winning version, a wrong final state and a 5xx', () => {
    const { events, state } = good();
    const late = write(2, { ...vA1, updatedAt: '2020-07-01T00:00:00.000Z' }, 40, 41, 200, 'stale');
    (late.body as AnswerFields).appointment = body(vA1);
    expect(rulesOf([...events, late], state)).toEqual(['stale-without-winner']);
    const tie = write(2, { ...vA1, start: '2030-01-01T00:30:00.000Z' }, 40, 41, 200, 'stale');
    (tie.body as AnswerFields).appointment = body(vA1);
    expect(rulesOf([...events, tie], state)).toEqual([]); // the stored start is greater: it wins the tie
    state.finalState.set('o', [body(vA1)]);
    expect(rulesOf(events, state)).toEqual(['wrong-final-state']);
    const failed = { ...write(2, vA1, 40, 41), status: 500, body: {} };
    expect(rulesOf([...good().events, failed], good().state)).toContain('server-error');
  });

  it('reports a read of a version that was not current, and a 404 while the id existed', () => {
    const { events, state } = good();
    const read = (status: number, b: unknown, sent: number): HistoryEvent => ({
      index: 2,
      client: 2,
      sentAt: ms(sent),
      answeredAt: ms(sent + 1),
      status,
      op: { kind: 'read', orgId: 'o', id: 'a' },
      body: b,
    });
    expect(rulesOf([...events, read(200, body(vA1), 40)], state)).toEqual([]);
    expect(rulesOf([...events, read(200, body(vA1), 2)], state)).toEqual(['read-unknown-version']);
    expect(rulesOf([...events, read(404, {}, 2)], state)).toEqual([]);
    expect(rulesOf([...events, read(404, {}, 40)], state)).toEqual(['wrong-not-found']);
    // v1 replaced by v2 (recorded at 30, answered at 35): reading v1 at 31-32 is the commit not yet
    // visible; reading it at 40-41, after the writer of v2 was answered, is a stale read
    const a2: Version = { ...vA1, version: 2, updatedAt: '2020-06-01T00:01:00.000Z', validFrom: ms(30) };
    const replaced = {
      versions: [{ ...vA1, validTo: ms(30) }, a2, vB1],
      finalState: new Map([['o', [body(a2), body(vB1)]]]),
    };
    const withUpdate = [...events, write(2, a2, 29, 35, 200, 'updated')];
    expect(rulesOf([...withUpdate, { ...read(200, body(vA1), 31), index: 3 }], replaced)).toEqual([]);
    expect(rulesOf([...withUpdate, { ...read(200, body(vA1), 40), index: 3 }], replaced)).toEqual([
      'read-unknown-version',
    ]);
  });
});

// Doctored feeds: the feed checker must be able to fail. a v1 written (9-11), b v1 (19-21), a deleted
// (29-31), a v2 re-created (39-41); a consumer from the beginning receives the four changes in that order.
describe('the feed checker on doctored sequences', () => {
  const vA1d: Version = { ...vA1, validTo: ms(30), deleted: true };
  const vA2: Version = { ...vA1, version: 2, updatedAt: '2020-06-01T00:01:00.000Z', validFrom: ms(40) };
  const upsert = (v: Version, snapshot = false): FeedChange => ({
    type: 'upsert',
    id: v.id,
    version: v.version,
    recordedAt: systemTimeText(v.validFrom),
    appointment: { ...body(v), recordedAt: systemTimeText(v.validFrom) },
    ...(snapshot ? { snapshot: true } : {}),
  });
  const deleted = (v: Version): FeedChange => ({
    type: 'delete',
    id: v.id,
    version: v.version,
    recordedAt: systemTimeText(v.validTo!),
  });
  const deleteA: HistoryEvent = {
    index: 2,
    client: 2,
    sentAt: ms(29),
    answeredAt: ms(31),
    status: 204,
    op: { kind: 'delete', orgId: 'o', id: 'a' },
    body: undefined,
  };
  const history = () => ({
    events: [write(0, vA1, 9, 11), write(1, vB1, 19, 21), deleteA, write(3, vA2, 39, 41)],
    state: {
      versions: [vA1d, vA2, vB1],
      finalState: new Map([['o', [body(vA2), body(vB1)]]]),
    } as RecordedState,
  });
  const consumer = (changes: FeedChange[], start = 0, more: Partial<ConsumerRecord> = {}): ConsumerRecord => ({
    consumer: 0,
    plan: { kind: 'pull', orgId: 'o', limit: 7, waitSeconds: 0, reconnecting: false, startAfterMs: start },
    startSentAt: ms(start),
    startAnsweredAt: ms(start + 1),
    changes: changes.map((change, i) => ({ change, receivedAt: ms(50 + i), request: i + 1 })),
    requests: changes.length,
    reconnects: 0,
    failures: [],
    caughtUp: true,
    ...more,
  });
  const inOrder = () => [upsert(vA1), upsert(vB1), deleted(vA1d), upsert(vA2)];
  const feedRules = (c: ConsumerRecord, h = history()) => checkFeed(h.events, h.state, [c]).map((a) => a.rule);

  it('accepts the correct sequence, and a full sync in the middle with its seam', () => {
    expect(feedRules(consumer(inOrder()))).toEqual([]);
    // began at 32: b v1 in the snapshot, a deleted; then a v2, and once more b v1 at most through the seam
    expect(feedRules(consumer([upsert(vB1, true), upsert(vA2)], 32))).toEqual([]);
    expect(feedRules(consumer([upsert(vB1, true), upsert(vB1), upsert(vA2)], 32))).toEqual([]);
    expect(feedRules(consumer(inOrder(), 0, { failures: [{ at: ms(5), status: 503, message: 'busy' }] }))).toEqual([]);
  });

  it('reports a skipped change, and a snapshot that holds a version deleted before it began', () => {
    const skipped = inOrder().filter((c) => c.type !== 'delete');
    const anomalies = checkFeed(history().events, history().state, [consumer(skipped)]);
    expect(anomalies.map((a) => a.rule)).toEqual(['feed-missed-change']);
    expect(describeAnomalies(anomalies, 7)).toMatch(/never received delete a v1[\s\S]*event #2/);
    expect(feedRules(consumer([upsert(vA1, true), upsert(vB1, true), upsert(vA2)], 32))).toEqual([
      'feed-missed-change',
    ]);
    // the last change missing: the consumer is also not at the final state
    expect(feedRules(consumer(inOrder().slice(0, 3), 0, { caughtUp: false }))).toEqual([
      'feed-not-caught-up',
      'feed-missed-change',
      'feed-replay-differs',
    ]);
  });

  it('reports a duplicate', () => {
    const twice = inOrder();
    twice.splice(2, 0, upsert(vB1));
    expect(feedRules(consumer(twice))).toEqual(['feed-duplicate-change']);
    expect(feedRules(consumer([upsert(vB1, true), upsert(vB1), upsert(vB1), upsert(vA2)], 32))).toEqual([
      'feed-duplicate-change',
    ]);
  });

  it('reports versions of one id out of order', () => {
    const [a1, b1, d1, a2] = inOrder();
    expect(feedRules(consumer([a1!, b1!, a2!, d1!]))).toContain('feed-version-order');
    expect(feedRules(consumer([d1!, a1!, b1!, a2!]))).toContain('feed-version-order');
  });

  it('reports a change nobody wrote: not in the history, other content, or a version no acknowledged write made', () => {
    const c1: Version = { ...vB1, id: 'c', start: '2030-01-01T05:00:00.000Z', end: '2030-01-01T06:00:00.000Z' };
    expect(feedRules(consumer([...inOrder(), upsert(c1)]))).toEqual(['feed-unknown-change', 'feed-replay-differs']);
    const moved = inOrder();
    moved[1] = upsert({ ...vB1, end: '2030-01-01T05:00:00.000Z' });
    expect(feedRules(consumer(moved))).toContain('feed-unknown-change');
    const late = { ...inOrder()[2]!, recordedAt: systemTimeText(ms(35)) };
    expect(feedRules(consumer([upsert(vA1), upsert(vB1), late, upsert(vA2)]))).toContain('feed-unknown-change');
    // a stale write that the service stored all the same: b v2 is in the history, its write was told stale
    const h = history();
    const vB2: Version = { ...vB1, version: 2, updatedAt: '2020-05-01T00:00:00.000Z', validFrom: ms(45) };
    h.state.versions = [vA1d, vA2, { ...vB1, validTo: ms(45) }, vB2];
    h.state.finalState.set('o', [body(vA2), body(vB2)]);
    const stale = write(4, vB2, 44, 46, 200, 'stale');
    (stale.body as AnswerFields).appointment = body(vB1);
    h.events.push(stale);
    expect(feedRules(consumer([...inOrder(), upsert(vB2)]), h)).toEqual(['feed-unwritten-change']);
  });

  it('reports an order inversion across ids: a change answered before another was sent comes after it', () => {
    const [a1, b1, d1, a2] = inOrder();
    expect(feedRules(consumer([b1!, a1!, d1!, a2!]))).toEqual(['feed-order-inversion']);
    // and a live change older than a snapshot's
    expect(feedRules(consumer([upsert(vA2, true), upsert(vB1)], 32))).toContain('feed-order-inversion');
  });

  it('reports errors other than 503 and a wrong replay', () => {
    const failed = consumer(inOrder(), 0, { failures: [{ at: ms(5), status: 500, message: 'Internal Server Error' }] });
    expect(feedRules(failed)).toEqual(['feed-error']);
    const h = history();
    h.state.finalState.set('o', [body(vA2)]);
    expect(feedRules(consumer(inOrder()), h)).toEqual(['feed-replay-differs']);
  });
});

describe('the precondition checks on doctored histories', () => {
  // a v1 written at 10 (answered 11), then an update to v2 at 30 with If-Match
  const a2: Version = { ...vA1, version: 2, updatedAt: '2020-06-01T00:01:00.000Z', validFrom: ms(30) };
  const replaced = (): RecordedState => ({
    versions: [{ ...vA1, validTo: ms(30) }, a2, vB1],
    finalState: new Map([['o', [body(a2), body(vB1)]]]),
  });
  const conditional = (e: HistoryEvent, precondition: { ifMatch?: string; ifNoneMatch?: '*' }): HistoryEvent => ({
    ...e,
    op: { ...e.op, ...precondition } as HistoryEvent['op'],
  });
  const update = (precondition: { ifMatch?: string; ifNoneMatch?: '*' }) =>
    conditional(write(2, a2, 29, 31, 200, 'updated'), precondition);
  const refused = (precondition: { ifMatch?: string; ifNoneMatch?: '*' }, current: Version | null, sent = 40) => ({
    ...conditional(write(3, { ...a2, updatedAt: '2020-06-01T00:02:00.000Z' }, sent, sent + 1), precondition),
    status: 412,
    body: { code: 'PRECONDITION_FAILED', current: current && body(current) },
  });
  const base = () => good().events;

  it('accepts an update whose If-Match named the version it replaced, and 412s that show why', () => {
    expect(rulesOf([...base(), update({ ifMatch: etagOfVersion(vA1) })], replaced())).toEqual([]);
    expect(rulesOf([...base(), update({ ifMatch: '*' })], replaced())).toEqual([]);
    expect(rulesOf([...base(), update({}), refused({ ifMatch: etagOfVersion(vA1) }, a2)], replaced())).toEqual([]);
    expect(rulesOf([...base(), update({}), refused({ ifNoneMatch: '*' }, a2)], replaced())).toEqual([]);
  });

  it('reports a write applied although its precondition failed', () => {
    expect(rulesOf([...base(), update({ ifMatch: UNSEEN_ETAG })], replaced())).toEqual(['precondition-ignored']);
    expect(rulesOf([...base(), update({ ifNoneMatch: '*' })], replaced())).toEqual(['precondition-ignored']);
    // If-Match never creates
    const { events, state } = good();
    events[1] = conditional(events[1]!, { ifMatch: '*' });
    expect(rulesOf(events, state)).toEqual(['precondition-ignored']);
  });

  it('reports a 412 whose current satisfies the precondition, or was not current then', () => {
    expect(rulesOf([...base(), update({}), refused({ ifMatch: etagOfVersion(a2) }, a2)], replaced())).toEqual([
      'precondition-without-cause',
    ]);
    expect(rulesOf([...base(), update({}), refused({ ifMatch: '*' }, null)], replaced())).toEqual([
      'precondition-without-cause',
    ]);
    expect(rulesOf([...base(), update({}), refused({ ifMatch: etagOfVersion(a2) }, vA1)], replaced())).toEqual([
      'precondition-without-cause',
    ]);
    expect(rulesOf([...base(), update({}), { ...refused({}, a2), index: 3 }], replaced())).toEqual([
      'unexpected-answer',
    ]);
  });
});

describe('batch items on doctored histories', () => {
  const item = (e: HistoryEvent, batch: HistoryEvent['batch']): HistoryEvent => ({ ...e, batch });
  const cA: Version = { ...vA1, id: 'c', start: '2030-01-01T05:00:00.000Z', end: '2030-01-01T06:00:00.000Z' };

  it('reports an item of a refused atomic batch that was written all the same', () => {
    const { events, state } = good();
    // b was the refused item's neighbour: the batch was undone, yet b v1 is stored
    events[1] = {
      ...item(events[1]!, { batch: 0, index: 0, atomic: true, undone: true }),
      status: 424,
      body: undefined,
    };
    expect(rulesOf(events, state)).toContain('phantom-version');
    // while an undone item asks nothing of the checker
    const fine = good();
    const undone = item(write(2, cA, 30, 31), { batch: 0, index: 0, atomic: true, undone: true });
    expect(rulesOf([...fine.events, { ...undone, status: 424, body: undefined }], fine.state)).toEqual([]);
  });

  it('accepts a 409 naming an earlier item of its undone atomic batch, and no other', () => {
    const { events, state } = good();
    const z = write(2, { ...cA, id: 'z', start: '2030-01-01T05:30:00.000Z', end: '2030-01-01T06:30:00.000Z' }, 30, 31);
    const refused = (earlier: HistoryEvent['op'][]) => ({
      ...item(z, { batch: 0, index: 1, atomic: true, earlier: earlier as WriteOp[] }),
      status: 409,
      body: { code: 'APPOINTMENT_OVERLAP', conflictsWith: { id: 'c', start: cA.start, end: cA.end }, index: 1 },
    });
    expect(rulesOf([...events, refused([write(3, cA, 30, 31).op])], state)).toEqual([]);
    expect(rulesOf([...events, refused([])], state)).toEqual(['conflict-without-blocker']);
  });

  it('reports the items of a batch that is not atomic out of item order in the feed', () => {
    const { events, state } = good();
    events[0] = item({ ...events[0]!, sentAt: ms(9), answeredAt: ms(21) }, { batch: 0, index: 0, atomic: false });
    events[1] = item({ ...events[1]!, sentAt: ms(9), answeredAt: ms(21) }, { batch: 0, index: 1, atomic: false });
    const change = (v: Version): FeedChange => ({
      type: 'upsert',
      id: v.id,
      version: v.version,
      recordedAt: systemTimeText(v.validFrom),
      appointment: { ...body(v), recordedAt: systemTimeText(v.validFrom) },
    });
    const consumer = (changes: FeedChange[]): ConsumerRecord => ({
      consumer: 0,
      plan: { kind: 'stream', orgId: 'o', limit: 0, waitSeconds: 0, reconnecting: false, startAfterMs: 0 },
      startSentAt: ms(0),
      startAnsweredAt: ms(1),
      changes: changes.map((c, i) => ({ change: c, receivedAt: ms(30 + i), request: 1 })),
      requests: 1,
      reconnects: 0,
      failures: [],
      caughtUp: true,
    });
    expect(checkFeed(events, state, [consumer([change(vA1), change(vB1)])])).toEqual([]);
    expect(checkFeed(events, state, [consumer([change(vB1), change(vA1)])]).map((a) => a.rule)).toEqual([
      'feed-batch-order',
    ]);
    // atomic: its items may come in any order across ids
    for (const e of events) e.batch!.atomic = true;
    expect(checkFeed(events, state, [consumer([change(vB1), change(vA1)])])).toEqual([]);
  });
});
