import { Agent, request } from 'undici';
import {
  answerOf,
  deletedVersions,
  key,
  orgIdsOf,
  sameContent,
  TOLERANCE_US,
  type Anomaly,
  type HistoryEvent,
  type RecordedState,
  type Served,
  type Version,
  type WorkloadOptions,
} from './history-checker.js';
import { seededRandom } from './random.js';
import { SseParser } from './sse.js';
import { sleep, systemTimeText, systemTimeUs } from './time.js';

// Used by test/feed-history.test.ts, test/history-checker.test.ts, scripts/check-history.ts and
// scripts/check-faults.ts (no vitest here).
//
// The change feed's half of the history checker: consumers that follow each org's feed while the
// writers of history-checker.ts run (pulling with small pages, long-polling, on the event stream,
// dropping their connection and resuming from their last token, starting with a full sync in the
// middle of the load), a recorder of every change each one received, and a checker of those
// sequences against the recorded writes and the history the service kept (GET .../history).

/** A change as the feed serves it; the checker reads it as received, assuming no field. */
export interface FeedChange {
  type?: string;
  id?: string;
  version?: number;
  recordedAt?: string;
  appointment?: Served;
  snapshot?: boolean;
}

export interface SeenChange {
  change: FeedChange;
  /** Microseconds since the epoch, client clock. */
  receivedAt: number;
  /** Which of the consumer's requests (or stream connections) brought it, counted from 1. */
  request: number;
}

export interface ConsumerPlan {
  kind: 'pull' | 'long-poll' | 'stream';
  orgId: string;
  /** Page size (pull and long-poll). */
  limit: number;
  /** Seconds a long-poll waits. */
  waitSeconds: number;
  /** Drops its connection now and then and resumes from its last token. */
  reconnecting: boolean;
  /** Milliseconds after the start of the load at which it begins, with a full sync. */
  startAfterMs: number;
}

export interface ConsumerFailure {
  /** Microseconds since the epoch. */
  at: number;
  /** The HTTP status; 0 when no answer came. */
  status: number;
  message: string;
}

export interface ConsumerRecord {
  consumer: number;
  plan: ConsumerPlan;
  /** The window of the read that fixed its start point (the full sync's snapshot); 0 when it never read. */
  startSentAt: number;
  startAnsweredAt: number;
  changes: SeenChange[];
  requests: number;
  reconnects: number;
  failures: ConsumerFailure[];
  /** It held the final state of its org before it stopped. */
  caughtUp: boolean;
}

export const describeConsumer = (c: ConsumerRecord) =>
  `consumer ${c.consumer} (${c.plan.kind}${c.plan.kind === 'stream' ? '' : ` limit ${c.plan.limit}`}` +
  `${c.plan.kind === 'long-poll' ? ` wait ${c.plan.waitSeconds}` : ''}${c.plan.reconnecting ? ', reconnecting' : ''}` +
  `${c.plan.startAfterMs > 0 ? `, full sync ${c.plan.startAfterMs} ms into the load` : ''}) of ${c.plan.orgId}`;

/** Orgs whose id begins with this have slow commits where SLOW_COMMITS_SQL is installed. */
export const SLOW_COMMITS_PREFIX = 'slow-commits';

/**
 * The trap the feed must not fall into is a change whose transaction commits after a later one's:
 * installed in a database the run owns, one write in five of the orgs named SLOW_COMMITS_PREFIX...
 * takes its transaction id (the feed-position trigger, which runs first by name), then waits up to
 * 100 ms before it commits, while other writers commit larger ones.
 */
export const SLOW_COMMITS_SQL = `
  CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF starts_with(NEW.org_id, '${SLOW_COMMITS_PREFIX}') AND random() < 0.2 THEN PERFORM pg_sleep(random() * 0.1); END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER zz_slow_commit BEFORE INSERT OR UPDATE ON appointments
    FOR EACH ROW EXECUTE FUNCTION slow_commit();`;

