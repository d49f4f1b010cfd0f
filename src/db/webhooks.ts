import type { Sql } from 'postgres';
import { transaction } from './transactions.js';

// The SQL of webhook endpoints (migrations/1764400000000_webhooks.sql). Secrets are stored as
// src/webhook-secrets.ts seals them; nothing here opens one.

/** At most this many endpoints per org: disabled ones count, deleted ones do not. */
export const MAX_ENDPOINTS_PER_ORG = 20;

export interface WebhookEndpoint {
  id: string;
  orgId: string;
  url: string;
  description: string;
  state: 'active' | 'disabled';
  disabledReason: 'gone' | 'failing' | null;
  createdAt: string;
}

/** The endpoint with its stored secrets, for signing. */
export interface WebhookEndpointSecrets extends WebhookEndpoint {
  secret: string;
  previousSecret: string | null;
  previousSecretUntil: string | null;
}

export const endpointColumns = (sql: Sql) => sql`
  id, org_id AS "orgId", url, description, state, disabled_reason AS "disabledReason", created_at AS "createdAt"`;

/**
 * A new endpoint, or null when the org has MAX_ENDPOINTS_PER_ORG already. The org's creates take turns
 * (an advisory lock), so that concurrent ones cannot both see room for one more. The endpoint starts
 * where the feed's horizon stands for the inserting statement's snapshot and skips what that snapshot
 * saw: it gets exactly the changes not visible to the transaction that created it.
 */
export async function createWebhookEndpoint(
  sql: Sql,
  e: { orgId: string; url: string; description: string; secret: string },
): Promise<WebhookEndpoint | null> {
  return transaction(sql, async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('webhook_endpoints'), hashtext(${e.orgId}))`;
    const [row] = await tx<WebhookEndpoint[]>`
      INSERT INTO webhook_endpoints (org_id, url, description, secret, feed_xid, created_snapshot)
      SELECT ${e.orgId}, ${e.url}, ${e.description}, ${e.secret},
             pg_snapshot_xmin(pg_current_snapshot()), pg_current_snapshot()
      WHERE (SELECT count(*) FROM webhook_endpoints WHERE org_id = ${e.orgId}) < ${MAX_ENDPOINTS_PER_ORG}
      RETURNING ${endpointColumns(tx)}`;
    return row ?? null;
  });
}

/** The org's endpoints, oldest first. */
export function listWebhookEndpoints(sql: Sql, orgId: string): Promise<WebhookEndpoint[]> {
  return sql<WebhookEndpoint[]>`
    SELECT ${endpointColumns(sql)} FROM webhook_endpoints WHERE org_id = ${orgId} ORDER BY created_at, id`;
}

/** The endpoint of this org with this id (a UUID), or null. */
export async function getWebhookEndpoint(sql: Sql, orgId: string, id: string): Promise<WebhookEndpoint | null> {
  const [row] = await sql<WebhookEndpoint[]>`
    SELECT ${endpointColumns(sql)} FROM webhook_endpoints
    WHERE org_id = ${orgId} AND id = ${id}`;
  return row ?? null;
}

/**
 * Deletes the endpoint with its messages and attempts; false when the org has no such endpoint. The
 * DELETE locks the endpoint row before its cascade reaches the messages, the lock order of every
 * path; a worker that claims a message after it finds no endpoint and starts no attempt.
 */
export async function deleteWebhookEndpoint(sql: Sql, orgId: string, id: string): Promise<boolean> {
  const rows = await sql`
    DELETE FROM webhook_endpoints WHERE org_id = ${orgId} AND id = ${id} RETURNING id`;
  return rows.length > 0;
}

/**
 * Makes a disabled endpoint active again, or leaves an active one as it is; null when the org has no
 * such endpoint. What it had not delivered since it began failing (failing_since: the first failed
 * attempt since the last success) starts again with a fresh schedule: every message still pending,
 * and every one given up (or refused with 410) whose attempts reached into that time. Messages given up
 * before it, in an earlier spell of failures that a success ended, stay given up. The changes made
 * while it was disabled have no messages yet: the dispatcher makes them from the endpoint's feed
 * position, which stayed where it was. One transaction, the endpoint row locked before its messages.
 */
export async function enableWebhookEndpoint(sql: Sql, orgId: string, id: string): Promise<WebhookEndpoint | null> {
  return transaction(sql, async (tx) => {
    const [endpoint] = await tx<WebhookEndpoint[]>`
      SELECT ${endpointColumns(tx)} FROM webhook_endpoints WHERE org_id = ${orgId} AND id = ${id} FOR UPDATE`;
    if (!endpoint) return null;
    if (endpoint.state === 'active') return endpoint;
    await tx`
      UPDATE webhook_messages m
      SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), lease_until = NULL
      FROM webhook_endpoints e
      WHERE e.id = ${id} AND m.endpoint_id = e.id AND m.state <> 'delivered'
        AND (m.state = 'pending' OR EXISTS (
          SELECT FROM webhook_attempts a
          WHERE a.endpoint_id = m.endpoint_id AND a.event_id = m.event_id
            AND a.attempted_at >= coalesce(e.failing_since, e.disabled_at)))`;
    const [enabled] = await tx<WebhookEndpoint[]>`
      UPDATE webhook_endpoints
      SET state = 'active', disabled_reason = NULL, disabled_at = NULL, failing_since = NULL, paused_until = NULL
      WHERE id = ${id}
      RETURNING ${endpointColumns(tx)}`;
    return enabled!;
  });
}

/**
 * Gives the endpoint a new (sealed) secret; the current one becomes the previous one, which still
 * signs for `overlapMs`, and the one before it is dropped. Null when the org has no such endpoint.
 */
export async function rotateWebhookSecret(
  sql: Sql,
  orgId: string,
  id: string,
  sealedSecret: string,
  overlapMs: number,
): Promise<WebhookEndpoint | null> {
  const [row] = await sql<WebhookEndpoint[]>`
    UPDATE webhook_endpoints
    SET previous_secret = secret,
        previous_secret_until = clock_timestamp() + ${overlapMs} * interval '1 millisecond',
        secret = ${sealedSecret}
    WHERE org_id = ${orgId} AND id = ${id}
    RETURNING ${endpointColumns(sql)}`;
  return row ?? null;
}

/** Every stored secret that may still sign: each endpoint's current one, and its previous one while it overlaps. */
export function listStoredSecrets(sql: Sql): Promise<{ id: string; stored: string }[]> {
  return sql<{ id: string; stored: string }[]>`
    SELECT id, secret AS stored FROM webhook_endpoints
    UNION ALL
    SELECT id, previous_secret FROM webhook_endpoints
    WHERE previous_secret IS NOT NULL AND previous_secret_until > clock_timestamp()
    ORDER BY id`;
}

/**
 * Replaces a stored secret by another form of it (a plain one by its sealed form), only while it is
 * still stored as `stored`: a rotation in between, or another instance that got there first, wins.
 */
export async function replaceStoredSecret(sql: Sql, id: string, stored: string, replacement: string): Promise<void> {
  await sql`
    UPDATE webhook_endpoints
    SET secret = CASE WHEN secret = ${stored} THEN ${replacement} ELSE secret END,
        previous_secret = CASE WHEN previous_secret = ${stored} THEN ${replacement} ELSE previous_secret END
    WHERE id = ${id} AND (secret = ${stored} OR previous_secret = ${stored})`;
}
