import { randomBytes } from 'node:crypto';
import pino from 'pino';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith, loadConfig } from '../src/config.js';
import { EXPECTED_MIGRATIONS } from '../src/db/migrations.js';
import { runEntry, spawnServer, waitReady } from '../scripts/lib/processes.js';
import { createTestDatabase } from './support/database.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';

// The service needs no superuser at run time: a role with plain table privileges serves every route.
// (It may not set deadlock_timeout, so the service must not ask for it on such a role's connections.)

const role = `appointments_rt_${randomBytes(4).toString('hex')}`;
const password = randomBytes(12).toString('hex');
let cleanup: () => Promise<void> = async () => {};
afterAll(() => cleanup());

const role2 = `${role}_b`;

/** A role with table privileges only, on a database of its own; dropped after the tests. */
async function newRole() {
  const databaseUrl = await createTestDatabase();
  const owner = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await owner`CREATE ROLE ${owner(role2)} LOGIN PASSWORD ${owner.unsafe(`'${password}'`)} NOSUPERUSER`;
  await owner`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${owner(role2)}`;
  const previous = cleanup;
  cleanup = async () => {
    await previous();
    await owner`DROP OWNED BY ${owner(role2)}`;
    await owner`DROP ROLE ${owner(role2)}`;
    await owner.end();
  };
  const url = new URL(databaseUrl);
  url.username = role2;
  url.password = password;
  return { owner, url: url.toString() };
}

