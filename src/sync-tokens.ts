import { createHmac, timingSafeEqual } from 'node:crypto';

// Change-feed tokens: where a client stands in its org's feed, signed so that a client can neither
// forge a position nor read another org's feed with a token of its own. base64url(JSON payload) "."
// base64url(HMAC-SHA256 of the payload's bytes).

/** The feed is read after this change (positions: see migrations/1764300000000_change-feed.sql). */
export interface ChangesAfter {
  kind: 'changes';
  xid: string;
  seq: string;
}

/**
 * A full sync in progress: the snapshot of the org as of the position (horizon, 0), read in id order
 * after `afterId` (null: from the first id); after the snapshot, the feed goes on from that position.
 */
export interface SnapshotAfter {
  kind: 'snapshot';
  horizon: string;
  afterId: string | null;
}

export type FeedPlace = ChangesAfter | SnapshotAfter;

export interface SyncToken {
  feedId: string;
  orgId: string;
  place: FeedPlace;
}

/** Why a token was refused, in the order the checks run. */
export type TokenProblem = 'malformed' | 'tampered';

const DECIMAL = /^(0|[1-9][0-9]{0,19})$/;

const mac = (secret: Buffer, payload: string) => createHmac('sha256', secret).update(payload).digest();

export function encodeSyncToken(secret: Buffer, token: SyncToken): string {
  const { place } = token;
  const fields =
    place.kind === 'changes'
      ? { f: token.feedId, o: token.orgId, x: place.xid, s: place.seq }
      : { f: token.feedId, o: token.orgId, h: place.horizon, a: place.afterId };
  const payload = Buffer.from(JSON.stringify(fields)).toString('base64url');
  return `${payload}.${mac(secret, payload).toString('base64url')}`;
}

export function decodeSyncToken(secret: Buffer, text: string): SyncToken | TokenProblem {
  const dot = text.indexOf('.');
  if (dot < 1 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(text)) return 'malformed';
  const payload = text.slice(0, dot);
  const given = Buffer.from(text.slice(dot + 1), 'base64url');
  let fields: Record<string, unknown>;
  try {
    fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return 'malformed';
  }
  if (typeof fields !== 'object' || fields === null || typeof fields.f !== 'string' || typeof fields.o !== 'string')
    return 'malformed';
  let place: FeedPlace;
  if (typeof fields.x === 'string' && typeof fields.s === 'string' && DECIMAL.test(fields.x) && DECIMAL.test(fields.s))
    place = { kind: 'changes', xid: fields.x, seq: fields.s };
  else if (
    typeof fields.h === 'string' &&
    DECIMAL.test(fields.h) &&
    (fields.a === null || typeof fields.a === 'string')
  )
    place = { kind: 'snapshot', horizon: fields.h, afterId: fields.a };
  else return 'malformed';
  const expected = mac(secret, payload);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'tampered';
  return { feedId: fields.f, orgId: fields.o, place };
}
