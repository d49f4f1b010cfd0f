import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

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
});

export interface Config {
  /** Unset: the server starts an embedded PostgreSQL. */
  databaseUrl?: string;
  port: number;
  host: string;
  logLevel: Static<typeof Env>['LOG_LEVEL'];
  dbPoolMax: number;
  embeddedPgDir?: string;
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
    const lines = errors.map((e) => `  ${e.path.slice(1) || '(environment)'}=${JSON.stringify(raw[e.path.slice(1)] ?? '')}: ${e.message}`);
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
  };
}