// ---------------------------------------------------------------------------------------------------
// The consumers

export interface FeedConsumerOptions {
  seed: number;
  consumers: number;
  /** How long the writers will run, in ms: the mid-load full syncs begin within it. */
  loadMs: number;
  /** Long-poll waits in seconds, taken in turn. */
  waits?: number[];
}

const PLANS: Array<Pick<ConsumerPlan, 'kind' | 'limit' | 'reconnecting'> & { midLoad?: boolean }> = [
  { kind: 'pull', limit: 7, reconnecting: false },
  { kind: 'long-poll', limit: 50, reconnecting: false },
  { kind: 'stream', limit: 0, reconnecting: false },
  { kind: 'pull', limit: 50, reconnecting: true },
  { kind: 'stream', limit: 0, reconnecting: true },
  { kind: 'long-poll', limit: 7, reconnecting: true },
  { kind: 'pull', limit: 50, reconnecting: false, midLoad: true },
  { kind: 'stream', limit: 0, reconnecting: true, midLoad: true },
  { kind: 'long-poll', limit: 7, reconnecting: false, midLoad: true },
];

/** The consumers of a run: every kind in turn, spread over the orgs, a pure function of the options. */
export function consumerPlans(o: WorkloadOptions, f: FeedConsumerOptions): ConsumerPlan[] {
  const random = seededRandom((f.seed ^ 0x5bd1e995) >>> 0);
  const orgs = orgIdsOf(o);
  const waits = f.waits ?? [2, 3, 4, 5];
  return Array.from({ length: f.consumers }, (_, c) => {
    const p = PLANS[c % PLANS.length]!;
    return {
      kind: p.kind,
      // shifted each round of orgs, so that every org gets every kind
      orgId: orgs[(c + Math.floor(c / orgs.length)) % orgs.length]!,
      limit: p.limit,
      waitSeconds: waits[c % waits.length]!,
      reconnecting: p.reconnecting,
      startAfterMs: p.midLoad ? Math.round(f.loadMs * (0.3 + 0.4 * random())) : 0,
    };
  });
}

/** The consumers of a fault scenario: one long-polling, one on the event stream, one pulling small pages. */
export const followersOf = (orgId: string): ConsumerPlan[] => [
  { kind: 'long-poll', orgId, limit: 50, waitSeconds: 5, reconnecting: false, startAfterMs: 0 },
  { kind: 'stream', orgId, limit: 0, waitSeconds: 0, reconnecting: false, startAfterMs: 0 },
  { kind: 'pull', orgId, limit: 7, waitSeconds: 0, reconnecting: false, startAfterMs: 0 },
];

/** Per id, the last version and whether it was deleted: what a caught-up consumer holds. */
type Held = Map<string, { version: number; deleted: boolean; appointment?: Served }>;

/** The client's rule: an upsert of v applies when v > held, a delete of v when v >= held. */
export function applyChange(held: Held, change: FeedChange) {
  if (change.id === undefined || change.version === undefined) return;
  const h = held.get(change.id);
  if (change.type === 'upsert' && (!h || change.version > h.version))
    held.set(change.id, { version: change.version, deleted: false, appointment: change.appointment });
  else if (change.type === 'delete' && (!h || change.version >= h.version))
    held.set(change.id, { version: change.version, deleted: true });
}

/** Per org and id, the last version of the history. */
function finalTargets(state: RecordedState) {
  const targets = new Map<string, Map<string, { version: number; deleted: boolean }>>();
  for (const v of state.versions) {
    const org = targets.get(v.orgId) ?? new Map<string, { version: number; deleted: boolean }>();
    targets.set(v.orgId, org);
    if ((org.get(v.id)?.version ?? 0) < v.version) org.set(v.id, { version: v.version, deleted: v.deleted });
  }
  return targets;
}

