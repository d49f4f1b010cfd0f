import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** Defaults shared by the environment and buildApp's options, so tests and scripts run the server's settings. */
export const DEFAULTS = {
  // Per key (or per client address without keys) and window. Far above what one client gets from this
  // service on a small machine (the smoke script and load tests at 50 connections stay well below it), so
  // it only stops a runaway or abusive client; 0 turns limiting off.
  rateLimitMax: 10_000,
  rateLimitWindowSeconds: 1,
  // A socket idle this long is closed (Fastify's connectionTimeout).
  connectionTimeoutMs: 120_000,
  // The whole request (headers and body) must arrive within this time (Node's requestTimeout).
  requestTimeoutMs: 30_000,
  // Idle keep-alive connections close after this; above the 60 s idle timeout of common load balancers.
  keepAliveTimeoutMs: 72_000,
  // The headers must arrive within this time (Node's headersTimeout; slow-header clients are cut off).
  headersTimeoutMs: 10_000,
} as const;

const Env = Type.Object({
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((level) => Type.Literal(level)),
    { default: 'info' },
  ),
  DB_POOL_MAX: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
  EMBEDDED_PG_DIR: Type.Optional(Type.String({ minLength: 1 })),
  AUTH: Type.Union([Type.Literal('off'), Type.Literal('required')], { default: 'off' }),
  RATE_LIMIT_MAX: Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: DEFAULTS.rateLimitMax }),
  RATE_LIMIT_WINDOW: Type.Integer({ minimum: 1, maximum: 86_400, default: DEFAULTS.rateLimitWindowSeconds }),
  CORS_ORIGIN: Type.Optional(Type.String({ pattern: '^(\\*|https?://[^,\\s]+(,https?://[^,\\s]+)*)$' })),
  CONNECTION_TIMEOUT: Type.Integer({ minimum: 0, maximum: 3_600_000, default: DEFAULTS.connectionTimeoutMs }),
  REQUEST_TIMEOUT: Type.Integer({ minimum: 0, maximum: 3_600_000, default: DEFAULTS.requestTimeoutMs }),
  KEEP_ALIVE_TIMEOUT: Type.Integer({ minimum: 1, maximum: 3_600_000, default: DEFAULTS.keepAliveTimeoutMs }),
  HEADERS_TIMEOUT: Type.Integer({ minimum: 1, maximum: 3_600_000, default: DEFAULTS.headersTimeoutMs }),
});

export interface Config {
  /** Unset: the server starts an embedded PostgreSQL. */
  databaseUrl?: string;
  port: number;
  host: string;
  logLevel: Static<typeof Env>['LOG_LEVEL'];
  dbPoolMax: number;
  embeddedPgDir?: string;
  /** `required`: every /api request needs a key, and the key decides the organization. */
  auth: 'off' | 'required';
  /** Requests per window per key or client address; 0 = no limit. */
  rateLimitMax: number;
  rateLimitWindowSeconds: number;
  /** Unset: no CORS headers at all. `*` or a comma-separated list of origins. */
  corsOrigin?: string;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  headersTimeoutMs: number;
}

export class ConfigError extends Error {}

/** Reads and validates the environment; the only reader of process.env for the service's settings. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(Env.properties)) {
    const value = env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const converted = Value.Default(Env, Value.Convert(Env, raw));
  const errors = [...Value.Errors(Env, converted)];
  if (errors.length > 0) {
    const lines = errors.map(
      (e) => `  ${e.path.slice(1) || '(environment)'}=${JSON.stringify(raw[e.path.slice(1)] ?? '')}: ${e.message}`,
    );
    throw new ConfigError(`Invalid configuration in the environment:\n${[...new Set(lines)].join('\n')}`);
  }
  const parsed = converted as Static<typeof Env>;
  return {
    databaseUrl: parsed.DATABASE_URL,
    port: parsed.PORT,
    host: parsed.HOST,
    logLevel: parsed.LOG_LEVEL,
    dbPoolMax: parsed.DB_POOL_MAX,
    embeddedPgDir: parsed.EMBEDDED_PG_DIR,
    auth: parsed.AUTH as Config['auth'],
    rateLimitMax: parsed.RATE_LIMIT_MAX,
    rateLimitWindowSeconds: parsed.RATE_LIMIT_WINDOW,
    corsOrigin: parsed.CORS_ORIGIN,
    connectionTimeoutMs: parsed.CONNECTION_TIMEOUT,
    requestTimeoutMs: parsed.REQUEST_TIMEOUT,
    keepAliveTimeoutMs: parsed.KEEP_ALIVE_TIMEOUT,
    headersTimeoutMs: parsed.HEADERS_TIMEOUT,
  };
}
