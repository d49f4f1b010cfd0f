import { randomUUID } from 'node:crypto';
import type { Sql } from 'postgres';
import { toChange } from '../change-feed.js';
import { readChangesAfter, type ChangeRow } from './changes.js';
import { transaction } from './transactions.js';

// The SQL of webhook delivery (migrations/1764400000000_webhooks.sql): the dispatcher turns an
// endpoint's feed into messages, workers claim due messages with a lease, send them and record the
// outcome. Lock order on every path: the endpoint row first (FOR NO KEY UPDATE, which leaves the
// foreign keys of inserted attempts and messages free), then its messages.

export type EventType = 'appointment.created' | 'appointment.updated' | 'appointment.deleted';

// Claims and outcomes commit without waiting for the disk: a crash that undoes one loses a lease (the
// message is claimed again) or an outcome (the message is attempted again, a duplicate after a
// fault), never a change. The dispatcher's commits wait: a message undone after it was sent would be
// made again with another event id.
const ASYNC_COMMIT = { synchronousCommit: false };

/** A new event id (the webhook-id header): `msg_` and a random UUID without dashes. */
export const newEventId = () => `msg_${randomUUID().replaceAll('-', '')}`;

/**
 * What a poll of the delivery engine has to do: the active endpoints whose org has a change after the
 * endpoint's position below the feed's horizon now (the dispatcher's work), and whether any message
 * is due (the workers'). One statement without locks: three index probes per active endpoint, and one
 * for the due messages, which is all an idle poll costs.
 */
export async function pollState(sql: Sql, limit: number): Promise<{ behind: string[]; due: boolean }> {
  const [row] = await sql<{ behind: string[]; due: boolean }[]>`
    WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
    SELECT
      ARRAY(
        SELECT e.id::text FROM webhook_endpoints e CROSS JOIN horizon h
        WHERE e.state = 'active' AND (
          EXISTS (SELECT 1 FROM appointments a
                  WHERE a.org_id = e.org_id AND a.deleted_at IS NULL AND (a.feed_xid, a.feed_seq) > (e.feed_xid, e.feed_seq)
                    AND a.feed_xid < h.xmin)
          OR EXISTS (SELECT 1 FROM appointment_versions v
                     WHERE v.org_id = e.org_id AND (v.feed_xid, v.feed_seq) > (e.feed_xid, e.feed_seq) AND v.feed_xid < h.xmin)
          OR EXISTS (SELECT 1 FROM appointment_versions v
                     WHERE v.org_id = e.org_id AND v.deleted
                       AND (v.deleted_feed_xid, v.deleted_feed_seq) > (e.feed_xid, e.feed_seq) AND v.deleted_feed_xid < h.xmin))
        LIMIT ${limit}) AS behind,
      EXISTS (SELECT 1 FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
              WHERE m.state = 'pending' AND m.next_attempt_at <= now()
                AND (m.lease_until IS NULL OR m.lease_until <= now())
                AND e.state = 'active' AND (e.paused_until IS NULL OR e.paused_until <= now())) AS due`;
  return row!;
}

/** The ids (and versions) among upserts of version > 1 whose previous version ended in a delete. */
async function recreations(tx: Sql, orgId: string, upserts: ChangeRow[]): Promise<Set<string>> {
  const later = upserts.filter((c) => c.type === 'upsert' && c.version > 1);
  if (later.length === 0) return new Set();
  const rows = await tx<{ id: string; version: number }[]>`
    SELECT v.id, v.version + 1 AS version
    FROM unnest(${later.map((c) => c.id)}::text[], ${later.map((c) => c.version - 1)}::int[]) AS p(id, version)
    JOIN appointment_versions v ON v.org_id = ${orgId} AND v.id = p.id AND v.version = p.version
    WHERE v.deleted`;
  return new Set(rows.map((r) => `${r.id}\n${r.version}`));
}

