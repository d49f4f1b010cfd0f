import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from '../../src/db/embedded-postgres.js';
import { httpRequest } from './http.js';
import { sleep } from './time.js';

// The service and its commands as child processes, run from the sources: used by scripts/check-faults.ts,
// test/production-start.test.ts (no vitest here).

const PROJECT_DIR = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

export interface ChildRun {
  child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What it wrote to stdout and stderr (the last `keepChunks` chunks of it). */
  output(): string;
  /** SIGKILL if it still runs. */
  kill(): Promise<void>;
}

/** `node --import tsx <entry> ...args` from the sources, in the project folder, with exactly `env`. */
export function runEntry(entry: string, args: string[], env: NodeJS.ProcessEnv, keepChunks = 200): ChildRun {
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], {
    cwd: PROJECT_DIR,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(chunk.toString('utf8'));
    if (lines.length > keepChunks) lines.shift();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    exited,
    output: () => lines.join(''),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export interface ServerProcess extends ChildRun {
  baseUrl: string;
}

/** The real service, as `node --import tsx src/server.ts`, against `databaseUrl`. */
export async function spawnServer(
  databaseUrl: string,
  env: Record<string, string> = {},
  entry = 'src/server.ts',
): Promise<ServerProcess> {
  const port = await freePort();
  const run = runEntry(entry, [], {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'warn',
    ...env,
  });
  return { ...run, baseUrl: `http://127.0.0.1:${port}` };
}

/** Waits until GET /ready answers 200; throws after `timeoutMs` or when the process exits. */
export async function waitReady(server: ServerProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void server.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`the service exited before it was ready:\n${server.output()}`);
    try {
      if ((await httpRequest(server.baseUrl, 'GET', '/ready', { timeoutMs: 2_000 })).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the service was not ready within ${timeoutMs} ms:\n${server.output()}`);
    await sleep(100);
  }
}
