// npm run check:browser: a real browser follows the change feed. Headless Chromium (Debian's chromium
// package) opens a page from another origin, as a booking front end is, whose EventSource follows
// GET /api/changes/stream of the service (CORS_ORIGIN set to the page's origin); Node writes through
// the API. The page must receive the full sync and every change in order; then the service is stopped
// (SIGTERM, graceful) and started again on the same port, and EventSource, reconnecting by itself with
// Last-Event-ID, must receive what was written meanwhile exactly once. Prints OK or FAIL; exits 1 on FAIL.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded-postgres.js';
import { withSql } from './lib/database.js';
import { httpRequest } from './lib/http.js';
import { runEntry, waitReady, type ServerProcess } from './lib/processes.js';
import { sleep } from './lib/time.js';

const CHROMIUM = '/usr/bin/chromium';
const INSTALL = 'apt-get update && apt-get install -y chromium';
const ORG = 'browser';
const started = Date.now();
const log = (message: string) =>
  console.log(`[check:browser ${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);

/** Debian's chromium, installed when missing if this runs as root with apt-get; otherwise says how. */
function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  const canInstall = process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0;
  if (!canInstall) {
    console.log(`FAIL: Chromium is not installed at ${CHROMIUM}; install it with: ${INSTALL}`);
    process.exit(1);
  }
  log(`${CHROMIUM} is missing: ${INSTALL}`);
  const install = spawnSync('bash', ['-c', INSTALL], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (install.status !== 0 || !existsSync(CHROMIUM)) {
    console.log(`FAIL: could not install Chromium with: ${INSTALL}`);
    process.exit(1);
  }
}

/** The page: an EventSource on the stream, every event it gets kept in `window.received`. */
function pageHtml(streamUrl: string) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>change stream</title></head>
<body><script>
  window.received = [];
  window.opens = 0;
  window.errors = 0;
  const source = new EventSource(${JSON.stringify(streamUrl)});
  window.source = source;
  source.onopen = () => window.opens++;
  source.onerror = () => window.errors++;
  const keep = (e) => window.received.push({ event: e.type, lastEventId: e.lastEventId, data: e.data });
  source.addEventListener('upsert', keep);
  source.addEventListener('delete', keep);
  source.onmessage = keep;
</script></body></html>`;
}

interface Expected {
  type: 'upsert' | 'delete';
  id: string;
  version: number;
  snapshot: boolean;
}

const failures: string[] = [];
function check(condition: boolean, promise: string, detail = '') {
  console.log(`  ${condition ? 'ok  ' : 'FAIL'} ${promise}${condition || !detail ? '' : `: ${detail}`}`);
  if (!condition) failures.push(promise);
}

let pg: EmbeddedPostgres | undefined;
let dir: string | undefined;
let service: ServerProcess | undefined;
let pageServer: Server | undefined;
let browser: Browser | undefined;

async function cleanup() {
  await browser?.close().catch(() => {});
  pageServer?.close();
  await service?.kill();
  await pg?.stop().catch(() => {});
  if (dir) await rm(dir, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));

async function startService(databaseUrl: string, port: number, pageOrigin: string): Promise<ServerProcess> {
  const run = runEntry('src/server.ts', [], {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    CORS_ORIGIN: pageOrigin,
    LOG_LEVEL: 'warn',
  });
  const server = { ...run, baseUrl: `http://127.0.0.1:${port}` };
  await waitReady(server);
  return server;
}