describe('an unprivileged database role', () => {
  it('creates, updates, reads, deletes and is ready', async () => {
    const databaseUrl = await createTestDatabase();
    const owner = postgres(databaseUrl, { max: 1, onnotice: () => {} });
    // utility statements take no parameters; the password is generated hex
    await owner`CREATE ROLE ${owner(role)} LOGIN PASSWORD ${owner.unsafe(`'${password}'`)} NOSUPERUSER NOCREATEDB NOCREATEROLE`;
    await owner`GRANT SELECT, INSERT, UPDATE ON appointments, appointment_versions TO ${owner(role)}`;
    await owner`GRANT SELECT ON pgmigrations, change_feed TO ${owner(role)}`;
    await owner`GRANT USAGE ON SEQUENCE change_feed_seq TO ${owner(role)}`;
    await owner`GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_messages, webhook_attempts TO ${owner(role)}`;
    const url = new URL(databaseUrl);
    url.username = role;
    url.password = password;
    const app = await buildApp({
      ...configWith({ dbPoolMax: 4 }),
      databaseUrl: url.toString(),
      logger: pino({ level: 'silent' }),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanup = async () => {
      await app.close();
      await owner`DROP OWNED BY ${owner(role)}`;
      await owner`DROP ROLE ${owner(role)}`;
      await owner.end();
    };
    const [{ superuser }] = await owner<
      { superuser: boolean }[]
    >`SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = ${role}`;
    expect(superuser).toBe(false);

    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const orgId = newOrg();
    expect((await http(base, 'GET', '/ready')).status).toBe(200);
    expect(
      (await post(base, { ...appointment('a', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 10:00'), orgId }))
        .status,
    ).toBe(201);
    expect(
      (await post(base, { ...appointment('a', '2020-10-10 11:00', '2020-10-10 12:00', '2020-09-28 11:00'), orgId }))
        .body.status,
    ).toBe('updated');
    expect((await post(base, { ...appointment('b', '2020-10-10 11:30', '2020-10-10 12:30'), orgId })).status).toBe(409);
    expect((await http(base, 'GET', `/api/appointments/a/history?orgId=${orgId}`)).body).toHaveLength(2);
    expect((await http(base, 'DELETE', `/api/appointments/a?orgId=${orgId}`)).status).toBe(204);
    expect((await http(base, 'GET', `/api/appointments?orgId=${orgId}`)).body).toEqual([]);

    // webhook endpoints: create, list, rotate, enable a disabled one (its messages start again), delete
    const hook = await http(base, 'POST', '/api/webhooks', { url: 'https://93.184.215.14/hook', orgId });
    expect(hook.status).toBe(201);
    const path = `/api/webhooks/${hook.body.id}`;
    expect((await http(base, 'GET', `/api/webhooks?orgId=${orgId}`)).body).toHaveLength(1);
    expect((await http(base, 'POST', `${path}/rotate-secret?orgId=${orgId}`)).status).toBe(200);
    await owner`
      INSERT INTO webhook_messages (endpoint_id, event_id, event_type, body, feed_xid, feed_seq, state, next_attempt_at)
      VALUES (${hook.body.id}, 'msg_role', 'appointment.created', '{}', '1', 1, 'failed', NULL)`;
    await owner`
      INSERT INTO webhook_attempts (endpoint_id, event_id, event_type, attempt, attempted_at, duration_ms)
      VALUES (${hook.body.id}, 'msg_role', 'appointment.created', 1, clock_timestamp(), 5)`;
    await owner`
      UPDATE webhook_endpoints
      SET state = 'disabled', disabled_reason = 'gone', failing_since = clock_timestamp() - interval '1 minute'
      WHERE id = ${hook.body.id}`;
    expect((await http(base, 'POST', `${path}/enable?orgId=${orgId}`)).body.state).toBe('active');
    expect((await owner`SELECT state FROM webhook_messages WHERE event_id = 'msg_role'`)[0]!.state).toBe('pending');
    expect((await http(base, 'DELETE', `${path}?orgId=${orgId}`)).status).toBe(204);
    expect((await owner`SELECT FROM webhook_messages WHERE event_id = 'msg_role'`).length).toBe(0);
  });

  it('warns that it may not set deadlock_timeout only while the role has no short one of its own', async () => {
    const { owner, url } = await newRole();
    const warnings = async () => {
      const lines: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
      const app = await buildApp({ ...configWith({ dbPoolMax: 2 }), databaseUrl: url, logger });
      const [{ setting }] = await app.sql<{ setting: string }[]>`SELECT current_setting('deadlock_timeout') AS setting`;
      await app.close();
      return { setting, deadlockWarnings: lines.filter((line) => line.includes('deadlock_timeout')).length };
    };
    expect(await warnings()).toEqual({ setting: '1s', deadlockWarnings: 1 });
    // what operations.md tells an administrator to do for such a role
    await owner`ALTER ROLE ${owner(role2)} SET deadlock_timeout = '50ms'`;
    expect(await warnings()).toEqual({ setting: '50ms', deadlockWarnings: 0 });
  });

  it('serves through DATABASE_URL and migrates through DATABASE_MIGRATION_URL (a direct connection)', async () => {
    // an empty database that the service's role may use but not change: only the owner can migrate
    const ownerUrl = await createTestDatabase({ empty: true });
    const owner = postgres(ownerUrl, { max: 1, onnotice: () => {} });
    const role3 = `${role}_c`;
    await owner`CREATE ROLE ${owner(role3)} LOGIN PASSWORD ${owner.unsafe(`'${password}'`)} NOSUPERUSER`;
    await owner`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${owner(role3)}`;
    await owner`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO ${owner(role3)}`;
    const previous = cleanup;
    cleanup = async () => {
      await previous();
      await owner`DROP OWNED BY ${owner(role3)}`;
      await owner`DROP ROLE ${owner(role3)}`;
      await owner.end();
    };
    const url = new URL(ownerUrl);
    url.username = role3;
    url.password = password;
    const serviceUrl = url.toString();

    // the service's role alone cannot migrate: what DATABASE_MIGRATION_URL is for
    const alone = runEntry('src/cli/migrate.ts', [], { ...process.env, DATABASE_URL: serviceUrl }, Infinity);
    expect((await alone.exited).code).not.toBe(0);
    expect(alone.output()).toMatch(/permission denied/);

    const server = await spawnServer(serviceUrl, { DATABASE_MIGRATION_URL: ownerUrl });
    try {
      await waitReady(server);
      const orgId = newOrg('direct');
      const created = await post(server.baseUrl, {
        ...appointment('a', '2031-01-01 10:00', '2031-01-01 11:00'),
        orgId,
      });
      expect(created.status).toBe(201);
    } finally {
      await server.kill();
    }
    const [{ applied }] = await owner<{ applied: number }[]>`SELECT count(*)::int AS applied FROM pgmigrations`;
    expect(applied).toBe(EXPECTED_MIGRATIONS.length);
    // and the tables are the owner's: the migrations ran on its connection
    const [{ tableOwner }] = await owner<{ tableOwner: string }[]>`
      SELECT tableowner AS "tableOwner" FROM pg_tables WHERE tablename = 'appointments'`;
    expect(tableOwner).toBe(new URL(ownerUrl).username);
  });

  it('refuses DATABASE_MIGRATION_URL without DATABASE_URL, and shows it without its password', () => {
    expect(() => loadConfig({ DATABASE_MIGRATION_URL: 'postgres://app:s3cret@db:5432/appointments' })).toThrow(
      /DATABASE_MIGRATION_URL="postgres:\/\/app:\*\*\*@db:5432\/appointments": needs DATABASE_URL/,
    );
  });
});
