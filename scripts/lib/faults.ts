import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Sql } from 'postgres';
import { Agent, type Dispatcher } from 'undici';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded-postgres.js';
import { withSql } from './database.js';
import type { HistoryEvent } from './history-checker.js';
import { httpRequest, type HttpMethod } from './http.js';
import { sleep } from './time.js';

// Used by test/faults.test.ts and scripts/check-faults.ts (no vitest here): a PostgreSQL cluster of
// the scenario's own that it may stop and start, a load, and a check of what it stored. The real server
// as a child process is in processes.ts.

export interface Cluster {
  port: number;
  adminUrl: string;
  /** The url of a database of this cluster. */
  url(database: string): string;
  createDatabase(database: string): Promise<string>;
  /** A fast shutdown (SIGINT); the data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes its folder. */
  destroy(): Promise<void>;
}

export async function startCluster(label: string, options: { unsafeFast?: boolean } = {}): Promise<Cluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `appointments-faults-${label}-`));
  const open = (port?: number) =>
    startEmbeddedPostgres({
      dir,
      database: 'postgres',
      persistent: true,
      unsafeFast: options.unsafeFast,
      port,
      log: () => {},
    });
  let pg: EmbeddedPostgres | undefined = await open();
  const port = Number(new URL(pg.adminUrl).port);
  const adminUrl = pg.adminUrl;
  const url = (database: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${database}`;
    return u.toString();
  };
  return {
    port,
    adminUrl,
    url,
    async createDatabase(database) {
      await withSql(adminUrl, (admin) => admin`CREATE DATABASE ${admin(database)}`);
      return url(database);
    },
    async stop() {
      await pg?.stop();
      pg = undefined;
    },
    async start() {
      pg ??= await open(port);
    },
    async destroy() {
      await pg?.stop();
      pg = undefined;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Outcome {
  status: number | 'network-error';
  ms: number;
  retryAfter?: string;
  code?: string;
  startedAt: number;
  /** The answer's JSON (or text); undefined when none came. */
  body?: unknown;
}

/**
 * One request, timed; a request that gets no answer (refused, reset, timed out) is an outcome too:
 * 'network-error'.
 */
export async function sendTimed(
  baseUrl: string,
  method: HttpMethod,
  path: string,
  json?: unknown,
  options: { dispatcher?: Dispatcher; timeoutMs?: number } = {},
): Promise<Outcome> {
  const startedAt = Date.now();
  try {
    const res = await httpRequest(baseUrl, method, path, { json, timeoutMs: 15_000, ...options });
    const outcome: Outcome = { status: res.status, ms: Date.now() - startedAt, startedAt, body: res.body };
    if (res.headers['retry-after'] !== undefined) outcome.retryAfter = String(res.headers['retry-after']);
    const code = (res.body as { code?: unknown } | undefined)?.code;
    if (typeof code === 'string') outcome.code = code;
    return outcome;
  } catch {
    return { status: 'network-error', ms: Date.now() - startedAt, startedAt };
  }
}

export interface Acked {
  id: string;
  updatedAt: string;
}

export interface Load {
  /** Stops the workers and waits for the requests in flight. */
  stop(): Promise<void>;
  outcomes: Outcome[];
  /** Writes answered 201 or 200 (created or updated). */
  acked: Acked[];
  /** Every write sent, answered or not. */
  sent: Acked[];
  /** Every write as the history checkers record it (scripts/lib/history-checker.ts). */
  events: HistoryEvent[];
}

const BASE_TIME = Date.parse('2030-01-01T00:00:00Z');

/** The `n`-th millisecond after 2030-01-01 as an API time. */
const updatedAtOf = (n: number) => new Date(BASE_TIME + n).toISOString().replace('T', ' ').replace('Z', '');

/**
 * `concurrency` workers, each writing its own ids in `orgId` in a loop: `versionsPerId` versions of
 * an id (the time slot of the id stays the same; updatedAt grows), then the next id. Slots never
 * overlap, so every answer is 201/200 unless something fails.
 */
export function startLoad(options: {
  baseUrl: string;
  orgId: string;
  concurrency: number;
  versionsPerId?: number;
  timeoutMs?: number;
  /** Ids are `<idPrefix><worker>-<n>`: a second load of the org with another prefix writes other ids. */
  idPrefix?: string;
}): Load {
  const { baseUrl, orgId, concurrency, versionsPerId = 1, timeoutMs = 10_000, idPrefix = 'w' } = options;
  const agent = new Agent({ connections: concurrency, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const outcomes: Outcome[] = [];
  const acked: Acked[] = [];
  const sent: Acked[] = [];
  const events: HistoryEvent[] = [];
  let running = true;
  const worker = async (w: number) => {
    for (let n = 0; running; n++) {
      const idNumber = Math.floor(n / versionsPerId);
      const id = `${idPrefix}${w}-${idNumber}`;
      const slot = (w * 1_000_000 + idNumber) * 3_600_000;
      const updatedAt = updatedAtOf(n);
      const body = {
        orgId,
        id,
        start: new Date(BASE_TIME + slot).toISOString(),
        end: new Date(BASE_TIME + slot + 1_800_000).toISOString(),
        createdAt: '2029-12-01 00:00',
        updatedAt,
      };
      sent.push({ id, updatedAt });
      const sentAt = Date.now() * 1000;
      const outcome = await sendTimed(baseUrl, 'POST', '/api/appointments', body, { dispatcher: agent, timeoutMs });
      outcomes.push(outcome);
      events.push({
        index: events.length,
        client: w,
        // the times as the service writes them back, for the checkers' comparisons
        op: {
          kind: 'write',
          ...body,
          createdAt: '2029-12-01T00:00:00.000Z',
          updatedAt: new Date(BASE_TIME + n).toISOString(),
        },
        sentAt,
        answeredAt: Date.now() * 1000,
        status: outcome.status === 'network-error' ? 0 : outcome.status,
        body: outcome.body,
      });
      if (outcome.status === 201 || outcome.status === 200) acked.push({ id, updatedAt });
      // the client backs off a little, as Retry-After asks
      if (outcome.status === 'network-error' || outcome.status >= 500) await sleep(20);
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));
  return {
    outcomes,
    acked,
    sent,
    events,
    async stop() {
      running = false;
      await Promise.all(workers);
      await agent.close();
    },
  };
}

/** Values and how often each occurs, e.g. { SERVICE_UNAVAILABLE: 14, '-': 120 }. */
export function countBy(values: Array<string | number>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/** Statuses and their counts, e.g. { 201: 120, 503: 14 }. */
export const countStatuses = (outcomes: Outcome[]) => countBy(outcomes.map((o) => o.status));

export interface StoreCheck {
  /** Acknowledged versions found neither as the current row nor in history. */
  lost: Acked[];
  /** (id, updatedAt) stored more than once. */
  duplicated: string[];
  /** Ids whose history and current row disagree: versions not 1..n, or a gap between periods. */
  inconsistent: string[];
  storedVersions: number;
}

/**
 * Compares what the service acknowledged with what the database holds: every acknowledged version is
 * stored, none twice, and each id's history runs 1..n-1 without gaps, ending where the current row begins.
 */
export async function checkStore(sql: Sql, orgId: string, acked: Acked[]): Promise<StoreCheck> {
  const rows = await sql<
    { id: string; version: number; updatedAt: string; from: string; to: string | null; current: boolean }[]
  >`
    SELECT id, version, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS') AS "updatedAt",
           valid_from::text AS "from", valid_to::text AS "to", false AS current
    FROM appointment_versions WHERE org_id = ${orgId}
    UNION ALL
    SELECT id, version, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), recorded_at::text, NULL, true
    FROM appointments WHERE org_id = ${orgId}
    ORDER BY 1, 2`;
  const stored = new Map<string, number>();
  const byId = new Map<string, Array<(typeof rows)[number]>>();
  for (const row of rows) {
    const key = `${row.id}@${row.updatedAt}`;
    stored.set(key, (stored.get(key) ?? 0) + 1);
    byId.set(row.id, [...(byId.get(row.id) ?? []), row]);
  }
  const inconsistent: string[] = [];
  for (const [id, versions] of byId) {
    const ok = versions.every(
      (v, i) =>
        v.version === i + 1 && v.current === (i === versions.length - 1) && (i === 0 || versions[i - 1]!.to === v.from),
    );
    if (!ok) inconsistent.push(id);
  }
  return {
    lost: acked.filter((a) => !stored.has(`${a.id}@${a.updatedAt}`)),
    duplicated: [...stored].filter(([, count]) => count > 1).map(([key]) => key),
    inconsistent,
    storedVersions: rows.length,
  };
}
