import { readFileSync, writeFileSync } from 'node:fs';
import type { Sql } from 'postgres';
import { Pool } from 'undici';
import { upsertAppointmentBatch } from '../../src/db/appointment-batch.js';
import { getFreeBusy, loadTimeZoneNames, slotsOf, type AvailabilityQuery } from '../../src/db/availability.js';
import {
  AppointmentOverlapError,
  type AppointmentWrite,
  getAppointment,
  getAppointmentAt,
  getAppointmentHistory,
  listAppointments,
  listAppointmentsAt,
  upsertAppointment,
} from '../../src/db/appointments.js';
import { MAX_SLOTS, WEEKDAY_NAMES } from '../../src/schemas/availability.js';
import { parseTime } from '../../src/schemas/time.js';
import type { ScenarioRequest } from './scenarios.js';

export type { ScenarioRequest };

export interface Stats {
  /** Answered in the timed window. */
  requests: number;
  /** Answered in all, the warm-up included: what the CPU of a whole loop is divided by. */
  answered: number;
  seconds: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  statuses: Record<string, number>;
  /** Answers whose status the scenario does not expect. */
  unexpected: number;
}

export type Send = (request: ScenarioRequest) => Promise<number>;

/** The HTTP way: an undici pool of `connections` keep-alive connections to the service. */
export function httpSender(baseUrl: string, connections: number): { send: Send; close(): Promise<void> } {
  const pool = new Pool(baseUrl, { connections, pipelining: 1 });
  return {
    async send(r) {
      const res = await pool.request({
        method: r.method,
        path: r.path,
        headers: r.body === undefined ? {} : { 'content-type': 'application/json' },
        body: r.body === undefined ? undefined : JSON.stringify(r.body),
      });
      await res.body.text();
      return res.statusCode;
    },
    close: () => pool.close(),
  };
}

const canonical = (text: unknown, precision: 3 | 6) => (typeof text === 'string' ? parseTime(text, precision) : null);

const minutes = (clock: string) => Number(clock.slice(0, 2)) * 60 + Number(clock.slice(3, 5));

/**
 * GET /api/availability as the route answers it: the one statement (getFreeBusy), then the slots cut in
 * TypeScript (slotsOf). The zone names are read once, as the route does.
 */
async function availability(sql: Sql, zones: () => Promise<Map<string, string>>, url: URL): Promise<number> {
  const p = url.searchParams;
  const from = canonical(p.get('from'), 3);
  const to = canonical(p.get('to'), 3);
  const zone = (await zones()).get((p.get('timeZone') ?? 'UTC').toLowerCase());
  if (!from || !to || from >= to || !zone) return 400;
  const hours = p.get('hours');
  const days = p.get('days');
  const at = p.get('at');
  const q: AvailabilityQuery = {
    orgId: p.get('orgId') ?? 'default',
    from,
    to,
    timeZone: zone,
    ...(at ? { at: canonical(at, 6)! } : {}),
    ...(hours ? { hours: hours.split(',').map((h) => ({ start: minutes(h), end: minutes(h.slice(6)) })) } : {}),
    ...(days ? { days: days.split(',').map((d) => WEEKDAY_NAMES.indexOf(d as never) + 1) } : {}),
  };
  const { free } = await getFreeBusy(sql, q);
  const duration = p.get('duration');
  if (duration === null) return 200;
  const step = Number(p.get('step') ?? duration);
  return slotsOf(from, free, Number(duration) * 60_000, step * 60_000, MAX_SLOTS) === null ? 400 : 200;
}

/**
 * The limit: the SQL the route runs for the same request (the functions of src/db/appointments.ts and
 * src/db/availability.ts), straight through the driver, answered with the status the route would give.
 */
