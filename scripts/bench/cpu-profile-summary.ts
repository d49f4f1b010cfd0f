// npx tsx scripts/bench/cpu-profile-summary.ts FILE.cpuprofile [--top=25] [--all]
// What a V8 CPU profile (`node --cpu-prof`) says a process spent its CPU on: self time by function and by
// package (fastify, validation, time parsing, the postgres driver, serialization, logging, metrics, node's
// own http and streams, garbage collection). By default only the busy span counts (the longest run of
// 100 ms slices where the process was mostly not idle); profile.ts passes the exact load window instead.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Entry {
  name: string;
  ms: number;
  share: number;
}
export interface ProfileSummary {
  /** The span summed, and how much of it the process was busy. */
  windowMs: number;
  busyMs: number;
  idleMs: number;
  byFunction: Entry[];
  /** Self time by the package (or part of the service) of the function itself. */
  byPackage: Entry[];
  /**
   * Self time charged to the nearest caller that is a package or the service's own code: JSON.stringify
   * called by pino counts as logging, a socket write under fastify's reply as fastify.
   */
  byCaller: Entry[];
}

const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

// Packages shown under the name of what they do for the service.
const GROUPS: Record<string, string> = {
  fastify: 'fastify',
  'find-my-way': 'fastify',
  avvio: 'fastify',
  'fastify-plugin': 'fastify',
  'light-my-request': 'fastify',
  'fast-querystring': 'fastify',
  'secure-json-parse': 'fastify (JSON body parsing)',
  'fast-json-stringify': 'serialization (fast-json-stringify)',
  '@fastify/fast-json-stringify-compiler': 'serialization (fast-json-stringify)',
  ajv: 'validation (ajv)',
  'fast-uri': 'validation (ajv)',
  '@fastify/ajv-compiler': 'validation (ajv)',
  postgres: 'postgres driver',
  pino: 'logging (pino)',
  'sonic-boom': 'logging (pino)',
  'fast-redact': 'logging (pino)',
  '@pinojs/redact': 'logging (pino)',
  'pino-std-serializers': 'logging (pino)',
  'fast-safe-stringify': 'logging (pino)',
  'quick-format-unescaped': 'logging (pino)',
  'prom-client': 'metrics (prom-client)',
  tdigest: 'metrics (prom-client)',
  bintrees: 'metrics (prom-client)',
  '@fastify/rate-limit': 'rate limit (@fastify/rate-limit)',
  'toad-cache': 'rate limit (@fastify/rate-limit)',
};

/** The package of a script URL, or the service's own file (dist/ or src/), or '' for V8 and native code. */
function ownerOf(url: string): string {
  if (url === '') return '';
  if (url.startsWith('node:')) return 'node internals (http, net, streams, timers)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const [scope, name] = url.slice(modules + '/node_modules/'.length).split('/');
    const pkg = scope!.startsWith('@') ? `${scope}/${name}` : scope!;
    return GROUPS[pkg] ?? pkg;
  }
  const own = /\/(?:dist|src)\/(.+?)\.[jt]s$/.exec(url);
  if (own) {
    const file = own[1]!;
    if (file === 'schemas/time') return 'time parsing (service: schemas/time)';
    return `service: ${file}`;
  }
  return url;
}

function packageOf(frame: CallFrame): string {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  return ownerOf(frame.url) || 'V8 builtins and native code';
}

function functionOf(frame: CallFrame): string {
  if (SPECIAL.has(frame.functionName)) return frame.functionName;
  const where = frame.url === '' ? '(native)' : `${ownerOf(frame.url)}:${frame.lineNumber + 1}`;
  return `${frame.functionName || '(anonymous)'} ${where}`;
}

/** Sample times (µs from the profile's start) and the node each hit. */
function sampleTimes(profile: CpuProfile): number[] {
  const times: number[] = [];
  let t = 0;
  for (const delta of profile.timeDeltas) times.push((t += delta));
  return times;
}

/** The longest run of 100 ms slices in which the process was busy (not idle) over half of the time. */
function busyWindow(profile: CpuProfile, idleNode: number | undefined): [number, number] {
  const times = sampleTimes(profile);
  const slice = 100_000;
  const busy = new Map<number, number>();
  const all = new Map<number, number>();
  for (let i = 1; i < times.length; i++) {
    const k = Math.floor(times[i]! / slice);
    const d = times[i]! - times[i - 1]!;
    all.set(k, (all.get(k) ?? 0) + d);
    if (profile.samples[i] !== idleNode) busy.set(k, (busy.get(k) ?? 0) + d);
  }
  const last = Math.floor((times.at(-1) ?? 0) / slice);
  let best: [number, number] = [0, last + 1];
  let bestLength = 0;
  let from: number | undefined;
  for (let k = 0; k <= last + 1; k++) {
    const isBusy = k <= last && (busy.get(k) ?? 0) > 0.5 * (all.get(k) ?? slice);
    if (isBusy && from === undefined) from = k;
    if (!isBusy && from !== undefined) {
      if (k - from > bestLength) [best, bestLength] = [[from, k], k - from];
      from = undefined;
    }
  }
  return [best[0] * slice, best[1] * slice];
}

