import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, configWith, loadConfig } from '../src/config.js';
import { openConfiguredDatabase } from '../src/db/embedded-postgres.js';
import { runEntry } from '../scripts/lib/processes.js';

// With NODE_ENV=production, a forgotten DATABASE_URL is an error to fix, never a reason to start an
// embedded PostgreSQL (and, as root, to create a system user for it).

const REFUSAL = 'DATABASE_URL="": required when NODE_ENV=production: set it to the PostgreSQL database to use';

async function run(entry: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = runEntry(entry, args, env, Infinity);
  const { code } = await child.exited;
  return { code, output: child.output() };
}

describe('NODE_ENV=production without DATABASE_URL', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'appointments-production-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each([
    ['the server', 'src/server.ts', []],
    ['the migrate command', 'src/cli/migrate.ts', []],
    ['the keys command', 'src/cli/keys.ts', ['list']],
  ])('%s refuses to start, says to set DATABASE_URL, and starts no embedded PostgreSQL', async (_name, entry, args) => {
    const dataDir = path.join(dir, path.basename(entry, '.ts'));
    const { DATABASE_URL: _unset, ...inherited } = process.env;
    const { code, output } = await run(entry, args, {
      ...inherited,
      NODE_ENV: 'production',
      EMBEDDED_PG_DIR: dataDir,
      PORT: '0',
      HOST: '127.0.0.1',
    });
    expect(code).toBe(1);
    expect(output).toContain(`Invalid configuration in the environment:\n  ${REFUSAL}`);
    expect(output).not.toMatch(/embedded PostgreSQL with its data|initialising/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('is refused by loadConfig, with the other errors of the environment, and accepted with a DATABASE_URL', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(ConfigError);
    expect(() => loadConfig({ NODE_ENV: 'production', PORT: 'abc' })).toThrow(
      `Invalid configuration in the environment:\n  PORT="abc": Expected integer\n  ${REFUSAL}`,
    );
    expect(loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://db/appointments' })).toMatchObject({
      nodeEnv: 'production',
      databaseUrl: 'postgres://db/appointments',
    });
    expect(loadConfig({ NODE_ENV: 'development' }).databaseUrl).toBeUndefined();
  });

  it('is refused by openConfiguredDatabase for a config made by hand', async () => {
    const embeddedPgDir = path.join(dir, 'by-hand');
    await expect(
      openConfiguredDatabase(configWith({ nodeEnv: 'production', embeddedPgDir }), () => {}),
    ).rejects.toThrow(ConfigError);
    expect(existsSync(embeddedPgDir)).toBe(false);
  });
});

describe('the settings', () => {
  it('have their defaults applied once, the same for the server and for configWith', () => {
    expect(configWith()).toEqual(loadConfig({}));
    expect(configWith({ dbPoolMax: 3 })).toEqual({ ...loadConfig({ DB_POOL_MAX: '3' }) });
    expect(loadConfig({})).toEqual({
      databaseUrl: undefined,
      port: 3000,
      host: '127.0.0.1',
      logLevel: 'info',
      dbPoolMax: 10,
      embeddedPgDir: undefined,
      auth: 'off',
      rateLimitMax: 10_000,
      rateLimitWindowSeconds: 1,
      corsOrigin: undefined,
      connectionTimeoutMs: 120_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 72_000,
      shutdownDelayMs: 0,
      headersTimeoutMs: 10_000,
      syncTokenSecret: undefined,
      feedPollIntervalMs: 25,
      feedHeartbeatMs: 15_000,
      webhookSecretKey: undefined,
      webhookAllowPrivateUrls: false,
      webhookSecretOverlap: '24h',
      webhookDelivery: true,
      webhookConcurrency: 4,
      webhookTimeoutMs: 10_000,
      webhookRetrySchedule: '5s,5m,30m,2h,5h,10h,14h,20h,24h',
      webhookDisableAfter: '5d',
      webhookRetention: '30d',
      nodeEnv: undefined,
    });
  });

  it('never show SYNC_TOKEN_SECRET in an error', () => {
    expect(() => loadConfig({ SYNC_TOKEN_SECRET: 'short-secret' })).toThrow(
      'Invalid configuration in the environment:\n  SYNC_TOKEN_SECRET="***": Expected string length greater or equal to 32',
    );
  });

  it('read webhook durations in ms, s, m, h or d, and refuse anything else', () => {
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE: '100ms,2s,5m,1h,1d', WEBHOOK_DISABLE_AFTER: '250ms' })).toMatchObject({
      webhookRetrySchedule: '100ms,2s,5m,1h,1d',
      webhookDisableAfter: '250ms',
    });
    for (const [name, value] of [
      ['WEBHOOK_RETRY_SCHEDULE', '5s,'],
      ['WEBHOOK_RETRY_SCHEDULE', '5s, 5m'],
      ['WEBHOOK_RETRY_SCHEDULE', '1.5s'],
      ['WEBHOOK_DISABLE_AFTER', '5'],
      ['WEBHOOK_DISABLE_AFTER', '5w'],
    ] as const)
      expect(() => loadConfig({ [name]: value }), `${name}=${value}`).toThrow(
        `${name}="${value}": must be ${name === 'WEBHOOK_RETRY_SCHEDULE' ? 'a comma-separated list of ' : ''}a whole number and a unit`,
      );
  });

  it('never show WEBHOOK_SECRET_KEY in an error', () => {
    expect(() => loadConfig({ WEBHOOK_SECRET_KEY: 'not-base64-of-32-bytes' })).toThrow('WEBHOOK_SECRET_KEY="***"');
  });

  it('name the environment variable and the value in each error', () => {
    expect(() => loadConfig({ KEEP_ALIVE_TIMEOUT: '0', HEADERS_TIMEOUT: 'x', LOG_LEVEL: 'loud' })).toThrow(
      'Invalid configuration in the environment:\n' +
        '  LOG_LEVEL="loud": Expected union value\n' +
        '  KEEP_ALIVE_TIMEOUT="0": Expected integer to be greater or equal to 1\n' +
        '  HEADERS_TIMEOUT="x": Expected integer',
    );
  });
});
