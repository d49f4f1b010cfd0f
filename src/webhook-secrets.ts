import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

// Webhook signing secrets (issue 14). The service must sign with them, so they are stored recoverable:
// sealed with AES-256-GCM under WEBHOOK_SECRET_KEY when it is set, as plain text otherwise (the
// server warns at start-up). A stored secret is 'aes-256-gcm:<iv>.<tag>.<ciphertext>' or
// 'plain:<secret>', base64 parts; the prefix says how to open it, so a key set later opens old plain
// secrets and seals new ones.

const SEALED = 'aes-256-gcm:';
const PLAIN = 'plain:';

/** A new secret in the Standard Webhooks form: `whsec_` and the base64 of 32 random bytes. */
export function generateSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** WEBHOOK_SECRET_KEY's value (base64 of exactly 32 bytes) as the key, or undefined when it is not one. */
export function parseSecretKey(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(text)) return undefined;
  const key = Buffer.from(text, 'base64');
  return key.length === 32 ? key : undefined;
}

/** The stored form of a secret: sealed under the key, or plain without one. */
export function sealSecret(secret: string, key: Buffer | undefined): string {
  if (key === undefined) return PLAIN + secret;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return `${SEALED}${iv.toString('base64')}.${cipher.getAuthTag().toString('base64')}.${ciphertext.toString('base64')}`;
}

export class WebhookSecretError extends Error {}

/**
 * The secret of a stored form. Throws WebhookSecretError when it cannot be opened: sealed while no key
 * is set, sealed under another key, or damaged. The message never holds the secret or the key.
 */
export function openSecret(stored: string, key: Buffer | undefined): string {
  if (stored.startsWith(PLAIN)) return stored.slice(PLAIN.length);
  if (!stored.startsWith(SEALED)) throw new WebhookSecretError('a webhook secret is stored in an unknown form');
  if (key === undefined)
    throw new WebhookSecretError('webhook secrets are encrypted, but WEBHOOK_SECRET_KEY is not set');
  const [iv, tag, ciphertext] = stored.slice(SEALED.length).split('.');
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv!, 'base64'));
    decipher.setAuthTag(Buffer.from(tag!, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext!, 'base64')), decipher.final()]).toString('utf8');
  } catch {
    throw new WebhookSecretError('a webhook secret cannot be decrypted with WEBHOOK_SECRET_KEY');
  }
}
