import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { DatabaseUrlError, parseDatabaseUrl, REPLICA_TARGETS, withoutPassword } from './db/database-url.js';
import { DURATION_LIST_PATTERN, DURATION_PATTERN, DURATION_RULE } from './durations.js';

/**
 * Every setting of the service, said once: its key in Config, the environment variable it is read from
 * (`env`), its type, bounds, default and meaning. loadConfig reads the environment through it, Config
 * is its static type, buildApp and the server take the result as it is, and the configuration table
 * of the operations guide follows it. A new setting is one more entry here.
 */
export const Settings = Type.Object({
  databaseUrl: Type.Optional(
    Type.String({
      env: 'DATABASE_URL',
      pattern: '^postgres(ql)?://',
      description:
        'The PostgreSQL database; several hosts (`postgres://h1:5432,h2:5432/db?target_session_attrs=read-write`) ' +
        'are tried in order for the one that answers read-write. Unset: an embedded PostgreSQL is started, except in production.',
    }),
  ),
  databaseMigrationUrl: Type.Optional(
    Type.String({
      env: 'DATABASE_MIGRATION_URL',
      pattern: '^postgres(ql)?://',
      description:
        'The same database as DATABASE_URL over a direct connection, for the migrations (at start, `npm run migrate`, ' +
        '`npm run keys`): behind PgBouncer in transaction mode, whose pooled connections would keep the migration lock. ' +
        'Unset: DATABASE_URL.',
    }),
  ),
  databaseReplicaUrl: Type.Optional(
    Type.String({
      env: 'DATABASE_REPLICA_URL',
      pattern: '^postgres(ql)?://',
      description:
        'A streaming replica of DATABASE_URL: point-in-time reads (`at`) go there once it has replayed every write ' +
        'they could see, the others to the primary. Several hosts: the first that answers (`target_session_attrs=standby`: ' +
        'the first in recovery). Unset: every read goes to DATABASE_URL.',
    }),
  ),
  port: Type.Integer({ env: 'PORT', minimum: 0, maximum: 65535, default: 3000, description: 'The HTTP port.' }),
  host: Type.String({ env: 'HOST', minLength: 1, default: '127.0.0.1', description: 'The address to listen on.' }),
  logLevel: Type.Union(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    { env: 'LOG_LEVEL', default: 'info', description: 'The pino log level.' },
  ),
  dbPoolMax: Type.Integer({
    env: 'DB_POOL_MAX',
    minimum: 1,
    maximum: 1000,
    default: 10,
    description: 'Connections in the pool of one instance.',
  }),
  embeddedPgDir: Type.Optional(
    Type.String({
      env: 'EMBEDDED_PG_DIR',
      minLength: 1,
      description: 'The data folder of the embedded PostgreSQL (without DATABASE_URL). Unset: .data/ of the project.',
    }),
  ),
  auth: Type.Union([Type.Literal('off'), Type.Literal('required')], {
    env: 'AUTH',
    default: 'off',
    description: '`required`: every /api request needs a key, and the key decides the organization.',
  }),
  // Per key (or per client address without keys) and window. Far above what one client gets from this
  // service on a small machine (the smoke script and load tests at 50 connections stay well below it), so
  // it only stops a runaway or abusive client.
  rateLimitMax: Type.Integer({
    env: 'RATE_LIMIT_MAX',
    minimum: 0,
    maximum: 1_000_000_000,
    default: 10_000,
    description: 'Requests per window per key (or client address); 0 turns limiting off.',
  }),
  rateLimitWindowSeconds: Type.Integer({
    env: 'RATE_LIMIT_WINDOW',
    minimum: 1,
    maximum: 86_400,
    default: 1,
    description: 'The rate-limit window, in seconds.',
  }),
  corsOrigin: Type.Optional(
    Type.String({
      env: 'CORS_ORIGIN',
      pattern: '^(\\*|https?://[^,\\s]+(,https?://[^,\\s]+)*)$',
      description: '`*` or a comma-separated list of origins. Unset: no CORS headers at all.',
    }),
  ),
  connectionTimeoutMs: Type.Integer({
    env: 'CONNECTION_TIMEOUT',
    minimum: 0,
    maximum: 3_600_000,
    default: 120_000,
    description: 'A socket idle this long is closed (Fastify connectionTimeout), in ms.',
  }),
  requestTimeoutMs: Type.Integer({
    env: 'REQUEST_TIMEOUT',
    minimum: 0,
    maximum: 3_600_000,
    default: 30_000,
    description: 'The whole request (headers and body) must arrive within this time (Node requestTimeout), in ms.',
  }),
  // above the 60 s idle timeout of common load balancers, so that they close first
  keepAliveTimeoutMs: Type.Integer({
    env: 'KEEP_ALIVE_TIMEOUT',
    minimum: 1,
    maximum: 3_600_000,
    default: 72_000,
    description: 'Idle keep-alive connections close after this time, in ms.',
  }),
  // a load balancer that polls /ready takes the instance out before it stops accepting
  shutdownDelayMs: Type.Integer({
    env: 'SHUTDOWN_DELAY',
    minimum: 0,
    maximum: 600_000,
    default: 0,
    description:
      'After SIGTERM, /ready answers 503 for this long while requests are still served, then the close begins, in ms.',
  }),
  headersTimeoutMs: Type.Integer({
    env: 'HEADERS_TIMEOUT',
    minimum: 1,
    maximum: 3_600_000,
    default: 10_000,
    description:
      'The headers must arrive within this time (Node headersTimeout; slow-header clients are cut off), in ms.',
  }),
  syncTokenSecret: Type.Optional(
    Type.String({
      env: 'SYNC_TOKEN_SECRET',
      minLength: 32,
      description:
        'Signs change-feed tokens (HMAC-SHA256); at least 32 characters, the same on every instance. ' +
        'Unset: a secret generated once and kept in the database.',
    }),
  ),
  feedPollIntervalMs: Type.Integer({
    env: 'FEED_POLL_INTERVAL',
    minimum: 5,
    maximum: 10_000,
    default: 25,
    description:
      'How often one instance asks the database for new changes while long-polls or event streams wait, in ms.',
  }),
  // below the idle timeouts of common proxies and load balancers (often 30 to 60 s), so that they
  // do not close a stream that simply has nothing to say
  feedHeartbeatMs: Type.Integer({
    env: 'FEED_HEARTBEAT_INTERVAL',
    minimum: 100,
    maximum: 3_600_000,
    default: 15_000,
    description: 'An idle event stream (/api/changes/stream) gets a comment line this often, in ms.',
  }),
  webhookSecretKey: Type.Optional(
    Type.String({
      env: 'WEBHOOK_SECRET_KEY',
      pattern: '^[A-Za-z0-9+/]{43}=$',
      hint: 'must be the base64 of 32 bytes, such as `openssl rand -base64 32` prints',
      description:
        'Encrypts the webhook signing secrets stored in the database (AES-256-GCM); the base64 of 32 bytes, ' +
        'the same on every instance. Unset: they are stored in plain text, with a warning at start-up.',
    }),
  ),
  webhookAllowPrivateUrls: Type.Boolean({
    env: 'WEBHOOK_ALLOW_PRIVATE_URLS',
    default: false,
    description:
      '`true`: webhook URLs may be http:// and point at loopback, private and link-local addresses ' +
      '(tests, private networks). `false`: https:// to public addresses only.',
  }),
  webhookSecretOverlap: Type.String({
    env: 'WEBHOOK_SECRET_OVERLAP',
    pattern: DURATION_PATTERN,
    hint: `must be ${DURATION_RULE}`,
    default: '24h',
    description: 'After a rotation, deliveries are signed with the previous secret too for this long.',
  }),
  webhookDelivery: Type.Boolean({
    env: 'WEBHOOK_DELIVERY',
    default: true,
    description:
      '`false`: this instance makes no webhook deliveries (an API-only instance; others deliver). ' +
      'Test attempts (POST /api/webhooks/{id}/test) are still made.',
  }),
  webhookConcurrency: Type.Integer({
    env: 'WEBHOOK_CONCURRENCY',
    minimum: 1,
    maximum: 1000,
    default: 4,
    description: 'Webhook attempts in flight per endpoint, counted across all instances.',
  }),
  webhookTimeoutMs: Type.Integer({
    env: 'WEBHOOK_TIMEOUT_MS',
    minimum: 1,
    maximum: 600_000,
    default: 10_000,
    description: 'A webhook attempt that has no 2xx status line within this time has failed, in ms.',
  }),
  webhookRetrySchedule: Type.String({
    env: 'WEBHOOK_RETRY_SCHEDULE',
    pattern: DURATION_LIST_PATTERN,
    hint: `must be a comma-separated list of ${DURATION_RULE}`,
    default: '5s,5m,30m,2h,5h,10h,14h,20h,24h',
    description: 'The delays before each retry of a failed webhook attempt (ms, s, m, h or d each).',
  }),
  webhookDisableAfter: Type.String({
    env: 'WEBHOOK_DISABLE_AFTER',
    pattern: DURATION_PATTERN,
    hint: `must be ${DURATION_RULE}`,
    default: '5d',
    description: 'An endpoint whose attempts have all failed for this long is disabled.',
  }),
  webhookRetention: Type.String({
    env: 'WEBHOOK_RETENTION',
    pattern: DURATION_PATTERN,
    hint: `must be ${DURATION_RULE}`,
    default: '30d',
    description:
      'Delivered webhook events, events given up by active endpoints, and delivery-log entries older than this are deleted.',
  }),
  metricsToken: Type.Optional(
    Type.String({
      env: 'METRICS_TOKEN',
      minLength: 16,
      description:
        'GET /metrics then needs `Authorization: Bearer <this token>` (at least 16 characters). ' +
        'Unset: /metrics answers anyone who reaches the port.',
    }),
  ),
  nodeEnv: Type.Optional(
    Type.String({
      env: 'NODE_ENV',
      description: '`production`: DATABASE_URL is required, and no embedded PostgreSQL is ever started.',
    }),
  ),
});