async function main() {
  ensureChromium();
  // as root PostgreSQL runs as the user postgres, who must reach the folder
  dir = await mkdtemp(path.join(process.getuid?.() === 0 ? '/var/tmp' : os.tmpdir(), 'check-browser-'));
  await chmod(dir, 0o755);
  pg = await startEmbeddedPostgres({
    dir,
    database: 'check_browser',
    persistent: false,
    unsafeFast: true,
    log: () => {},
  });
  const databaseUrl = pg.url;

  const pagePort = await freePort();
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const apiPort = await freePort();
  const api = `http://127.0.0.1:${apiPort}`;
  service = await startService(databaseUrl, apiPort, pageOrigin);
  log(`service at ${api} (CORS_ORIGIN=${pageOrigin})`);

  const expected: Expected[] = [];
  let hour = 0;
  const version = new Map<string, number>();
  /** Writes through the API; what it acknowledges is what the page must receive. */
  /** Each write in a slot of its own, each newer than the one before. */
  const slot = () => {
    hour++;
    const at = (ms: number) => new Date(ms).toISOString();
    const start = Date.parse('2031-03-01T00:00:00Z') + hour * 3_600_000;
    return {
      start: at(start),
      end: at(start + 1_800_000),
      createdAt: '2031-01-01T00:00:00.000Z',
      updatedAt: at(Date.parse('2031-02-01T00:00:00Z') + hour * 1000),
    };
  };
  const upsert = async (id: string) => {
    const body = { orgId: ORG, id, ...slot() };
    const answer = await httpRequest<{ status: string; appointment: { version: number } }>(
      service!.baseUrl,
      'POST',
      '/api/appointments',
      { json: body },
    );
    if (!['created', 'updated'].includes(answer.body.status))
      throw new Error(`POST ${id}: ${answer.status} ${answer.text}`);
    version.set(id, answer.body.appointment.version);
    return answer.body.appointment.version;
  };
  const remove = async (id: string) => {
    const answer = await httpRequest(service!.baseUrl, 'DELETE', `/api/appointments/${id}?orgId=${ORG}`);
    if (answer.status !== 204) throw new Error(`DELETE ${id}: ${answer.status} ${answer.text}`);
    expected.push({ type: 'delete', id, version: version.get(id)!, snapshot: false });
  };
  const live = async (id: string) => expected.push({ type: 'upsert', id, version: await upsert(id), snapshot: false });

  // before the page opens: its full sync
  for (const id of ['s3', 's1', 's2']) await upsert(id);
  await remove('s2');
  expected.length = 0;
  expected.push(
    { type: 'upsert', id: 's1', version: 1, snapshot: true },
    { type: 'upsert', id: 's3', version: 1, snapshot: true },
  );

  pageServer = createServer((request, response) => {
    if (request.url !== '/') return void response.writeHead(404).end();
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(pageHtml(`${api}/api/changes/stream?orgId=${ORG}`));
  });
  await new Promise<void>((resolve) => pageServer!.listen(pagePort, '127.0.0.1', resolve));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  const page = await browser.newPage();
  const consoleErrors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  await page.goto(`${pageOrigin}/`);
  log(`Chromium ${browser.version()} opened ${pageOrigin}/`);

  type Received = { event: string; lastEventId: string; data: string };
  const received = () => page.evaluate(() => (globalThis as unknown as { received: Received[] }).received);
  const waitFor = async (n: number, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await received();
      if (got.length >= n || Date.now() > deadline) return got;
      await sleep(50);
    }
  };
  const asExpected = (r: Received): Expected & { event: string } => {
    const change = JSON.parse(r.data) as { type: 'upsert' | 'delete'; id: string; version: number; snapshot?: true };
    return {
      event: r.event,
      type: change.type,
      id: change.id,
      version: change.version,
      snapshot: change.snapshot ?? false,
    };
  };
  const compare = (got: Received[], promise: string) => {
    const seen = got.map(asExpected);
    const wanted = expected.map((e) => ({ event: e.type, ...e }));
    check(
      JSON.stringify(seen) === JSON.stringify(wanted),
      promise,
      `expected ${JSON.stringify(wanted)}\n       got ${JSON.stringify(seen)}`,
    );
  };

  compare(await waitFor(expected.length), 'the page receives the full sync (live appointments only, in id order)');

  for (const id of ['a', 'b', 'c']) await live(id);
  await live('a');
  await remove('b');
  await live('b');
  await live('c');
  const beforeRestart = await waitFor(expected.length);
  compare(beforeRestart, 'then every change, in order, each event named after its change');
  check(
    beforeRestart.every((r) => r.lastEventId !== ''),
    'every event carries an id (the token to resume after it)',
  );

  // the graceful stop: the stream ends, EventSource reconnects (retry: 1000) and finds nobody for a while
  const stopping = service;
  const stoppedAt = Date.now();
  stopping.child.kill('SIGTERM');
  const exit = await Promise.race([stopping.exited, sleep(15_000).then(() => null)]);
  check(exit?.code === 0, 'the service stops on SIGTERM with exit code 0', JSON.stringify(exit));
  log(`service stopped in ${Date.now() - stoppedAt} ms`);
  // written while no service runs: straight into the database through the function the service calls
  await withSql(databaseUrl, async (sql) => {
    for (const id of ['d', 'a']) {
      const { start, end, createdAt, updatedAt } = slot();
      const [row] = await sql<{ version: number }[]>`
        SELECT (appointment).version
        FROM upsert_appointment(${ORG}, ${id}, ${start}, ${end}, ${createdAt}, ${updatedAt}, false)`;
      version.set(id, row!.version);
      expected.push({ type: 'upsert', id, version: row!.version, snapshot: false });
    }
  });
  await sleep(1_500); // EventSource tries (and fails) to reconnect meanwhile
  service = await startService(databaseUrl, apiPort, pageOrigin);
  log(`service started again at ${api}`);
  await live('e');
  await remove('c');
  await live('a');

  const afterRestart = await waitFor(expected.length, 20_000);
  await sleep(1_000); // anything repeated would arrive now
  const final = await received();
  compare(
    final,
    'after the restart, what was written meanwhile arrives exactly once: nothing missed, nothing repeated',
  );
  check(afterRestart.length === final.length, 'no event arrives twice');
  const state = await page.evaluate(() => {
    const w = globalThis as unknown as { source: { readyState: number }; opens: number; errors: number };
    return { readyState: w.source.readyState, opens: w.opens, errors: w.errors };
  });
  check(
    state.readyState === 1 && state.opens >= 2,
    'EventSource reconnected by itself and is open',
    JSON.stringify(state),
  );
  const blocked = consoleErrors.filter((text) => /CORS|Content Security Policy/i.test(text));
  check(blocked.length === 0, 'the browser blocked nothing (CORS, CSP)', blocked.join('; '));
  log(
    `${final.length} events; EventSource opened ${state.opens} times, ${state.errors} error events ` +
      `(its failed reconnections while the service was down)`,
  );
}

let outcome = 0;
try {
  await main();
} catch (error) {
  console.error(error);
  failures.push(String(error));
}
await cleanup();
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (failures.length === 0)
  console.log(`OK: a browser's EventSource followed the change feed across a restart (${seconds} s)`);
else {
  console.log(`FAIL: ${failures.length} promise(s) broken (${seconds} s): ${failures.join('; ')}`);
  outcome = 1;
}
process.exit(outcome);
