import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import {
  currentHorizon,
  getChangeFeed,
  latestPositions,
  readChangesAfter,
  readSnapshot,
  type ChangeRow,
} from './db/changes.js';
import { ApiError, badRequest } from './errors.js';
import { ErrorCode } from './schemas/errors.js';
import type { Change } from './schemas/changes.js';
import { decodeSyncToken, encodeSyncToken, type FeedPlace } from './sync-tokens.js';

declare module 'fastify' {
  interface FastifyInstance {
    changeFeed: ChangeFeed;
  }
}

export interface FeedEntry {
  change: Change;
  /** Where the feed stands after this change: the stream's event id. */
  readonly token: string;
}

export interface FeedRead {
  entries: FeedEntry[];
  next: string;
  more: boolean;
  /** Where to wait from when nothing was ready. */
  place: FeedPlace;
}

const SYNC_AGAIN = 'sync again without since (a full sync)';

const expired = (why: string) => new ApiError(410, ErrorCode.SYNC_TOKEN_EXPIRED, `${why}; ${SYNC_AGAIN}`);

/** A position as numbers, parsed once: every poll compares it with the org's latest for each waiter. */
interface Position {
  xid: bigint;
  seq: bigint;
}
const parsePosition = (p: { xid: string; seq: string }): Position => ({ xid: BigInt(p.xid), seq: BigInt(p.seq) });

/** a < b in position order: xid, then seq */
const before = (a: Position, b: Position) => a.xid < b.xid || (a.xid === b.xid && a.seq < b.seq);

/** Where a place stands in position order: a snapshot's changes all lie below (horizon, 0). */
const positionOf = (place: FeedPlace) =>
  place.kind === 'changes' ? { xid: place.xid, seq: place.seq } : { xid: place.horizon, seq: '0' };

export function toChange(row: ChangeRow, snapshot: boolean): Change {
  if (row.type === 'delete') return { type: 'delete', id: row.id, version: row.version, recordedAt: row.recordedAt };
  const change: Change = {
    type: 'upsert',
    id: row.id,
    version: row.version,
    recordedAt: row.recordedAt,
    appointment: row.appointment,
  };
  if (snapshot) change.snapshot = true;
  return change;
}

interface Waiter {
  after: Position;
  wake(changed: boolean): void;
}

/**
 * The change feed of one instance: reads pages, and tells waiting readers (long-polls, event streams)
 * when their org has something new. No NOTIFY on the write path (it serializes commits:
 * docs/performance.md): one statement every poll interval asks for the latest servable position of
 * every org someone waits on, and only while someone waits.
 */
export class ChangeFeed {
  private identity?: Promise<{ feedId: string; secret: Buffer }>;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Reads in flight by (org, token, limit): streams at one position share one query. */
  private readonly reads = new Map<string, Promise<FeedRead>>();
  private readonly sleepers = new Set<() => void>();

  constructor(
    private readonly app: FastifyInstance,
    private readonly options: { secret?: string; pollIntervalMs: number; heartbeatMs: number },
  ) {}

  /** How often an idle event stream gets a comment line (FEED_HEARTBEAT_INTERVAL). */
  get heartbeatMs() {
    return this.options.heartbeatMs;
  }

