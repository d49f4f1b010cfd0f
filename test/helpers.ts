import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import postgres, { type Sql } from 'postgres';
import { Agent, request } from 'undici';
import { inject } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith, type Config } from '../src/config.js';

export interface TestServer {
  app: FastifyInstance;
  /** http://127.0.0.1:port */
  baseUrl: string;
  /** A direct connection to the server's database, for assertions on what is stored. */
  sql: Sql;
  close(): Promise<void>;
}

/** A fresh database copied from the migrated template. */
export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject('adminUrl');
  const template = inject('templateDatabase');
  const name = `${template.replace('template', 'copy')}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    // Copies of one template cannot be made at the same moment; test files take turns.
    await admin`SELECT pg_advisory_lock(424242)`;
    await admin`CREATE DATABASE ${admin(name)} TEMPLATE ${admin(template)}`;
    await admin`SELECT pg_advisory_unlock(424242)`;
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** The real app on a real port, against a database of its own. */
export async function startTestServer(options: Partial<Config> = {}): Promise<TestServer> {
  const databaseUrl = await createTestDatabase();
  const app = await buildApp({
    ...configWith({ dbPoolMax: 20, ...options }),
    databaseUrl,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const sql = postgres(databaseUrl, {
    max: 4,
    onnotice: () => {},
    types: { timeAsText: { to: 1184, from: [1184], serialize: String, parse: (x: string) => x } },
  });
  return {
    app,
    baseUrl: `http://127.0.0.1:${port}`,
    sql,
    async close() {
      await app.close();
      await sql.end();
    },
  };
}

const agent = new Agent({ connections: 128, pipelining: 1 });

export interface HttpResult<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** One HTTP request; a JSON body when given, parsed JSON back (or the text when it is not JSON). */
export async function http<T = any>(
  baseUrl: string,
  method: 'GET' | 'POST' | 'DELETE' | 'PUT' | 'PATCH',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<HttpResult<T>> {
  const res = await request(`${baseUrl}${path}`, {
    method,
    dispatcher: agent,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body:
      body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: the text itself
  }
  return { status: res.statusCode, headers: res.headers, body: parsed as T };
}

export const post = <T = any>(baseUrl: string, body: unknown) => http<T>(baseUrl, 'POST', '/api/appointments', body);

/** A unique org id, so tests sharing a database never see each other's appointments. */
export const newOrg = (label = 'org') => `${label}-${randomBytes(5).toString('hex')}`;

/** An appointment body; times without a zone are UTC. */
export function appointment(
  id: string | number,
  start: string,
  end: string,
  updatedAt = '2020-09-28 14:23:12',
  extra: Record<string, unknown> = {},
) {
  return { id, start, end, createdAt: '2020-09-01 10:00', updatedAt, ...extra };
}

export function shuffle<T>(items: T[], random: () => number = Math.random): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** Two half-open ranges [aStart, aEnd) and [bStart, bEnd) of canonical time strings overlap. */
export const overlaps = (a: { start: string; end: string }, b: { start: string; end: string }) =>
  a.start < b.end && b.start < a.end;

/** Pairs of overlapping appointments in a list (empty when the list is a valid calendar). */
export function overlappingPairs<T extends { id: string; start: string; end: string }>(
  list: T[],
): Array<[string, string]> {
  const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length && sorted[j]!.start < sorted[i]!.end; j++)
      pairs.push([sorted[i]!.id, sorted[j]!.id]);
  }
  return pairs;
}

/** The system time one microsecond before `t` (a six-digit `...SS.ffffffZ` instant). */
export function microsecondBefore(t: string): string {
  const micros = BigInt(Date.parse(`${t.slice(0, 23)}Z`)) * 1000n + BigInt(t.slice(23, 26)) - 1n;
  const iso = new Date(Number(micros / 1000n)).toISOString();
  return `${iso.slice(0, 23)}${String(micros % 1000n).padStart(3, '0')}Z`;
}

/** Runs the tasks with at most `concurrency` in flight; results in task order. */
export async function runConcurrently<T>(tasks: Array<() => Promise<T>>, concurrency: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, tasks.length) }, worker));
  return results;
}

export { seededRandom } from './seeded-random.js';