/**
 * `window`: the span to sum, in the profile's clock (µs, CLOCK_MONOTONIC on Linux, as
 * process.hrtime.bigint() / 1000n in any process of the machine); by default the busy span, or with `all`
 * the whole profile.
 */
export function summarize(
  profile: CpuProfile,
  o: { top?: number; all?: boolean; window?: [number, number] } = {},
): ProfileSummary {
  const top = o.top ?? 25;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const idleNode = profile.nodes.find((n) => n.callFrame.functionName === '(idle)')?.id;
  const [from, to] = o.window
    ? [o.window[0] - profile.startTime, o.window[1] - profile.startTime]
    : o.all
      ? [-Infinity, Infinity]
      : busyWindow(profile, idleNode);
  if (o.window && (from < 0 || to > profile.endTime - profile.startTime))
    throw new Error(`the window is not within the profile (${profile.startTime}–${profile.endTime} µs)`);

  // the nearest frame up the stack that belongs to a package or to the service
  const callerCache = new Map<number, string>();
  const callerOf = (id: number): string => {
    const cached = callerCache.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id)!;
    let owner = SPECIAL.has(node.callFrame.functionName) ? node.callFrame.functionName : ownerOf(node.callFrame.url);
    if (owner === '' || owner.startsWith('node internals')) {
      const up = parent.get(id);
      const above = up === undefined ? '' : callerOf(up);
      owner = above === '' || above === '(root)' ? owner || 'V8 builtins and native code' : above;
    }
    callerCache.set(id, owner);
    return owner;
  };

  const self = new Map<number, number>();
  const times = sampleTimes(profile);
  let windowUs = 0;
  for (let i = 1; i < times.length; i++) {
    if (times[i]! < from || times[i]! >= to) continue;
    const d = times[i]! - times[i - 1]!;
    windowUs += d;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + d);
  }
  const idleUs = idleNode === undefined ? 0 : (self.get(idleNode) ?? 0);
  const busyUs = windowUs - idleUs;

  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us);
  const functions = new Map<string, number>();
  const packages = new Map<string, number>();
  const callers = new Map<string, number>();
  for (const [id, us] of self) {
    if (id === idleNode) continue;
    const frame = byId.get(id)!.callFrame;
    add(functions, functionOf(frame), us);
    add(packages, packageOf(frame), us);
    add(callers, callerOf(id), us);
  }
  const entries = (map: Map<string, number>, n = Infinity) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, share: Math.round((1000 * us) / busyUs) / 10 }));
  return {
    windowMs: Math.round(windowUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    idleMs: Math.round(idleUs / 1000),
    byFunction: entries(functions, top),
    byPackage: entries(packages, top),
    byCaller: entries(callers, top),
  };
}

/** Markdown tables of a summary; `perRequest` divides the busy time by the requests answered in the window. */
export function summaryMarkdown(s: ProfileSummary, requests?: number): string {
  const per = (ms: number) => (requests ? ` | ${Math.round((1000 * ms) / requests) / 1000}` : '');
  const head = (what: string) =>
    `| ${what} | ms | % of busy${requests ? ' | ms a request' : ''} |\n| --- | ---: | ---: |${requests ? ' ---: |' : ''}`;
  const rows = (entries: Entry[]) => entries.map((e) => `| ${e.name} | ${e.ms} | ${e.share}${per(e.ms)} |`).join('\n');
  return [
    `Window ${s.windowMs} ms, busy ${s.busyMs} ms, idle ${s.idleMs} ms${requests ? `, ${requests} requests` : ''}.`,
    '',
    head('by package (self time)'),
    rows(s.byPackage),
    '',
    head('by calling package (native and node internals charged to their caller)'),
    rows(s.byCaller),
    '',
    head('by function (self time)'),
    rows(s.byFunction),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--'));
  if (!file) throw new Error('usage: cpu-profile-summary.ts FILE.cpuprofile [--top=25] [--all]');
  const top = Number(args.find((a) => a.startsWith('--top='))?.slice(6) ?? 25);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  console.log(summaryMarkdown(summarize(profile, { top, all: args.includes('--all') })));
}