export function eventTypeOf(change: ChangeRow, recreated: Set<string>): EventType {
  if (change.type === 'delete') return 'appointment.deleted';
  if (change.version === 1 || recreated.has(`${change.id}\n${change.version}`)) return 'appointment.created';
  return 'appointment.updated';
}

/** The exact bytes of an event's body, built once and stored. */
export const eventBody = (type: string, change: ChangeRow) =>
  JSON.stringify({ type, timestamp: change.recordedAt, data: toChange(change, false) });

/**
 * One step of the dispatcher for one endpoint, in one transaction: the endpoint row is locked (skipped
 * when another instance holds it, or when it is no longer active), up to `limit` changes after its
 * position are read, those visible to the transaction that created the endpoint are left out, the
 * others become one message each, and the position moves to the last change read. Returns how many
 * messages were made and whether more changes wait, or null when the endpoint was skipped.
 */
export async function dispatchEndpoint(
  sql: Sql,
  endpointId: string,
  limit: number,
): Promise<{ made: number; more: boolean } | null> {
  return transaction(sql, async (tx) => {
    const [endpoint] = await tx<{ orgId: string; xid: string; seq: string }[]>`
      SELECT org_id AS "orgId", feed_xid::text AS xid, feed_seq::text AS seq FROM webhook_endpoints
      WHERE id = ${endpointId} AND state = 'active'
      FOR NO KEY UPDATE SKIP LOCKED`;
    if (!endpoint) return null;
    const page = await readChangesAfter(tx, { orgId: endpoint.orgId, xid: endpoint.xid, seq: endpoint.seq, limit });
    const changes = page.changes.slice(0, limit);
    if (changes.length === 0) return { made: 0, more: false };
    const recreated = await recreations(tx, endpoint.orgId, changes);
    const types = changes.map((c) => eventTypeOf(c, recreated));
    const made = await tx`
      INSERT INTO webhook_messages (endpoint_id, event_id, event_type, body, feed_xid, feed_seq)
      SELECT ${endpointId}, m.event_id, m.event_type, m.body, m.xid, m.seq
      FROM unnest(${changes.map(newEventId)}::text[], ${types}::text[], ${changes.map((c, i) => eventBody(types[i]!, c))}::text[],
                  ${changes.map((c) => c.xid)}::xid8[], ${changes.map((c) => c.seq)}::bigint[]) AS m(event_id, event_type, body, xid, seq)
      WHERE NOT pg_visible_in_snapshot(m.xid, (SELECT created_snapshot FROM webhook_endpoints WHERE id = ${endpointId}))`;
    const last = changes.at(-1)!;
    await tx`
      UPDATE webhook_endpoints SET feed_xid = ${last.xid}::xid8, feed_seq = ${last.seq}::bigint WHERE id = ${endpointId}`;
    return { made: made.count, more: page.changes.length > limit };
  });
}

export interface ClaimedMessage {
  endpointId: string;
  url: string;
  secret: string;
  /** The previous secret while it still signs (a rotation's overlap), else null. */
  previousSecret: string | null;
  eventId: string;
  eventType: string;
  body: string;
  /** Attempts made before this one. */
  attempts: number;
  feedXid: string;
  feedSeq: string;
  /** The lease this claim holds: only its holder completes the message. */
  leaseUntil: string;
  /** When the change became this message: the delivery delay counts from here. */
  madeAt: string;
}

/**
 * Claims due messages: pending, due, not leased (or the lease expired), of an active endpoint that is
 * not paused, at most `concurrency` leased per endpoint counted across every instance. The endpoints
 * are locked first (skipping those another instance is claiming for); the count and the pick run in
 * a second statement, whose snapshot is taken after the locks, so that it sees every lease committed
 * before; and the UPDATE checks state and lease again, as READ COMMITTED re-reads rows changed since.
 */
