import type { Sql } from 'postgres';
import { createWebhookEndpoint } from '../../src/db/webhooks.js';
import { generateSecret, sealSecret } from '../../src/webhook-secrets.js';

/**
 * An endpoint made as POST /api/webhooks makes it (its secret stored in plain text, as without
 * WEBHOOK_SECRET_KEY), for the delivery tests; returns its id and secret.
 */
export async function createEndpoint(sql: Sql, orgId: string, url: string): Promise<{ id: string; secret: string }> {
  const secret = generateSecret();
  const endpoint = await createWebhookEndpoint(sql, {
    orgId,
    url,
    description: '',
    secret: sealSecret(secret, undefined),
  });
  if (!endpoint) throw new Error(`the org ${orgId} has its 20 endpoints already`);
  return { id: endpoint.id, secret };
}
