import { mkdtemp } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ConfigError, configWith, loadConfig } from '../src/config.js';
import { parseDatabaseUrl, withoutPassword } from '../src/db/database-url.js';
import { freePort } from '../src/db/embedded-postgres.js';
import { EXPECTED_MIGRATIONS, migrate } from '../src/db/migrations.js';
import { withSql } from '../scripts/lib/database.js';
import { runEntry, spawnServer, waitReady } from '../scripts/lib/processes.js';
import { startHotStandby, type Standby } from '../scripts/lib/standby.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { createTestDatabase } from './support/database.js';

// DATABASE_URL with several hosts, as libpq reads it (issue 15, section 2): the service, its
// migrations and its commands connect to the first host that answers read-write.

/** `databaseUrl` (one host) with `before` put ahead of its host, and target_session_attrs=read-write. */
function multiHost(databaseUrl: string, before: string): string {
  const url = new URL(databaseUrl);
  url.searchParams.set('target_session_attrs', 'read-write');
  return url.toString().replace(`@${url.host}/`, `@${before},${url.host}/`);
}

async function run(entry: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = runEntry(entry, args, env, Infinity);
  const { code } = await child.exited;
  return { code, output: child.output() };
}

describe('a multi-host DATABASE_URL', () => {
  it('is read host by host, keeps target_session_attrs, and refuses what no driver could use', () => {
    const url = parseDatabaseUrl(
      'postgres://u:p%40w@h1:5433,[::1],h3/db?sslmode=disable&target_session_attrs=read-write',
    );
    expect(url.hosts).toEqual([
      { host: 'h1', port: 5433 },
      { host: '::1', port: 5432 },
      { host: 'h3', port: 5432 },
    ]);
    expect(url.target).toBe('read-write');
    expect(url.forHost(1)).toBe('postgres://u:p%40w@[::1]:5432/db?sslmode=disable');
    expect(parseDatabaseUrl('postgres://db/appointments').hosts).toEqual([{ host: 'db', port: 5432 }]);
    expect(() => parseDatabaseUrl('postgres://u:pw@h1,,h2/db')).toThrow(/empty or malformed/);
    expect(() => parseDatabaseUrl('postgres://h1,h2/db?target_session_attrs=standby')).toThrow(/not supported/);
    expect(() => parseDatabaseUrl('postgres://h1:99999,h2/db')).toThrow(/out of range/);
  });

  it('is accepted by the configuration, and an invalid one is told without its password', () => {
    const good = 'postgres://app:s3cret@h1:5432,h2:5432/db?target_session_attrs=read-write';
    expect(loadConfig({ DATABASE_URL: good }).databaseUrl).toBe(good);
    for (const bad of [
      'postgres://app:s3cret@h1:5432,:5432/db',
      'postgres://app:s3cret@h1,h2/db?target_session_attrs=prefer-standby',
      'postgres://app:s3c@ret@h1:5432,h2:x/db',
    ]) {
      expect(() => loadConfig({ DATABASE_URL: bad })).toThrow(ConfigError);
      try {
        loadConfig({ DATABASE_URL: bad });
      } catch (error) {
        expect((error as Error).message).toContain('DATABASE_URL="postgres://app:***@');
        expect((error as Error).message).not.toMatch(/s3c/);
      }
    }
    expect(withoutPassword('postgres://app:pw@h1,h2/db?password=pw2&x=1')).toBe(
      'postgres://app:***@h1,h2/db?password=***&x=1',
    );
  });

  it('with a dead host first: the service migrates, starts and serves, and the keys and migrate commands work', async () => {
    const single = await createTestDatabase({ empty: true });
    const databaseUrl = multiHost(single, `127.0.0.1:${await freePort()}`);
    // the URL that pg-connection-string cannot read
    const server = await spawnServer(databaseUrl);
    try {
      await waitReady(server);
      const orgId = newOrg('multihost');
      const created = await post(server.baseUrl, {
        orgId,
        ...appointment('a', '2031-01-01 10:00', '2031-01-01 11:00'),
      });
      expect(created.status).toBe(201);
      const read = await http(server.baseUrl, 'GET', `/api/appointments/a?orgId=${orgId}`);
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ id: 'a', orgId, start: '2031-01-01T10:00:00.000Z' });
    } finally {
      await server.kill();
    }
    const env = { ...process.env, DATABASE_URL: databaseUrl };
    const migrated = await run('src/cli/migrate.ts', [], env);
    expect(migrated.output).not.toMatch(/Invalid URL|Error/);
    expect(migrated.code).toBe(0);
    const created = await run('src/cli/keys.ts', ['create', '--org', 'multihost-keys'], env);
    expect(created.code).toBe(0);
    const listed = await run('src/cli/keys.ts', ['list', '--org', 'multihost-keys'], env);
    expect(listed.code).toBe(0);
    expect(listed.output).toMatch(/\tmultihost-keys\tactive\t/);
    const applied = await withSql(
      single,
      (sql) => sql<{ name: string }[]>`SELECT name FROM pgmigrations ORDER BY name`,
    );
    expect(applied.map((row) => row.name)).toEqual([...EXPECTED_MIGRATIONS]);
  });

  it('with a host first that accepts and never answers: the second serves every request', async () => {
    // a black hole: the TCP connection opens, and nothing ever comes back (a hung host, a dead
    // PostgreSQL behind a proxy), unlike a refused port
    const held: Socket[] = [];
    const hole = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => hole.listen(0, '127.0.0.1', resolve));
    const databaseUrl = multiHost(await createTestDatabase(), `127.0.0.1:${(hole.address() as AddressInfo).port}`);
    const app = await buildApp({
      ...configWith({ dbPoolMax: 4 }),
      databaseUrl,
      logger: pino({ level: 'silent' }),
    });
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const orgId = newOrg('black-hole');
      const answers = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const started = performance.now();
          const answer = await post(baseUrl, {
            orgId,
            ...appointment(`a${i}`, `2031-01-0${i + 1} 10:00`, `2031-01-0${i + 1} 11:00`),
          });
          return { status: answer.status, ms: performance.now() - started };
        }),
      );
      // the hosts are asked at once: the hole, still being waited for, holds no connection back
      expect(answers.map((answer) => answer.status)).toEqual(Array(8).fill(201));
      for (const answer of answers) expect(answer.ms).toBeLessThan(5_000); // the answer bound of every request
      expect(held.length).toBeGreaterThan(0); // the hole was tried
    } finally {
      await app.close();
      for (const socket of held) socket.destroy();
      hole.close();
    }
  });

  describe('with a hot standby first', () => {
    let standby: Standby;
    let databaseUrl: string;
    let testUrl: string;
    beforeAll(async () => {
      testUrl = await createTestDatabase({ empty: true });
      const database = new URL(testUrl).pathname.slice(1);
      const password = decodeURIComponent(new URL(testUrl).password);
      standby = await startHotStandby(
        await mkdtemp(path.join(os.tmpdir(), 'appointments-standby-')),
        database,
        password,
      );
      databaseUrl = multiHost(testUrl, `127.0.0.1:${standby.port}`);
    });
    afterAll(() => standby?.destroy());

    it('migrates and writes on the read-write host, and leaves the standby untouched', async () => {
      const standbyUrl = standby.server.url;
      await withSql(standbyUrl, async (sql) => {
        const [state] =
          await sql`SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') AS ro`;
        expect(state).toEqual({ recovery: true, ro: 'on' });
      });
      await migrate(databaseUrl, () => {});
      const app = await buildApp({ ...configWith({ dbPoolMax: 4 }), databaseUrl, logger: pino({ level: 'silent' }) });
      try {
        await app.listen({ port: 0, host: '127.0.0.1' });
        const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
        const orgId = newOrg('standby-first');
        for (let i = 0; i < 12; i++) {
          const res = await post(baseUrl, { orgId, ...appointment(`a${i}`, '2031-01-01 10:00', '2031-01-01 10:30') });
          expect(res.status).toBe(i === 0 ? 201 : 409);
        }
        expect((await http(baseUrl, 'GET', '/ready')).status).toBe(200);
        const [row] = await withSql(
          testUrl,
          (sql) => sql<{ n: number }[]>`SELECT count(*)::int AS n FROM appointments WHERE org_id = ${orgId}`,
        );
        expect(row!.n).toBe(1);
      } finally {
        await app.close();
      }
      await withSql(standbyUrl, async (sql) => {
        const [row] = await sql`SELECT to_regclass('appointments') IS NULL AS untouched`;
        expect(row!.untouched).toBe(true);
      });
    });
  });
});