export async function claimDueMessages(
  sql: Sql,
  o: { concurrency: number; leaseMs: number; endpoints: number; perEndpoint: number },
): Promise<ClaimedMessage[]> {
  return transaction(
    sql,
    async (tx): Promise<ClaimedMessage[]> => {
      const endpoints = await tx<{ id: string }[]>`
      SELECT e.id FROM webhook_endpoints e
      WHERE e.state = 'active' AND (e.paused_until IS NULL OR e.paused_until <= now())
        AND EXISTS (SELECT 1 FROM webhook_messages m
                    WHERE m.endpoint_id = e.id AND m.state = 'pending' AND m.next_attempt_at <= now()
                      AND (m.lease_until IS NULL OR m.lease_until <= now()))
        AND (SELECT count(*) FROM webhook_messages m
             WHERE m.endpoint_id = e.id AND m.state = 'pending' AND m.lease_until > now()) < ${o.concurrency}
      ORDER BY random()
      LIMIT ${o.endpoints}
      FOR NO KEY UPDATE OF e SKIP LOCKED`;
      if (endpoints.length === 0) return [];
      const claimed = await tx<ClaimedMessage[]>`
      WITH room AS (
        SELECT r.id, least(${o.perEndpoint}::int, ${o.concurrency}::int - (
          SELECT count(*)::int FROM webhook_messages m
          WHERE m.endpoint_id = r.id AND m.state = 'pending' AND m.lease_until > now())) AS n
        FROM unnest(${endpoints.map((e) => e.id)}::uuid[]) AS r(id)
      ), picked AS (
        SELECT c.* FROM room r CROSS JOIN LATERAL (
          SELECT m.endpoint_id, m.feed_xid, m.feed_seq FROM webhook_messages m
          WHERE m.endpoint_id = r.id AND m.state = 'pending' AND m.next_attempt_at <= now()
            AND (m.lease_until IS NULL OR m.lease_until <= now())
          ORDER BY m.next_attempt_at
          LIMIT greatest(r.n, 0)
          FOR UPDATE SKIP LOCKED) c
      )
      UPDATE webhook_messages m SET lease_until = now() + ${o.leaseMs} * interval '1 millisecond'
      FROM picked p, webhook_endpoints e
      WHERE (m.endpoint_id, m.feed_xid, m.feed_seq) = (p.endpoint_id, p.feed_xid, p.feed_seq) AND e.id = m.endpoint_id
        AND m.state = 'pending' AND (m.lease_until IS NULL OR m.lease_until <= now())
      RETURNING m.endpoint_id AS "endpointId", e.url, e.secret,
                CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS "previousSecret",
                m.event_id AS "eventId", m.event_type AS "eventType", m.body, m.attempts,
                m.feed_xid::text AS "feedXid", m.feed_seq::text AS "feedSeq", m.lease_until AS "leaseUntil",
                m.made_at AS "madeAt"`;
      return [...claimed];
    },
    ASYNC_COMMIT,
  );
}