export interface FeedConsumers {
  /** Resolves when every consumer that starts with the load has its start point. */
  ready: Promise<void>;
  /**
   * Once the writers have stopped: each consumer reads until it holds the final state of `state`
   * (or `timeoutMs` passes), then `quietMs` more to see that nothing else comes; the records.
   */
  finish(state: RecordedState, options?: { timeoutMs?: number; quietMs?: number }): Promise<ConsumerRecord[]>;
}

const nowUs = () => Date.now() * 1000;

class StopReading extends Error {}

/**
 * Starts the consumers of `plans` against the service at `baseUrl` (a function of the consumer's
 * number, asked at each request: the fault scenarios start the service again on another port, and a
 * consumer may go to another instance each time). Call `finish` after the writers stop.
 */
export function startFeedConsumers(
  baseUrl: string | ((consumer: number) => string),
  plans: ConsumerPlan[],
  seed = 1,
): FeedConsumers {
  const base = typeof baseUrl === 'string' ? () => baseUrl : baseUrl;
  let targets: ReturnType<typeof finalTargets> | undefined;
  let finishDeadline = Infinity;
  let quietMs = 300;
  const readyOnes: Array<Promise<void>> = [];

  const consume = async (c: number, plan: ConsumerPlan, markReady: () => void): Promise<ConsumerRecord> => {
    const record: ConsumerRecord = {
      consumer: c,
      plan,
      startSentAt: 0,
      startAnsweredAt: 0,
      changes: [],
      requests: 0,
      reconnects: 0,
      failures: [],
      caughtUp: false,
    };
    const random = seededRandom((seed ^ Math.imul(c + 1, 0x85ebca6b)) >>> 0);
    const held: Held = new Map();
    let caughtUpAt: number | undefined;
    /** The last page said more changes are ready (a pull or long-poll is caught up only on more: false). */
    let more = false;
    /** After each answer: true once the consumer has caught up and stayed so for the quiet time. */
    const done = () => {
      if (targets === undefined) return false;
      if (caughtUpAt === undefined && !more && holdsTarget()) {
        caughtUpAt = Date.now();
        record.caughtUp = true;
      }
      return (caughtUpAt !== undefined && Date.now() - caughtUpAt >= quietMs) || Date.now() > finishDeadline;
    };
    const holdsTarget = () => {
      const target = targets!.get(plan.orgId) ?? new Map<string, { version: number; deleted: boolean }>();
      for (const [id, t] of target) {
        const h = held.get(id);
        const same = h !== undefined && h.version === t.version && h.deleted === t.deleted;
        // a full sync that began after the id was deleted never hears of it
        if (!same && !(h === undefined && t.deleted && plan.startAfterMs > 0)) return false;
      }
      return [...held].every(([id, h]) => h.deleted || target.has(id));
    };
    const fail = (status: number, message: string) => record.failures.push({ at: nowUs(), status, message });
    const receive = (change: FeedChange, request: number) => {
      record.changes.push({ change, receivedAt: nowUs(), request });
      applyChange(held, change);
    };
    const failureBackoff = () => sleep(50 + Math.floor(random() * 100));

    await sleep(plan.startAfterMs);
    let agent = new Agent({ connections: 1, headersTimeout: 70_000, bodyTimeout: 0 });
    try {
      let token: string | undefined;
      if (plan.kind !== 'stream') {
        for (;;) {
          // past the quiet time (or the deadline): one last look, then stop
          const finishing = done();
          // caught up, a long-poll waits one second more: an empty answer after it is the quiet time
          // (and the full sync's first page comes at once: it fixes the start point)
          const wait =
            plan.kind !== 'long-poll' || token === undefined
              ? 0
              : finishing || caughtUpAt !== undefined
                ? 1
                : plan.waitSeconds;
          const query = new URLSearchParams({ orgId: plan.orgId, limit: String(plan.limit), wait: String(wait) });
          if (token !== undefined) query.set('since', token);
          const abort = new AbortController();
          // a long-poll dropped in the middle of its wait: the client resumes with the same token
          const dropAfter =
            plan.reconnecting && plan.kind === 'long-poll' && random() < 0.3 ? 50 + random() * 500 : undefined;
          const dropTimer = dropAfter === undefined ? undefined : setTimeout(() => abort.abort(), dropAfter);
          // a new connection between requests; every reconnecting consumer gets at least one by its
          // third request (the drops above only land when an answer is slow to come)
          if (plan.reconnecting && (random() < 0.2 || (record.reconnects === 0 && record.requests >= 2))) {
            await agent.close();
            agent = new Agent({ connections: 1, headersTimeout: 70_000, bodyTimeout: 0 });
            record.reconnects++;
          }
          const sentAt = nowUs();
          record.requests++;
          const n = record.requests;
          let status: number;
          let text: string;
          try {
            const res = await request(`${base(c)}/api/changes?${query}`, {
              dispatcher: agent,
              signal: abort.signal,
            });
            status = res.statusCode;
            text = await res.body.text();
          } catch (error) {
            clearTimeout(dropTimer);
            if (abort.signal.aborted) {
              record.reconnects++;
              continue;
            }
            fail(0, String(error));
            if (finishing) break;
            await failureBackoff();
            continue;
          }
          clearTimeout(dropTimer);
          if (status !== 200) {
            fail(status, text.slice(0, 300));
            if (finishing) break;
            await failureBackoff();
            continue;
          }
          let page: { changes?: FeedChange[]; next?: string; more?: boolean };
          try {
            page = JSON.parse(text) as typeof page;
          } catch {
            fail(status, `not JSON: ${text.slice(0, 300)}`);
            break;
          }
          if (!Array.isArray(page.changes) || typeof page.next !== 'string' || typeof page.more !== 'boolean') {
            fail(status, `not a page of changes: ${text.slice(0, 300)}`);
            break;
          }
          if (record.startSentAt === 0) {
            record.startSentAt = sentAt;
            record.startAnsweredAt = nowUs();
            markReady();
          }
          if (page.changes.length === 0 && token !== undefined && page.next !== token)
            fail(status, 'an empty page whose next is not its since');
          for (const change of page.changes) receive(change, n);
          token = page.next;
          more = page.more;
          if (finishing || (wait === 1 && caughtUpAt !== undefined && page.changes.length === 0)) break;
          if (!page.more && plan.kind === 'pull') await sleep(20 + Math.floor(random() * 30));
        }
      } else {
        let connection = 0;
        let resumeBy: 'header' | 'query' = 'header';
        while (!done()) {
          connection++;
          const abort = new AbortController();
          const headers: Record<string, string> = {};
          const query = new URLSearchParams({ orgId: plan.orgId });
          if (token !== undefined) {
            if (resumeBy === 'header') headers['last-event-id'] = token;
            else query.set('since', token);
          }
          const sentAt = nowUs();
          record.requests++;
          // checks the end of the run, and drops the connection now and then (once there is a token to resume from)
          const dropAt = plan.reconnecting ? Date.now() + 200 + random() * 800 : Infinity;
          const ticker = setInterval(() => {
            if (done() || (token !== undefined && Date.now() > dropAt)) abort.abort(new StopReading());
          }, 25);
          try {
            const res = await request(`${base(c)}/api/changes/stream?${query}`, {
              dispatcher: agent,
              signal: abort.signal,
              headers,
            });
            if (res.statusCode !== 200) {
              fail(res.statusCode, (await res.body.text()).slice(0, 300));
              clearInterval(ticker);
              await failureBackoff();
              continue;
            }
            if (record.startSentAt === 0) {
              record.startSentAt = sentAt;
              record.startAnsweredAt = nowUs();
              markReady();
            }
            const parser = new SseParser();
            const decoder = new TextDecoder();
            for await (const chunk of res.body as AsyncIterable<Buffer>) {
              for (const event of parser.push(decoder.decode(chunk, { stream: true }))) {
                if (event.type !== 'event') continue;
                let change: FeedChange;
                try {
                  change = JSON.parse(event.data) as FeedChange;
                } catch {
                  fail(200, `an event whose data is not JSON: ${event.data.slice(0, 300)}`);
                  continue;
                }
                if (event.event !== change.type) fail(200, `an event named ${event.event} carries a ${change.type}`);
                if (event.id === '') fail(200, 'an event without an id');
                else token = event.id;
                receive(change, connection);
                if (plan.reconnecting && random() < 0.05) abort.abort(new StopReading());
              }
            }
            // the service ended the stream (it shuts down): reconnect
          } catch (error) {
            if (!abort.signal.aborted) {
              fail(0, String(error));
              await failureBackoff();
            }
          } finally {
            clearInterval(ticker);
          }
          if (plan.reconnecting) {
            record.reconnects++;
            resumeBy = resumeBy === 'header' ? 'query' : 'header';
          }
        }
      }
    } finally {
      markReady();
      await agent.close();
    }
    return record;
  };

  const running = plans.map((plan, c) => {
    let markReady!: () => void;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    if (plan.startAfterMs === 0) readyOnes.push(ready);
    return consume(c, plan, markReady);
  });

  return {
    ready: Promise.all(readyOnes).then(() => {}),
    async finish(state, options = {}) {
      quietMs = options.quietMs ?? 300;
      finishDeadline = Date.now() + (options.timeoutMs ?? 15_000);
      targets = finalTargets(state);
      return Promise.all(running);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// The checker

const changeKey = (orgId: string, id: string, type: string, version: number) =>
  `${orgId}\u0000${id}\u0000${type}\u0000${version}`;
/** The place of a change in its id's life: upsert v1, delete v1, upsert v2, ... */
const rank = (type: string | undefined, version: number) => 2 * version + (type === 'delete' ? 1 : 0);

interface Writer {
  event: HistoryEvent;
  /** Its answer came (201/200 created|updated, 204); otherwise the answer was lost (status 0). */
  acknowledged: boolean;
}

export interface FeedCheckOptions {
  /** Answers a consumer may get and retry: 503 always; network errors only in the fault scenarios. */
  allowNetworkErrors?: boolean;
  /**
   * A write answered 503 may have committed: the primary killed after its commit reached the standby
   * but before the acknowledgement reached the service (the failover scenario). Such a write counts
   * as one whose answer was lost.
   */
  unavailableMayHaveWritten?: boolean;
}

/**
 * Checks every consumer's sequence against the writes and the history (`state`, read after the run);
 * returns every anomaly found (none for a correct service).
 */
export function checkFeed(
  events: HistoryEvent[],
  state: RecordedState,
  consumers: ConsumerRecord[],
  options: FeedCheckOptions = {},
): Anomaly[] {
  const anomalies: Anomaly[] = [];
  const byId = new Map<string, Version[]>();
  for (const v of state.versions) byId.set(key(v.orgId, v.id), [...(byId.get(key(v.orgId, v.id)) ?? []), v]);
  for (const list of byId.values()) list.sort((a, b) => a.version - b.version);
  const versionOf = (orgId: string, id: string, version: number | undefined) =>
    byId.get(key(orgId, id))?.find((v) => v.version === version);

  // Who wrote each change: the acknowledged write of that version, the 204 delete that ended it, or a
  // write whose answer was lost.
  const writers = new Map<string, Writer>();
  const lost: HistoryEvent[] = [];
  for (const e of events) {
    const op = e.op;
    if (op.kind !== 'write' && op.kind !== 'delete') continue;
    if (e.status === 0 || (e.status === 503 && options.unavailableMayHaveWritten)) lost.push(e);
    const answer = answerOf(e.body);
    if (op.kind === 'write' && (answer.status === 'created' || answer.status === 'updated')) {
      const k = changeKey(op.orgId, op.id, 'upsert', Number(answer.appointment?.version));
      if (!writers.has(k)) writers.set(k, { event: e, acknowledged: true });
    }
  }
  for (const [e, v] of deletedVersions(events, state.versions))
    writers.set(changeKey(e.op.orgId, v.id, 'delete', v.version), { event: e, acknowledged: true });
  const writerOf = (orgId: string, type: string, v: Version): Writer | undefined => {
    const known = writers.get(changeKey(orgId, v.id, type, v.version));
    if (known) return known;
    const at = type === 'delete' ? v.validTo! : v.validFrom;
    const event = lost.find(
      (e) =>
        e.op.orgId === orgId &&
        'id' in e.op &&
        e.op.id === v.id &&
        e.sentAt - TOLERANCE_US <= at &&
        (type === 'delete' ? e.op.kind === 'delete' : e.op.kind === 'write' && sameContent(e.op, v)),
    );
    return event && { event, acknowledged: false };
  };

  for (const c of consumers) {
    const orgId = c.plan.orgId;
    const who = describeConsumer(c);
    const show = (s: SeenChange, i: number) =>
      `${who}, change #${i + 1} (request ${s.request}, received ${systemTimeText(s.receivedAt)}): ${JSON.stringify(s.change)}`;
    const report = (rule: string, message: string, ev: HistoryEvent[], versions: Version[], lines: string[] = []) =>
      anomalies.push({ rule, message: `${who}: ${message}`, events: ev, versions, lines });

    const tolerated = c.failures.filter((f) => f.status === 503 || (f.status === 0 && options.allowNetworkErrors));
    for (const f of c.failures.filter((x) => !tolerated.includes(x)).slice(0, 5))
      report('feed-error', `answered ${f.status} at ${systemTimeText(f.at)}: ${f.message}`, [], []);
    if (c.startSentAt === 0) {
      report('feed-error', 'never got a first page', [], []);
      continue;
    }
    if (!c.caughtUp) report('feed-not-caught-up', 'did not reach the final state before it stopped', [], []);

    // Every change is a version of the history, as the history has it, written by a request that was
    // told so or whose answer was lost.
    const seen: Array<{ s: SeenChange; i: number; v: Version; writer?: Writer }> = [];
    let liveFrom = c.changes.findIndex((s) => s.change.snapshot !== true);
    if (liveFrom < 0) liveFrom = c.changes.length;
    c.changes.forEach((s, i) => {
      const ch = s.change;
      if (i > liveFrom && ch.snapshot === true)
        report('feed-snapshot-after-live', 'a snapshot change after the first live one', [], [], [show(s, i)]);
      const v = ch.id === undefined ? undefined : versionOf(orgId, ch.id, ch.version);
      const a = ch.appointment;
      const matches =
        v !== undefined &&
        (ch.type === 'upsert'
          ? a !== undefined &&
            a.id === ch.id &&
            a.orgId === orgId &&
            a.version === ch.version &&
            sameContent(a, v) &&
            ch.recordedAt === a.recordedAt &&
            ch.recordedAt !== undefined &&
            systemTimeUs(ch.recordedAt) === v.validFrom
          : ch.type === 'delete' &&
            ch.snapshot !== true &&
            v.deleted &&
            ch.recordedAt !== undefined &&
            systemTimeUs(ch.recordedAt) === v.validTo);
      if (!matches) {
        report(
          'feed-unknown-change',
          `received a change that is not in the history of ${orgId}/${ch.id}`,
          [],
          ch.id === undefined ? [] : (byId.get(key(orgId, ch.id)) ?? []),
          [show(s, i)],
        );
        return;
      }
      const writer = writerOf(orgId, ch.type!, v);
      if (!writer)
        report(
          'feed-unwritten-change',
          `received ${ch.type} ${ch.id} v${ch.version}, which no acknowledged write (nor one whose answer was lost) made`,
          [],
          [v],
          [show(s, i)],
        );
      seen.push({ s, i, v, writer });
    });

    // Per id: the snapshot's version, then the live changes, each once, in version order, with no gap.
    const perId = new Map<string, { snapshot?: (typeof seen)[number]; live: typeof seen }>();
    const counts = new Map<string, Array<(typeof seen)[number]>>();
    for (const x of seen) {
      const id = x.s.change.id!;
      const entry = perId.get(id) ?? { live: [] };
      perId.set(id, entry);
      if (x.s.change.snapshot === true) {
        if (entry.snapshot)
          report(
            'feed-duplicate-change',
            `${id} twice in the snapshot`,
            [],
            [x.v],
            [show(entry.snapshot.s, entry.snapshot.i), show(x.s, x.i)],
          );
        else entry.snapshot = x;
        continue;
      }
      // once more at most through the snapshot seam: the snapshot's own version as the first live change
      const seam =
        entry.live.length === 0 &&
        entry.snapshot !== undefined &&
        rank(x.s.change.type, x.v.version) === rank('upsert', entry.snapshot.v.version);
      const k = changeKey(orgId, id, x.s.change.type!, x.v.version);
      counts.set(k, [...(counts.get(k) ?? []), x]);
      if (!seam) entry.live.push(x);
    }
    for (const [, xs] of counts) {
      if (xs.length > 1) {
        const ch = xs[0]!.s.change;
        report(
          'feed-duplicate-change',
          `received ${ch.type} ${ch.id} v${ch.version} ${xs.length} times`,
          xs[0]!.writer ? [xs[0]!.writer.event] : [],
          [xs[0]!.v],
          xs.map((x) => show(x.s, x.i)),
        );
      }
    }
    const missed = new Set<string>();
    const reportMissed = (type: string, v: Version, why: string, lines: string[]) => {
      const k = changeKey(orgId, v.id, type, v.version);
      if (missed.has(k)) return;
      missed.add(k);
      const w = writerOf(orgId, type, v);
      report(
        'feed-missed-change',
        `never received ${type} ${v.id} v${v.version} (${why})`,
        w ? [w.event] : [],
        [v],
        lines,
      );
    };
    for (const v of state.versions) if (v.orgId === orgId && !perId.has(v.id)) perId.set(v.id, { live: [] });
    for (const [id, { snapshot, live }] of perId) {
      const order = [...(snapshot ? [snapshot] : []), ...live];
      for (let j = 1; j < order.length; j++) {
        const [p, q] = [order[j - 1]!, order[j]!];
        // (the same change twice is a duplicate, reported above)
        if (rank(q.s.change.type, q.v.version) < rank(p.s.change.type, p.v.version)) {
          report(
            'feed-version-order',
            `${id}: ${q.s.change.type} v${q.v.version} came after ${p.s.change.type} v${p.v.version}`,
            [],
            [p.v, q.v],
            [show(p.s, p.i), show(q.s, q.i)],
          );
          break;
        }
      }
      // where this consumer's view of the id began: after the snapshot's version, or before the first
      // live change, which is a creation or a re-creation after a delete
      const history = byId.get(key(orgId, id)) ?? [];
      const ranks = history.flatMap((v) =>
        v.deleted
          ? [
              { r: rank('upsert', v.version), v, type: 'upsert' },
              { r: rank('delete', v.version), v, type: 'delete' },
            ]
          : [{ r: rank('upsert', v.version), v, type: 'upsert' }],
      );
      let cut: number;
      if (snapshot) cut = rank('upsert', snapshot.v.version);
      else if (live.length === 0) cut = Infinity;
      else {
        const first = rank(live[0]!.s.change.type, live[0]!.v.version);
        cut = Math.max(0, ...ranks.filter((x) => x.type === 'delete' && x.r < first).map((x) => x.r));
      }
      // and before every change sent after the consumer's start point
      for (const x of ranks) {
        const w = writerOf(orgId, x.type, x.v);
        if (w && w.event.sentAt > c.startAnsweredAt) cut = Math.min(cut, x.r - 1);
      }
      const got = new Set(live.map((x) => rank(x.s.change.type, x.v.version)));
      for (const x of ranks)
        if (x.r > cut && !got.has(x.r))
          reportMissed(
            x.type,
            x.v,
            snapshot ? `after the snapshot's v${snapshot.v.version}` : "a gap in the id's changes",
            [],
          );
    }

    // Every acknowledged change sent after the consumer's start point is in its live changes.
    const liveKeys = new Set([...counts.keys()]);
    for (const [k, w] of writers) {
      if (!k.startsWith(`${orgId}\u0000`) || !w.acknowledged || w.event.sentAt <= c.startAnsweredAt) continue;
      if (liveKeys.has(k)) continue;
      const [, id, type, version] = k.split('\u0000');
      const v = versionOf(orgId, id!, Number(version));
      if (v) reportMissed(type!, v, 'acknowledged after the consumer began', []);
    }

    // Acknowledged before sent comes first: no change after another in the sequence whose write was
    // answered before the other's was sent. The snapshot stands before every live change.
    const ordered = [...perId.values()].flatMap((e) => e.live).sort((a, b) => a.i - b.i);
    let earliest: (typeof seen)[number] | undefined;
    const check = (b: (typeof seen)[number]) => {
      if (earliest && b.writer && earliest.writer!.event.answeredAt < b.writer.event.sentAt)
        report(
          'feed-order-inversion',
          `${earliest.s.change.type} ${earliest.s.change.id} v${earliest.v.version} was answered before ${b.s.change.type} ${b.s.change.id} v${b.v.version} was sent, yet came after it`,
          [earliest.writer!.event, b.writer.event],
          [earliest.v, b.v],
          [show(b.s, b.i), show(earliest.s, earliest.i)],
        );
    };
    for (let j = ordered.length - 1; j >= 0; j--) {
      const x = ordered[j]!;
      check(x);
      if (x.writer?.acknowledged && (!earliest || x.writer.event.answeredAt < earliest.writer!.event.answeredAt))
        earliest = x;
    }
    for (const e of perId.values()) if (e.snapshot) check(e.snapshot);

    // A batch that is not atomic is applied in item order: its items' changes come in that order.
    const batchItems = new Map<number, Array<(typeof seen)[number]>>();
    for (const x of ordered) {
      const place = x.writer?.event.batch;
      if (place && !place.atomic) batchItems.set(place.batch, [...(batchItems.get(place.batch) ?? []), x]);
    }
    for (const xs of batchItems.values()) {
      const inversion = xs.findIndex(
        (x, j) => j > 0 && x.writer!.event.batch!.index < xs[j - 1]!.writer!.event.batch!.index,
      );
      if (inversion > 0) {
        const [p, q] = [xs[inversion - 1]!, xs[inversion]!];
        report(
          'feed-batch-order',
          `item ${p.writer!.event.batch!.index} of a batch came before its item ${q.writer!.event.batch!.index}`,
          [p.writer!.event, q.writer!.event],
          [p.v, q.v],
          [show(p.s, p.i), show(q.s, q.i)],
        );
      }
    }

    // The replay by the client's rule is the final state.
    const held: Held = new Map();
    for (const s of c.changes) applyChange(held, s.change);
    const final = new Map((state.finalState.get(orgId) ?? []).map((a) => [String(a.id), a]));
    for (const [id, h] of held) {
      if (h.deleted) continue;
      const f = final.get(id);
      if (!f || f.version !== h.version || !sameContent(f, h.appointment ?? {}))
        report(
          'feed-replay-differs',
          `the replay holds ${id} v${h.version}, the final state ${f ? `v${f.version}` : 'nothing'}`,
          [],
          byId.get(key(orgId, id)) ?? [],
        );
    }
    for (const [id, f] of final)
      if (held.get(id)?.deleted !== false)
        report(
          'feed-replay-differs',
          `the final state has ${id} v${f.version}, the replay does not`,
          [],
          byId.get(key(orgId, id)) ?? [],
        );
  }
  return anomalies;
}
