import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createWebhookEndpoint } from '../src/db/webhooks.js';
import { parseDuration, parseDurationList } from '../src/durations.js';
import { generateSecret, openSecret, parseSecretKey, sealSecret } from '../src/webhook-secrets.js';
import { PLAIN_SECRETS_WARNING } from '../src/webhook-startup.js';
import { runEntry, spawnServer, waitReady } from '../scripts/lib/processes.js';
import { createTestDatabase } from './support/database.js';
import { newOrg } from './support/fixtures.js';

// The start-up rules of webhook secrets, with the real server as it starts in production: a warning
// when WEBHOOK_SECRET_KEY is unset; no start when a stored secret cannot be opened, with a message
// that names the endpoints and shows no secret and no key. And the settings themselves.

const KEY_TEXT = randomBytes(32).toString('base64');
const OTHER_KEY_TEXT = randomBytes(32).toString('base64');

async function start(databaseUrl: string, env: Record<string, string>) {
  const server = await spawnServer(databaseUrl, env);
  try {
    await waitReady(server);
    return server.output();
  } finally {
    await server.kill();
  }
}

async function refused(databaseUrl: string, env: Record<string, string>) {
  const server = await spawnServer(databaseUrl, env);
  const exited = await Promise.race([
    server.exited,
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000)),
  ]);
  await server.kill();
  return { exited, output: server.output() };
}

describe('the server at start-up', () => {
  let databaseUrl: string;
  let sql: Sql;
  const secrets: string[] = [];
  let sealedId = '';
  let plainId = '';
  const storedSecret = async (id: string) =>
    (await sql<{ secret: string }[]>`SELECT secret FROM webhook_endpoints WHERE id = ${id}`)[0]!.secret;

  const addEndpoint = async (keyText: string | undefined) => {
    const secret = generateSecret();
    secrets.push(secret);
    const key = keyText === undefined ? undefined : parseSecretKey(keyText);
    const endpoint = await createWebhookEndpoint(sql, {
      orgId: newOrg(),
      url: 'https://93.184.215.14/hook',
      description: '',
      secret: sealSecret(secret, key),
    });
    return endpoint!.id;
  };

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  });
  afterAll(() => sql.end());

  it('warns that secrets are stored in plain text when WEBHOOK_SECRET_KEY is unset', async () => {
    plainId = await addEndpoint(undefined);
    const output = await start(databaseUrl, {});
    expect(output).toContain(PLAIN_SECRETS_WARNING);
    expect(await storedSecret(plainId)).toBe(`plain:${secrets[0]}`);
  });

  it('refuses to start when a stored secret is sealed and WEBHOOK_SECRET_KEY is unset', async () => {
    sealedId = await addEndpoint(KEY_TEXT);
    const { exited, output } = await refused(databaseUrl, {});
    expect(exited).toEqual({ code: 1, signal: null });
    expect(output).toContain('Stored webhook secrets cannot be opened');
    expect(output).toContain(
      `webhook secrets are encrypted, but WEBHOOK_SECRET_KEY is not set: 1 endpoint (${sealedId})`,
    );
    expect(output).toContain('Start with the WEBHOOK_SECRET_KEY they were encrypted with, or delete those endpoints.');
    for (const secret of secrets) expect(output).not.toContain(secret.slice('whsec_'.length, 20));
  });

  it('refuses to start under another key, and shows neither secret nor key', async () => {
    const { exited, output } = await refused(databaseUrl, { WEBHOOK_SECRET_KEY: OTHER_KEY_TEXT });
    expect(exited).toEqual({ code: 1, signal: null });
    expect(output).toContain(`a webhook secret cannot be decrypted with WEBHOOK_SECRET_KEY: 1 endpoint (${sealedId})`);
    expect(output).not.toContain(OTHER_KEY_TEXT);
    expect(output).not.toContain(KEY_TEXT);
    // a wrong key seals nothing under itself
    expect(await storedSecret(plainId)).toBe(`plain:${secrets[0]}`);
    for (const secret of secrets) expect(output).not.toContain(secret.slice('whsec_'.length, 20));
  });

  it('refuses a previous secret it cannot open while it still signs, and ignores one past its overlap', async () => {
    await sql`
      UPDATE webhook_endpoints
      SET previous_secret = ${sealSecret(generateSecret(), parseSecretKey(OTHER_KEY_TEXT))},
          previous_secret_until = clock_timestamp() + interval '1 hour'
      WHERE id = ${sealedId}`;
    const { exited, output } = await refused(databaseUrl, { WEBHOOK_SECRET_KEY: KEY_TEXT });
    expect(exited).toEqual({ code: 1, signal: null });
    expect(output).toContain(`a webhook secret cannot be decrypted with WEBHOOK_SECRET_KEY: 1 endpoint (${sealedId})`);

    await sql`UPDATE webhook_endpoints SET previous_secret_until = clock_timestamp() WHERE id = ${sealedId}`;
    // the right key opens the sealed secret and the plain one, and encrypts the plain one; no warning then
    const started = await start(databaseUrl, { WEBHOOK_SECRET_KEY: KEY_TEXT });
    expect(started).not.toContain(PLAIN_SECRETS_WARNING);
    expect(started).not.toContain('cannot be');
    const resealed = await storedSecret(plainId);
    expect(resealed).toMatch(/^aes-256-gcm:/);
    expect(openSecret(resealed, parseSecretKey(KEY_TEXT))).toBe(secrets[0]);
    // and starts again under it
    expect(await start(databaseUrl, { WEBHOOK_SECRET_KEY: KEY_TEXT })).not.toContain('cannot be');
  });

  it('refuses a WEBHOOK_SECRET_KEY that is not the base64 of 32 bytes, without showing it', async () => {
    const wrong = randomBytes(16).toString('base64');
    const run = runEntry('src/server.ts', [], { ...process.env, DATABASE_URL: databaseUrl, WEBHOOK_SECRET_KEY: wrong });
    const { code } = await run.exited;
    expect(code).toBe(1);
    expect(run.output()).toContain(
      'Invalid configuration in the environment:\n  WEBHOOK_SECRET_KEY="***": must be the base64 of 32 bytes, such as `openssl rand -base64 32` prints',
    );
    expect(run.output()).not.toContain(wrong);
  });
});