  /** Readers waiting for a change now (long-polls and idle event streams), for metrics and tests. */
  get waitingCount() {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  private feed() {
    this.identity ??= getChangeFeed(this.app.sql).then(
      ({ feedId, tokenSecret }) => ({
        feedId,
        secret: this.options.secret === undefined ? tokenSecret : Buffer.from(this.options.secret),
      }),
      (error: unknown) => {
        this.identity = undefined; // the database may be back next time
        throw error;
      },
    );
    return this.identity;
  }

  /** Checks a token, in the order the API promises: syntax, signature, feed, org (its position: in read). */
  async placeOf(orgId: string, token: string, what = 'querystring/since'): Promise<FeedPlace> {
    const { feedId, secret } = await this.feed();
    const decoded = decodeSyncToken(secret, token);
    if (decoded === 'malformed') throw badRequest(`${what} is not a change-feed token; ${SYNC_AGAIN}`);
    if (decoded === 'tampered') throw badRequest(`${what} is not a token this service issued`);
    if (decoded.feedId !== feedId)
      throw expired('The token belongs to another change feed (the database was restored or replaced)');
    if (decoded.orgId !== orgId) throw badRequest(`${what} is a token of another organization`);
    return decoded.place;
  }

  /** One page of the feed from `since` (a checked place) or, without it, the start of a full sync. */
  read(orgId: string, since: { token: string; place: FeedPlace } | undefined, limit: number): Promise<FeedRead> {
    const key = since === undefined ? undefined : `${orgId}\n${since.token}\n${limit}`;
    if (key === undefined) return this.readPage(orgId, since, limit);
    let read = this.reads.get(key);
    if (!read) {
      read = this.readPage(orgId, since, limit).finally(() => this.reads.delete(key));
      this.reads.set(key, read);
    }
    return read;
  }

  private async readPage(
    orgId: string,
    since: { token: string; place: FeedPlace } | undefined,
    limit: number,
  ): Promise<FeedRead> {
    const { feedId, secret } = await this.feed();
    const token = (place: FeedPlace) => encodeSyncToken(secret, { feedId, orgId, place });
    // Signed only when asked for: a pull page sends the last one (`next`), a stream every one.
    const entry = (change: Change, place: FeedPlace): FeedEntry => {
      let signed: string | undefined;
      return {
        change,
        get token() {
          return (signed ??= token(place));
        },
      };
    };
    let place: FeedPlace;
    if (since === undefined) {
      place = { kind: 'snapshot', horizon: (await currentHorizon(this.app.sql)).horizon, afterId: null };
    } else {
      place = since.place;
    }
    const entries: FeedEntry[] = [];
    let room = limit;
    if (place.kind === 'snapshot') {
      if (since !== undefined && BigInt(place.horizon) > BigInt((await currentHorizon(this.app.sql)).nextXid))
        throw expired('The token lies beyond this database’s change feed');
      const rows = await readSnapshot(this.app.sql, { orgId, horizon: place.horizon, afterId: place.afterId, limit });
      const { horizon } = place;
      for (const row of rows.slice(0, limit))
        entries.push(entry(toChange(row, true), { kind: 'snapshot', horizon, afterId: row.id }));
      if (rows.length > limit) {
        return {
          entries,
          next: entries.at(-1)!.token,
          more: true,
          place: { kind: 'snapshot', horizon, afterId: rows[limit - 1]!.id },
        };
      }
      // the snapshot is done: the feed goes on from its position, in the same page as far as there is room
      room -= entries.length;
      place = { kind: 'changes', xid: horizon, seq: '0' };
    }
    const page = await readChangesAfter(this.app.sql, { orgId, xid: place.xid, seq: place.seq, limit: room });
    if (since?.place.kind === 'changes' && BigInt(place.xid) > BigInt(page.nextXid))
      throw expired('The token lies beyond this database’s change feed');
    for (const row of page.changes.slice(0, room))
      entries.push(entry(toChange(row, false), { kind: 'changes', xid: row.xid, seq: row.seq }));
    const more = page.changes.length > room;
    const last = page.changes.length > 0 ? page.changes[Math.min(room, page.changes.length) - 1] : undefined;
    const endPlace: FeedPlace = last && room > 0 ? { kind: 'changes', xid: last.xid, seq: last.seq } : place;
    const next = entries.length === 0 && since !== undefined ? since.token : (entries.at(-1)?.token ?? token(endPlace));
    return { entries, next, more, place: endPlace };
  }

  /**
   * Resolves true once a change after `place` is servable in the org's feed, false after `timeoutMs`,
   * when `signal` aborts, or when the instance shuts down.
   */
  waitForChange(orgId: string, place: FeedPlace, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const set = this.waiters.get(orgId) ?? new Set<Waiter>();
      this.waiters.set(orgId, set);
      const finish = (changed: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        set.delete(waiter);
        if (set.size === 0 && this.waiters.get(orgId) === set) this.waiters.delete(orgId);
        resolve(changed);
      };
      const waiter: Waiter = { after: parsePosition(positionOf(place)), wake: finish };
      const abort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      signal?.addEventListener('abort', abort, { once: true });
      set.add(waiter);
      this.schedulePoll();
    });
  }

  /** Resolves true after `ms`, false at once when `signal` aborts or the instance shuts down. */
  sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (slept: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        this.sleepers.delete(abort);
        resolve(slept);
      };
      const abort = () => finish(false);
      const timer = setTimeout(() => finish(true), ms);
      signal?.addEventListener('abort', abort, { once: true });
      this.sleepers.add(abort);
    });
  }

  private schedulePoll() {
    if (this.timer !== undefined || this.closed || this.waiters.size === 0) return;
    this.timer = setTimeout(() => void this.poll(), this.options.pollIntervalMs);
  }

  private async poll() {
    try {
      const latest = await latestPositions(this.app.sql, [...this.waiters.keys()]);
      for (const [orgId, position] of latest) {
        if (position === null) continue;
        const last = parsePosition(position);
        // a woken waiter leaves the set, which a Set's iteration allows; none joins before the loop ends
        for (const waiter of this.waiters.get(orgId) ?? []) if (before(waiter.after, last)) waiter.wake(true);
      }
    } catch (error) {
      // the database is away: waiters keep waiting (until their timeout), the next poll tries again
      this.app.log.debug({ err: error }, 'change-feed poll failed');
    } finally {
      this.timer = undefined;
      this.schedulePoll();
    }
  }

  /** Wakes every waiter with `false` and stops polling: the instance is shutting down. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.wake(false);
    for (const wake of [...this.sleepers]) wake();
  }

  get isClosed() {
    return this.closed;
  }
}

export const changeFeedPlugin = fp<{ syncTokenSecret?: string; feedPollIntervalMs: number; feedHeartbeatMs: number }>(
  async (app, options) => {
    const feed = new ChangeFeed(app, {
      secret: options.syncTokenSecret,
      pollIntervalMs: options.feedPollIntervalMs,
      heartbeatMs: options.feedHeartbeatMs,
    });
    app.decorate('changeFeed', feed);
    // before the server stops taking connections and waits for those in flight: long-polls answer at
    // once, event streams end (their clients reconnect and resume)
    app.addHook('preClose', async () => feed.close());
  },
  { name: 'change-feed', dependencies: ['database'] },
);
