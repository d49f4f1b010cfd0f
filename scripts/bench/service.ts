// The service of a checkout, compiled and started as `npm start` and the Docker image run it (bin/start),
// for the benchmark scripts that start their own (ab.ts, feed.ts); or the bare implementation (run.ts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/db/embedded-postgres.js';

export interface RunningService {
  baseUrl: string;
  child: ChildProcess;
  /** SIGTERM, then waits for the exit (the service finishes its requests and closes its streams). */
  stop(): Promise<void>;
}

export async function startService(o: {
  /** The checkout: built with `npm run build`, started with its bin/start. */
  dir: string;
  databaseUrl: string;
  /** The service writes its log here itself (through a pipe, each line would wake the load generator). */
  logFile: string;
  env?: Record<string, string>;
  /** Instead of the checkout's bin/start: a copy with other node flags (profile.ts: --cpu-prof). */
  startScript?: string;
  /** Instead of the service: this TypeScript file, run from the sources with tsx (run.ts: bare-service.ts). */
  entry?: string;
}): Promise<RunningService> {
  if (!o.entry) {
    const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: o.dir, stdio: 'inherit' });
    if (build.status !== 0) throw new Error(`npm run build failed in ${o.dir}`);
  }
  const port = await freePort();
  const logFd = openSync(o.logFile, 'a');
  const [command, args] = o.entry
    ? [process.execPath, ['--import', 'tsx', o.entry]]
    : [o.startScript ?? path.join(o.dir, 'bin', 'start'), []];
  const child = spawn(command, args, {
    cwd: o.dir,
    env: { ...process.env, DATABASE_URL: o.databaseUrl, PORT: String(port), HOST: '127.0.0.1', ...o.env },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service of ${o.dir} exited; see ${o.logFile}`);
    try {
      if ((await fetch(`${baseUrl}/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the service of ${o.dir} was not ready within 60 s; see ${o.logFile}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { baseUrl, child, stop };
}

/**
 * A copy of the checkout's bin/start, written into `outDir`, with more node flags (node refuses many in
 * NODE_OPTIONS), so that every other flag stays the one the service ships with.
 */
export function startScriptWith(dir: string, nodeFlags: string, outDir: string): string {
  const script = readFileSync(path.join(dir, 'bin', 'start'), 'utf8');
  const changed = script.replace('exec node ', `exec node ${nodeFlags} `).replace('"$(dirname -- "$0")/..', `"${dir}`);
  if (!changed.includes(nodeFlags) || changed.includes('$0')) throw new Error('bin/start has changed: see service.ts');
  const file = path.join(outDir, `start-${nodeFlags.replace(/[^a-z0-9]+/gi, '-')}`);
  writeFileSync(file, changed, { mode: 0o755 });
  return file;
}