export function directSender(sql: Sql): Send {
  let zoneNames: Promise<Map<string, string>> | undefined;
  const zones = () => (zoneNames ??= loadTimeZoneNames(sql));
  return async (r) => {
    const url = new URL(r.path, 'http://x');
    if (url.pathname === '/api/availability') return availability(sql, zones, url);
    const orgId = url.searchParams.get('orgId') ?? 'default';
    if (r.method === 'POST' && url.pathname === '/api/appointments/batch') {
      const items = (r.body!.appointments as Array<Record<string, unknown>>).map((b, index) => ({
        index,
        orgId: (b.orgId as string | undefined) ?? 'default',
        id: String(b.id),
        start: canonical(b.start, 3)!,
        end: canonical(b.end, 3)!,
        createdAt: canonical(b.createdAt, 3)!,
        updatedAt: canonical(b.updatedAt, 3)!,
      }));
      await upsertAppointmentBatch(sql, items, url.searchParams.get('atomic') === 'true');
      return 200;
    }
    if (r.method === 'POST') {
      const b = r.body!;
      const write = {
        orgId: (b.orgId as string | undefined) ?? 'default',
        id: String(b.id),
        start: canonical(b.start, 3),
        end: canonical(b.end, 3),
        createdAt: canonical(b.createdAt, 3),
        updatedAt: canonical(b.updatedAt, 3),
      };
      if (!write.start || !write.end || !write.createdAt || !write.updatedAt || write.start >= write.end) return 400;
      try {
        const { status } = await upsertAppointment(sql, write as AppointmentWrite);
        return status === 'created' ? 201 : 200;
      } catch (error) {
        if (error instanceof AppointmentOverlapError) return 409;
        throw error;
      }
    }
    const parts = url.pathname.split('/').filter(Boolean); // api, appointments, [id, [history]]
    const at = url.searchParams.get('at');
    if (parts.length === 2) {
      const options = { orgId, limit: Number(url.searchParams.get('limit') ?? 100) };
      if (at) await listAppointmentsAt(sql, { ...options, at: canonical(at, 6)! });
      else await listAppointments(sql, options);
      return 200;
    }
    const id = decodeURIComponent(parts[2]!);
    if (parts[3] === 'history') return (await getAppointmentHistory(sql, orgId, id)).length > 0 ? 200 : 404;
    const found = at ? await getAppointmentAt(sql, orgId, id, canonical(at, 6)!) : await getAppointment(sql, orgId, id);
    return found ? 200 : 404;
  };
}

let stopped = false;
/** Ends every running loop at its workers' next request (on Ctrl-C). */
export function stopLoops() {
  stopped = true;
}

export interface LoopOptions {
  connections: number;
  warmupMs: number;
  durationMs: number;
  /** Builds the request of worker `vu` (1-based) at its iteration `iter`. */
  build: (vu: number, iter: number) => ScenarioRequest;
  /** Each worker's next iteration; carried on from one loop to the next so ids stay unique. */
  iterations: number[];
  send: Send;
  /** Bound on the number of requests, whatever the time. */
  maxRequests?: number;
}

/** `connections` workers, each sending its next request as soon as it has an answer; a warm-up, then a timed window. */
export async function runLoop(o: LoopOptions): Promise<Stats> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let unexpected = 0;
  let sent = 0;
  let answered = 0;
  const maxRequests = o.maxRequests ?? 2_000_000;
  const start = performance.now();
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.durationMs;
  let measuredUntil = measureFrom;
  const worker = async (vu: number) => {
    while (sent < maxRequests && !stopped) {
      const t0 = performance.now();
      if (t0 >= end) break;
      const iter = (o.iterations[vu] ??= 0);
      o.iterations[vu] = iter + 1;
      const request = o.build(vu, iter);
      sent++;
      let status: number;
      try {
        status = await o.send(request);
      } catch {
        status = 599; // no answer: a connection or driver error
        await new Promise((resolve) => setImmediate(resolve)); // a failing send must not starve the event loop
      }
      const t1 = performance.now();
      answered++;
      if (t0 >= measureFrom) {
        latencies.push(t1 - t0);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (!request.expected.includes(status)) unexpected++;
        if (t1 > measuredUntil) measuredUntil = t1;
      }
    }
  };
  await Promise.all(Array.from({ length: o.connections }, (_, i) => worker(i + 1)));
  latencies.sort((a, b) => a - b);
  const q = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? 0);
  const seconds = Math.max(0.001, (measuredUntil - measureFrom) / 1000);
  return {
    requests: latencies.length,
    answered,
    seconds: round(seconds),
    rps: round(latencies.length / seconds),
    p50: q(0.5),
    p95: q(0.95),
    p99: q(0.99),
    max: round(latencies.at(-1) ?? 0),
    statuses,
    unexpected,
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

/** CPU time (user + system, seconds) and resident set peak (VmHWM, MB) of a process, from /proc. */
export function processUsage(pid: number): { cpuSeconds: number; peakRssMb: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd on
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (14th, 15th)
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / 100, peakRssMb: round(kb('VmHWM') / 1024), rssMb: round(kb('VmRSS') / 1024) };
}

/** Resets VmHWM (the kernel's "5" to clear_refs), so that the peak is the peak of one scenario. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
