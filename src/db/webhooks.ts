import type { Sql, TransactionSql } from 'postgres';

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

export const endpointColumns = (sql: Sql | TransactionSql) => sql`
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
  return sql.begin(async (tx) => {
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
