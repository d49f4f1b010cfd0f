import { Pool } from 'undici';
import { httpRequest } from '../lib/http.js';
import { openEventStream, type EventStream } from '../lib/sse.js';
import { processUsage, resetPeakRss } from './load.js';

// Many open event streams on one instance (issue 12, section 5): what they cost in memory, and how
// long one change takes to reach all of them. Each stream resumes from a token, as a front end that
// comes back does; all of them wait on the same org, so each change is read once for all of them
// (ChangeFeed.read coalesces) and told to each by the one shared poll.

export interface OpenStreamsResult {
  streams: number;
  /** From the first request to the last stream's first bytes. */
  openMs: number;
  /** The service's resident set before the streams, with all of them open, and its peak meanwhile. */
  rssBeforeMb: number;
  rssOpenMb: number;
  peakRssMb: number;
  /** (rssOpen − rssBefore) ÷ streams */
  kbPerStream: number;
  /** The service's CPU while every stream is open and nothing changes (the shared poll, the waiters), in % of a core. */
  idleCpuPercent: number;
  /** Writes, one at a time, each awaited on every stream. */
  writes: number;
  /** From a write's answer to its event on each stream, over every stream and write. */
  fanOut: { p50: number; p99: number; max: number };
  /** For each write, when the first stream had its event (the feed's own latency: poll, horizon, read). */
  firstReachedMs: number[];
  /** For each write, when the last stream had it. */
  allReachedMs: number[];
  /** The service's CPU time per write while the streams are open: the write, and telling every stream. */
  cpuMsPerWrite: number;
  /** Streams that ended or missed an event (should be 0). */
  failed: number;
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function measureOpenStreams(o: {
  baseUrl: string;
  pid: number;
  streams: number;
  writes: number;
  orgId: string;
  log: (message: string) => void;
}): Promise<OpenStreamsResult> {
  const { baseUrl, orgId } = o;
  // one connection per stream, and a few for the writes
  const pool = new Pool(baseUrl, { connections: o.streams + 8, pipelining: 1 });
  const opened: EventStream[] = [];
  try {
    const start = await httpRequest<{ next: string }>(baseUrl, 'GET', `/api/changes?orgId=${orgId}`, {
      dispatcher: pool,
    });
    if (start.status !== 200) throw new Error(`GET /api/changes: ${start.status} ${start.text}`);
    const url = `${baseUrl}/api/changes/stream?orgId=${orgId}&since=${start.body.next}`;
    const rssBeforeMb = processUsage(o.pid).rssMb;
    resetPeakRss(o.pid);

    const t0 = performance.now();
    const streams = await Promise.all(
      Array.from({ length: o.streams }, async () => {
        const s = await openEventStream(url, { dispatcher: pool, headersTimeoutMs: 60_000 });
        opened.push(s);
        if (s.status !== 200) throw new Error(`a stream was refused: ${s.status} ${JSON.stringify(s.body)}`);
        // the first bytes: the retry field, sent once the stream's first page is read
        const first = await s.next(60_000);
        if (first.type !== 'retry') throw new Error(`a stream began with ${JSON.stringify(first)}`);
        return s;
      }),
    );
    const openMs = round(performance.now() - t0);
    // every stream waits on the feed now, and the service has settled its buffers
    await new Promise((resolve) => setTimeout(resolve, 500));
    const open = processUsage(o.pid);
    const idleMs = 3_000;
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    const idleCpuPercent = round(((processUsage(o.pid).cpuSeconds - open.cpuSeconds) * 100_000) / idleMs);
    o.log(
      `open-streams: ${o.streams} streams open in ${openMs} ms; service RSS ${rssBeforeMb} → ${open.rssMb} MB; ` +
        `idle CPU ${idleCpuPercent}% of a core`,
    );

    const latencies: number[] = [];
    const allReachedMs: number[] = [];
    const firstReachedMs: number[] = [];
    let failed = 0;
    const cpuBefore = processUsage(o.pid).cpuSeconds;
    for (let w = 0; w < o.writes; w++) {
      const id = `w${w}`;
      const arrivals = streams.map(async (s) => {
        const item = await s.nextEvent(30_000).catch(() => undefined);
        const at = performance.now();
        const change = item?.type === 'event' ? (JSON.parse(item.data) as { id: string }) : undefined;
        return change?.id === id ? at : undefined;
      });
      const answer = await httpRequest(baseUrl, 'POST', '/api/appointments', {
        dispatcher: pool,
        json: {
          orgId,
          id,
          start: `2040-01-01T${String(w % 24).padStart(2, '0')}:00:00Z`,
          end: `2040-01-01T${String(w % 24).padStart(2, '0')}:30:00Z`,
          createdAt: '2039-12-01T00:00:00Z',
          updatedAt: '2039-12-02T00:00:00Z',
        },
      });
      const answered = performance.now();
      if (answer.status !== 201) throw new Error(`POST ${id}: ${answer.status} ${answer.text}`);
      const times = await Promise.all(arrivals);
      let slowest = 0;
      let fastest = Infinity;
      for (const at of times) {
        if (at === undefined) failed++;
        else {
          const ms = Math.max(0, at - answered);
          latencies.push(ms);
          slowest = Math.max(slowest, ms);
          fastest = Math.min(fastest, ms);
        }
      }
      allReachedMs.push(round(slowest));
      firstReachedMs.push(round(fastest));
    }
    const cpuMsPerWrite = round(((processUsage(o.pid).cpuSeconds - cpuBefore) * 1000) / o.writes);
    latencies.sort((a, b) => a - b);
    const q = (p: number) => round(latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? 0);
    const peakRssMb = Math.max(processUsage(o.pid).peakRssMb, open.rssMb);
    const result: OpenStreamsResult = {
      streams: o.streams,
      openMs,
      rssBeforeMb,
      rssOpenMb: open.rssMb,
      peakRssMb,
      kbPerStream: round(((open.rssMb - rssBeforeMb) * 1024) / o.streams),
      idleCpuPercent,
      writes: o.writes,
      fanOut: { p50: q(0.5), p99: q(0.99), max: q(1) },
      firstReachedMs,
      allReachedMs,
      cpuMsPerWrite,
      failed,
    };
    o.log(
      `open-streams: one change to all ${o.streams} streams: p50 ${result.fanOut.p50} ms, p99 ${result.fanOut.p99} ms, ` +
        `max ${result.fanOut.max} ms (${failed} missed); service CPU ${cpuMsPerWrite} ms a write; peak RSS ${peakRssMb} MB`,
    );
    return result;
  } finally {
    for (const s of opened) s.close();
    await Promise.all(opened.map((s) => s.ended));
    await pool.destroy();
  }
}
