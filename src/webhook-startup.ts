import type { FastifyBaseLogger } from 'fastify';
import type { Sql } from 'postgres';
import { ConfigError } from './config.js';
import { listStoredSecrets, replaceStoredSecret } from './db/webhooks.js';
import { openSecret, parseSecretKey, sealSecret, WebhookSecretError } from './webhook-secrets.js';

// The start-up rules of webhook secrets (issue 14): without WEBHOOK_SECRET_KEY they are stored in plain
// text, which the server says at every start, and once a key is set the plain ones stored before are
// encrypted; a stored secret the service cannot open would make every delivery of its endpoint fail,
// so the server refuses to start instead.

/** WEBHOOK_SECRET_KEY as the key (config.ts has checked its form), or undefined when it is unset. */
export function webhookSecretKeyOf(text: string | undefined): Buffer | undefined {
  if (text === undefined) return undefined;
  const key = parseSecretKey(text);
  if (key === undefined) throw new ConfigError('WEBHOOK_SECRET_KEY must be the base64 of 32 bytes');
  return key;
}

export const PLAIN_SECRETS_WARNING =
  'WEBHOOK_SECRET_KEY is not set: webhook signing secrets are stored in the database in plain text; ' +
  'set it to the base64 of 32 bytes (openssl rand -base64 32) to encrypt them';

/** The most endpoint ids a refusal names. */
const NAMED_AT_MOST = 10;

/**
 * Warns when the key is unset, and encrypts the plain secrets when it is set; throws WebhookSecretError,
 * whose message names the endpoints but shows no secret and no key, when a stored secret that may
 * still sign cannot be opened.
 */
export async function checkWebhookSecrets(sql: Sql, key: Buffer | undefined, log: FastifyBaseLogger): Promise<void> {
  if (key === undefined) log.warn(PLAIN_SECRETS_WARNING);
  const problems = new Map<string, string[]>();
  const plain: { id: string; stored: string; secret: string }[] = [];
  for (const { id, stored } of await listStoredSecrets(sql)) {
    try {
      const secret = openSecret(stored, key);
      if (key !== undefined && stored === sealSecret(secret, undefined)) plain.push({ id, stored, secret });
    } catch (error) {
      if (!(error instanceof WebhookSecretError)) throw error;
      const ids = problems.get(error.message) ?? [];
      if (!ids.includes(id)) ids.push(id);
      problems.set(error.message, ids);
    }
  }
  // only once every secret opens: a wrong key must not seal the plain ones under itself
  if (problems.size === 0) {
    for (const { id, stored, secret } of plain) await replaceStoredSecret(sql, id, stored, sealSecret(secret, key));
    if (plain.length > 0)
      log.info(`${plain.length} webhook secrets stored in plain text are now encrypted with WEBHOOK_SECRET_KEY`);
    return;
  }
  const lines = [...problems].map(([reason, ids]) => {
    const named = ids.slice(0, NAMED_AT_MOST).join(', ') + (ids.length > NAMED_AT_MOST ? ', ...' : '');
    return `  ${reason}: ${ids.length} endpoint${ids.length === 1 ? '' : 's'} (${named})`;
  });
  throw new WebhookSecretError(
    `Stored webhook secrets cannot be opened, so their endpoints could not be signed for:\n${lines.join('\n')}\n` +
      'Start with the WEBHOOK_SECRET_KEY they were encrypted with, or delete those endpoints.',
  );
}