export interface AttemptOutcome {
  attemptedAt: string;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/** What an attempt's outcome does to its message and endpoint, as the worker decided it. */
export interface AttemptEffect {
  /** delivered; or the next attempt in ms from now; or null: given up (failed). */
  next: 'delivered' | number | null;
  /** Retry-After of a 429 or 503, in ms from now: the endpoint pauses until then. */
  pauseMs: number | null;
  /** 410: the endpoint is disabled at once. */
  gone: boolean;
}

/**
 * Records a worker's attempt in one transaction, endpoint row first: the message (only while this
 * claim's lease holds it), the endpoint (failing_since, a pause, disabling) and the delivery log.
 */
export async function completeAttempt(
  sql: Sql,
  m: ClaimedMessage,
  outcome: AttemptOutcome,
  effect: AttemptEffect,
  disableAfterMs: number,
): Promise<void> {
  await transaction(
    sql,
    async (tx) => {
      const fromNow = (n: number) => tx`now() + ${Math.round(n)} * interval '1 millisecond'`;
      // the endpoint row first: its failing_since, a pause, disabling
      let endpoint;
      if (effect.next === 'delivered') {
        // Most successes find failing_since NULL already: an unconditional UPDATE would still write a new
        // version of the endpoint's row for each and queue the endpoint's concurrent outcomes on its lock.
        // A failure's outcome committing after this one sets failing_since either way, as it always could.
        [endpoint] = await tx`
          UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ${m.endpointId} AND failing_since IS NOT NULL
          RETURNING 1`;
        // else the row only has to outlive this transaction, for the log's foreign key
        if (!endpoint) [endpoint] = await tx`SELECT 1 FROM webhook_endpoints WHERE id = ${m.endpointId} FOR KEY SHARE`;
      } else {
        const pause =
          effect.pauseMs === null ? tx`paused_until` : tx`greatest(paused_until, ${fromNow(effect.pauseMs)})`;
        // SET reads the row as it was: failing_since here is the one before this attempt
        const disable = tx`(state = 'active' AND (${effect.gone}
        OR coalesce(failing_since, now()) <= now() - ${disableAfterMs} * interval '1 millisecond'))`;
        // The spell of failures begins at the earliest failed attempt's own attemptedAt, not at now():
        // enabling compares the log's attemptedAt with it, and an attempt is logged with the instant its
        // instance sent it, before this commit (and, with several instances, by another clock, or sent
        // before an attempt that failed first). least() ignores a NULL: the first failure sets it.
        [endpoint] = await tx`
        UPDATE webhook_endpoints
        SET failing_since = least(failing_since, ${outcome.attemptedAt}::timestamptz), paused_until = ${pause},
            state = CASE WHEN ${disable} THEN 'disabled' ELSE state END,
            disabled_reason = CASE WHEN ${disable} THEN ${effect.gone ? 'gone' : 'failing'} ELSE disabled_reason END,
            disabled_at = CASE WHEN ${disable} THEN now() ELSE disabled_at END
        WHERE id = ${m.endpointId}
        RETURNING 1`;
      }
      if (!endpoint) return; // deleted meanwhile: its messages and log went with it
      // then the message, only while this claim's lease holds it, and the log
      const next =
        effect.next === 'delivered' || effect.next === null
          ? tx`NULL::timestamptz`
          : effect.pauseMs === null
            ? fromNow(effect.next)
            : tx`greatest(${fromNow(effect.next)}, ${fromNow(effect.pauseMs)})`;
      const state = effect.next === 'delivered' ? 'delivered' : effect.next === null ? 'failed' : 'pending';
      await tx`
      WITH message AS (
        UPDATE webhook_messages m SET state = ${state}, attempts = m.attempts + 1, next_attempt_at = ${next}, lease_until = NULL
        WHERE m.endpoint_id = ${m.endpointId} AND m.feed_xid = ${m.feedXid}::xid8 AND m.feed_seq = ${m.feedSeq}::bigint
          AND m.state = 'pending' AND m.lease_until = ${m.leaseUntil}
        RETURNING m.next_attempt_at)
      INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, status_code, error, duration_ms, next_attempt_at)
      VALUES (${m.endpointId}, ${m.eventId}, ${m.eventType}, ${m.attempts + 1}, ${outcome.attemptedAt}, ${outcome.statusCode},
              ${outcome.error}, ${outcome.durationMs}, (SELECT next_attempt_at FROM message))`;
    },
    ASYNC_COMMIT,
  );
}

/** An endpoint of the org with its stored secrets, for a test attempt; null when there is none. */
export async function endpointForTest(
  sql: Sql,
  orgId: string,
  id: string,
): Promise<{ id: string; url: string; secret: string; previousSecret: string | null } | null> {
  const [row] = await sql<{ id: string; url: string; secret: string; previousSecret: string | null }[]>`
    SELECT id, url, secret, CASE WHEN previous_secret_until > now() THEN previous_secret END AS "previousSecret"
    FROM webhook_endpoints WHERE id = ${id} AND org_id = ${orgId}`;
  return row ?? null;
}

/** Logs a test attempt (no message, no retry, no change of state). */
export async function recordTestAttempt(
  sql: Sql,
  a: { endpointId: string; eventId: string; eventType: string } & AttemptOutcome,
): Promise<void> {
  await sql`
    INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, status_code, error, duration_ms, next_attempt_at)
    SELECT ${a.endpointId}, ${a.eventId}, ${a.eventType}, 1, ${a.attemptedAt}, ${a.statusCode}, ${a.error}, ${a.durationMs}, NULL
    WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ${a.endpointId})`;
}

export interface DeliveryAttempt {
  eventId: string;
  eventType: string;
  attempt: number;
  attemptedAt: string;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  nextAttemptAt: string | null;
}

/** Whether the org has the endpoint (a deleted one, or another org's, is not there). */
export async function endpointExists(sql: Sql, orgId: string, id: string): Promise<boolean> {
  const [row] = await sql`SELECT 1 FROM webhook_endpoints WHERE id = ${id} AND org_id = ${orgId}`;
  return row !== undefined;
}

/** A page of an endpoint's attempts, newest first, after the cursor's (attemptedAt, seq); limit + 1 rows. */
export async function listAttempts(
  sql: Sql,
  o: { endpointId: string; after?: { attemptedAt: string; seq: string }; limit: number },
): Promise<Array<DeliveryAttempt & { seq: string }>> {
  const after =
    o.after === undefined
      ? sql``
      : sql`AND (attempted_at, seq) < (${o.after.attemptedAt}::timestamptz, ${o.after.seq}::bigint)`;
  return sql<Array<DeliveryAttempt & { seq: string }>>`
    SELECT event_id AS "eventId", event_type AS "eventType", attempt, attempted_at AS "attemptedAt",
           status_code AS "statusCode", error, duration_ms AS "durationMs", next_attempt_at AS "nextAttemptAt", seq::text
    FROM webhook_attempts
    WHERE endpoint_id = ${o.endpointId} ${after}
    ORDER BY attempted_at DESC, seq DESC
    LIMIT ${o.limit + 1}`;
}

/**
 * Deletes up to `limit` finished messages and up to `limit` delivery-log entries older than the
 * retention; returns how many rows went. Given-up messages of a disabled endpoint stay, since enable
 * may start them again. Rows another transaction holds are skipped (they go at a later purge), so
 * this takes no lock that any other path waits for.
 */
export async function purgeWebhookHistory(sql: Sql, retentionMs: number, limit: number): Promise<number> {
  const before = sql`now() - ${retentionMs} * interval '1 millisecond'`;
  const [row] = await sql<{ n: number }[]>`
    WITH old_messages AS (
      SELECT m.endpoint_id, m.feed_xid, m.feed_seq FROM webhook_messages m
      JOIN webhook_endpoints e ON e.id = m.endpoint_id
      WHERE m.state <> 'pending' AND m.made_at < ${before} AND (m.state = 'delivered' OR e.state = 'active')
      LIMIT ${limit}
      FOR UPDATE OF m SKIP LOCKED
    ), gone_messages AS (
      DELETE FROM webhook_messages m USING old_messages o
      WHERE (m.endpoint_id, m.feed_xid, m.feed_seq) = (o.endpoint_id, o.feed_xid, o.feed_seq)
      RETURNING 1
    ), old_attempts AS (
      SELECT ctid FROM webhook_attempts WHERE attempted_at < ${before} LIMIT ${limit} FOR UPDATE SKIP LOCKED
    ), gone_attempts AS (
      DELETE FROM webhook_attempts a USING old_attempts o WHERE a.ctid = o.ctid RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone_messages)::int + (SELECT count(*) FROM gone_attempts)::int AS n`;
  return row!.n;
}