describe('the webhook settings', () => {
  it('have their defaults', () => {
    expect(loadConfig({})).toMatchObject({
      webhookSecretKey: undefined,
      webhookAllowPrivateUrls: false,
      webhookSecretOverlap: '24h',
    });
    expect(
      loadConfig({ WEBHOOK_ALLOW_PRIVATE_URLS: 'true', WEBHOOK_SECRET_OVERLAP: '90s', WEBHOOK_SECRET_KEY: KEY_TEXT }),
    ).toMatchObject({ webhookAllowPrivateUrls: true, webhookSecretOverlap: '90s', webhookSecretKey: KEY_TEXT });
  });

  it('take a boolean written true or false only', () => {
    expect(loadConfig({ WEBHOOK_ALLOW_PRIVATE_URLS: 'false' }).webhookAllowPrivateUrls).toBe(false);
    for (const value of ['1', '0', 'TRUE', 'yes'])
      expect(() => loadConfig({ WEBHOOK_ALLOW_PRIVATE_URLS: value }), value).toThrow(
        `Invalid configuration in the environment:\n  WEBHOOK_ALLOW_PRIVATE_URLS="${value}": Expected boolean`,
      );
  });

  it('name the variable in each error, and never show the key', () => {
    expect(() =>
      loadConfig({
        WEBHOOK_SECRET_KEY: `${KEY_TEXT}x`,
        WEBHOOK_ALLOW_PRIVATE_URLS: 'maybe',
        WEBHOOK_SECRET_OVERLAP: '1 day',
      }),
    ).toThrow(
      'Invalid configuration in the environment:\n' +
        '  WEBHOOK_SECRET_KEY="***": must be the base64 of 32 bytes, such as `openssl rand -base64 32` prints\n' +
        '  WEBHOOK_ALLOW_PRIVATE_URLS="maybe": Expected boolean\n' +
        '  WEBHOOK_SECRET_OVERLAP="1 day": must be a whole number and a unit (ms, s, m, h or d), such as 90s, 30m, 24h or 5d',
    );
  });
});

describe('durations', () => {
  it('are a whole number and a unit', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('5d')).toBe(432_000_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('0s')).toBe(0);
    for (const bad of ['', '24', 'h', '1.5h', '-1s', '1 h', '1H', '1w', '1s,2s', '1234567890s'])
      expect(parseDuration(bad), bad).toBeUndefined();
  });

  it('come in lists separated by commas', () => {
    expect(parseDurationList('5s,5m,30m,2h,5h,10h,14h,20h,24h')).toEqual([
      5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000, 72_000_000, 86_400_000,
    ]);
    expect(parseDurationList('1s')).toEqual([1_000]);
    for (const bad of ['', '1s,', ',1s', '1s, 2s', '1s,,2s', '1s,x'])
      expect(parseDurationList(bad), bad).toBeUndefined();
  });
});