/** The service's settings, defaults applied. */
export type Config = Static<typeof Settings>;

/** The environment variable of each setting. */
export const ENV_NAMES = Object.fromEntries(
  Object.entries(Settings.properties).map(([key, schema]) => [key, (schema as unknown as { env: string }).env]),
) as Record<keyof Config, string>;

export class ConfigError extends Error {}

/** Settings whose value never appears in a message. */
const SECRET_SETTINGS = new Set(['syncTokenSecret', 'webhookSecretKey', 'metricsToken']);

/** Settings that are database URLs: shown without their password, read as libpq reads them. */
const DATABASE_URLS: ReadonlySet<string> = new Set(['databaseUrl', 'databaseMigrationUrl', 'databaseReplicaUrl']);

/** Why the service refuses to start in production without DATABASE_URL. */
export const PRODUCTION_NEEDS_DATABASE_URL =
  'required when NODE_ENV=production: set it to the PostgreSQL database to use ' +
  '(postgres://user:password@host:5432/database); an embedded PostgreSQL is started only outside production';

/** Reads and validates the environment; the only reader of process.env for the service's settings. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const value = env[name];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  // Value.Convert reads "1.5", "true" and "1e3" as the integer 1 and "0x10" as 16: a number in the
  // environment must be written in digits, or it is refused as not an integer
  const input: Record<string, unknown> = { ...raw };
  for (const [key, schema] of Object.entries(Settings.properties)) {
    const value = raw[key];
    if ((schema as { type?: string }).type === 'integer' && typeof value === 'string' && !/^\d{1,10}$/.test(value))
      input[key] = Number.NaN;
    // and it reads "1", "0" and "TRUE" as booleans: a boolean is written `true` or `false`
    if ((schema as { type?: string }).type === 'boolean' && typeof value === 'string' && !/^(true|false)$/.test(value))
      input[key] = Number.NaN;
  }
  const converted = Value.Default(Settings, Value.Convert(Settings, input)) as Record<string, unknown>;
  const lines = [...Value.Errors(Settings, converted)].map((e) => {
    const key = e.path.slice(1);
    const name = ENV_NAMES[key as keyof Config] ?? (key || '(environment)');
    const value = DATABASE_URLS.has(key)
      ? withoutPassword(String(raw[key]))
      : SECRET_SETTINGS.has(key)
        ? '***'
        : raw[key];
    // a pattern's own words, where the schema's message would only quote the regular expression
    const hint = (Settings.properties[key as keyof Config] as { hint?: string } | undefined)?.hint;
    return `  ${name}=${JSON.stringify(value ?? '')}: ${hint ?? e.message}`;
  });
  for (const key of DATABASE_URLS) {
    const url = converted[key];
    if (typeof url !== 'string' || !/^postgres(ql)?:\/\//.test(url)) continue;
    try {
      parseDatabaseUrl(url, key === 'databaseReplicaUrl' ? REPLICA_TARGETS : undefined);
    } catch (error) {
      if (!(error instanceof DatabaseUrlError)) throw error;
      lines.push(`  ${ENV_NAMES[key as keyof Config]}=${JSON.stringify(withoutPassword(url))}: ${error.message}`);
    }
  }
  if (converted.databaseMigrationUrl !== undefined && converted.databaseUrl === undefined)
    lines.push(
      `  ${ENV_NAMES.databaseMigrationUrl}="${withoutPassword(String(converted.databaseMigrationUrl))}": needs DATABASE_URL, whose database it reaches directly`,
    );
  if (converted.nodeEnv === 'production' && converted.databaseUrl === undefined)
    lines.push(`  ${ENV_NAMES.databaseUrl}="": ${PRODUCTION_NEEDS_DATABASE_URL}`);
  if (lines.length > 0)
    throw new ConfigError(`Invalid configuration in the environment:\n${[...new Set(lines)].join('\n')}`);
  // every setting as a key, an unset optional one as undefined
  const config: Record<string, unknown> = {};
  for (const key of Object.keys(Settings.properties)) config[key] = converted[key];
  return config as Config;
}

/**
 * The settings of an empty environment (every default), then `overrides`: for the tests and scripts
 * that build the app themselves, so that they run with the server's defaults.
 */
export function configWith(overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({}), ...overrides };
}

/** loadConfig for the commands (the server, migrate, keys): an invalid environment is told and exits 1. */
export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(1);
  }
}
