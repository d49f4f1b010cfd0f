import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pino from 'pino';
import postgres from 'postgres';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { ConfigError, configWith, loadConfig } from '../src/config.js';
import { migrate } from '../src/db/migrations.js';
import {
  instantMicros,
  lagSeconds,
  parseLsn,
  REPLICA_MARGIN_MS,
  sampleFor,
  STAMP_TO_COMMIT_BOUND_MS,
  type PrimarySample,
} from '../src/db/replica-reads.js';
import { withSql } from '../scripts/lib/database.js';
import { startReplicatedPair, type ReplicatedPair } from '../scripts/lib/replication.js';
import { startHotStandby } from '../scripts/lib/standby.js';
import { microsecondBefore, sleep } from '../scripts/lib/time.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';

// Issue 15, section 3: reads at an instant go to a streaming replica once it has replayed every
// write that could have been stamped at or before that instant (src/db/replica-reads.ts), and to the
// primary otherwise; their answers are the primary's, exactly.

/** How long after an instant the replica may answer for it: the rule's bound, its margin, a sample and slack. */
const SETTLE_MS = STAMP_TO_COMMIT_BOUND_MS + REPLICA_MARGIN_MS + 1_000;

interface Served {
  base: string;
  app: FastifyInstance;
}

async function serve(databaseUrl: string, databaseReplicaUrl?: string): Promise<Served> {
  const app = await buildApp({
    ...configWith({ dbPoolMax: 4, databaseReplicaUrl }),
    databaseUrl,
    logger: pino({ level: 'silent' }),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, base: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` };
}

/** The counters of replica-eligible reads: by target, and the fallbacks by reason. */
async function readCounts(base: string): Promise<Record<string, number>> {
  const res = await http<string>(base, 'GET', '/metrics');
  expect(res.status).toBe(200);
  const counts: Record<string, number> = {};
  for (const family of parsePrometheusTextFormat(res.body)) {
    if (family.name === 'appointments_db_reads_total')
      for (const m of family.metrics) counts[m.labels!.target!] = Number(m.value);
    if (family.name === 'appointments_db_replica_fallbacks_total')
      for (const m of family.metrics) counts[`fallback:${m.labels!.reason}`] = Number(m.value);
  }
  return counts;
}

const delta = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(
    [...new Set([...Object.keys(before), ...Object.keys(after)])]
      .map((key) => [key, (after[key] ?? 0) - (before[key] ?? 0)] as const)
      .filter(([, n]) => n !== 0),
  );

/** The replica-eligible reads of an org and an id at the instant `at`. */
const readsAt = (orgId: string, id: string, at: string) => [
  `/api/appointments?orgId=${orgId}&at=${encodeURIComponent(at)}`,
  `/api/appointments/${id}?orgId=${orgId}&at=${encodeURIComponent(at)}`,
  `/api/appointments/${id}/history?orgId=${orgId}&at=${encodeURIComponent(at)}`,
  `/api/availability?orgId=${orgId}&from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z&at=${encodeURIComponent(at)}`,
];

/** Each path's status and body, read from `base`. */
const answers = async (base: string, paths: string[]) => {
  const result: Array<{ path: string; status: number; body: any }> = [];
  for (const p of paths) {
    const res = await http(base, 'GET', p);
    result.push({ path: p, status: res.status, body: res.body });
  }
  return result;
};

/** `answers` of `base`, and how its read counters moved while it gave them. */
async function countedAnswers(base: string, paths: string[]) {
  const before = await readCounts(base);
  const given = await answers(base, paths);
  return { given, counted: delta(before, await readCounts(base)) };
}

describe('the rule', () => {
  const sample = (at: string, lsn: string): PrimarySample => ({
    at: instantMicros(at),
    lsn: parseLsn(lsn),
    lsnText: lsn,
    system: '1',
    timeline: 1,
  });
  const samples = [
    sample('2030-01-01T00:00:00.000000Z', '0/100'),
    sample('2030-01-01T00:00:02.000000Z', '0/200'),
    sample('2030-01-01T00:00:04.000001Z', '0/300'),
    sample('2030-01-01T00:00:06.000000Z', '1/0'),
  ];

  it('reads times to the microsecond and positions as numbers', () => {
    expect(instantMicros('2030-01-01T00:00:00.000001Z') - instantMicros('2030-01-01T00:00:00.000Z')).toBe(1n);
    expect(instantMicros('1970-01-01T00:00:01.500000Z')).toBe(1_500_000n);
    expect(parseLsn('16/B374D848')).toBe(0x16b374d848n);
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
  });

  it('takes the earliest sample at least bound + margin after the instant, and none for a recent instant', () => {
    const bound = STAMP_TO_COMMIT_BOUND_MS + REPLICA_MARGIN_MS;
    expect(bound).toBe(4_000);
    // exactly bound after: that sample; a microsecond later: the next
    expect(sampleFor(samples, instantMicros('2030-01-01T00:00:00.000000Z'))?.lsnText).toBe('0/300');
    expect(sampleFor(samples, instantMicros('2030-01-01T00:00:00.000001Z'))?.lsnText).toBe('0/300');
    expect(sampleFor(samples, instantMicros('2030-01-01T00:00:00.000002Z'))?.lsnText).toBe('1/0');
    expect(sampleFor(samples, instantMicros('2030-01-01T00:00:02.000001Z'))).toBeUndefined();
    // an instant long before every sample: the oldest
    expect(sampleFor(samples, instantMicros('2020-01-01T00:00:00.000000Z'))?.lsnText).toBe('0/100');
  });

  it("measures the lag in the primary's seconds", () => {
    expect(lagSeconds(samples, parseLsn('1/0'))).toBe(0);
    expect(lagSeconds(samples, parseLsn('0/2FF'))).toBe(4);
    expect(lagSeconds(samples, parseLsn('0/10'))).toBe(6);
    expect(lagSeconds([], 0n)).toBeNaN();
  });

  it('DATABASE_REPLICA_URL: one host or several, standby or any, told without its password', () => {
    expect(loadConfig({ DATABASE_REPLICA_URL: 'postgres://u:pw@r1/db' }).databaseReplicaUrl).toBe(
      'postgres://u:pw@r1/db',
    );
    const several = 'postgres://u:pw@r1:5432,r2:5432/db?target_session_attrs=standby';
    expect(loadConfig({ DATABASE_REPLICA_URL: several }).databaseReplicaUrl).toBe(several);
    expect(loadConfig({}).databaseReplicaUrl).toBeUndefined();
    for (const bad of [
      'mysql://u:s3cret@r1/db',
      'postgres://u:s3cret@r1,,r2/db',
      'postgres://u:s3cret@r1,r2/db?target_session_attrs=read-write',
    ]) {
      let message = '';
      try {
        loadConfig({ DATABASE_REPLICA_URL: bad });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        message = (error as Error).message;
      }
      expect(message).toContain('DATABASE_REPLICA_URL=');
      expect(message).not.toContain('s3cret');
    }
    // a replica's target is refused for the primary
    expect(() => loadConfig({ DATABASE_URL: several })).toThrow(/not supported: the service writes/);
  });
});

describe('reads at an instant with a streaming replica', () => {
  let pair: ReplicatedPair;
  let withReplica: Served;
  let primaryOnly: Served;
  const orgId = newOrg('replica');
  // the times at which the versions of appointment 1 began (validFrom), and its delete
  const stamps: string[] = [];

  beforeAll(async () => {
    pair = await startReplicatedPair(await mkdtemp(path.join(os.tmpdir(), 'appointments-replica-')), ['appointments'], {
      synchronous: false,
    });
    await migrate(pair.urlOf('primary', 'appointments'), () => {});
    withReplica = await serve(pair.urlOf('primary', 'appointments'), pair.urlOf('standby', 'appointments'));
    primaryOnly = await serve(pair.urlOf('primary', 'appointments'));

    // appointment 1: created, moved, deleted, created again; appointment 2 beside it
    const versions = [
      appointment(1, '2030-01-01 09:00', '2030-01-01 10:00', '2020-01-01 00:00'),
      appointment(1, '2030-01-01 11:00', '2030-01-01 12:00', '2020-01-02 00:00'),
    ];
    for (const body of versions) expect((await post(withReplica.base, { ...body, orgId })).status).toBeLessThan(300);
    expect(
      (await post(withReplica.base, { ...appointment(2, '2030-01-01 13:00', '2030-01-01 14:00'), orgId })).status,
    ).toBe(201);
    expect((await http(withReplica.base, 'DELETE', `/api/appointments/1?orgId=${orgId}`)).status).toBe(204);
    const again = appointment(1, '2030-01-01 15:00', '2030-01-01 16:00', '2020-01-03 00:00');
    expect((await post(withReplica.base, { ...again, orgId })).status).toBe(201);
    const history = await http(withReplica.base, 'GET', `/api/appointments/1/history?orgId=${orgId}`);
    expect(history.body).toHaveLength(3);
    for (const version of history.body) stamps.push(version.validFrom);
    stamps.splice(2, 0, history.body[1].validTo); // the delete
  });

  afterAll(async () => {
    await withReplica?.app.close();
    await primaryOnly?.app.close();
    await pair?.destroy();
  });

  it('with replay running, serves reads of the past from the replica, exactly as the primary answers them', async () => {
    await sleep(SETTLE_MS);
    const instants = [
      microsecondBefore(stamps[0]!),
      ...stamps,
      ...stamps.map(microsecondBefore),
      new Date().toISOString(),
    ];
    const paths = instants.flatMap((at) => readsAt(orgId, '1', at));
    const before = await readCounts(withReplica.base);
    const fromReplica = await answers(withReplica.base, paths);
    const counted = delta(before, await readCounts(withReplica.base));
    // the last instant is recent: for it the primary answers
    expect(counted).toEqual({ replica: paths.length - 4, primary: 4, 'fallback:recent': 4 });
    expect(fromReplica).toEqual(await answers(primaryOnly.base, paths));

    // and the answers are those of the instants, not merely the same on both sides
    const history = (at: string) => fromReplica.find((a) => a.path === readsAt(orgId, '1', at)[2])!;
    expect(history(microsecondBefore(stamps[0]!)).status).toBe(404);
    expect(history(stamps[0]!).body).toEqual([expect.objectContaining({ version: 1, validTo: null, deleted: false })]);
    expect(history(microsecondBefore(stamps[2]!)).body).toEqual([
      expect.objectContaining({ version: 1, validTo: stamps[1] }),
      expect.objectContaining({ version: 2, validTo: null, deleted: false }),
    ]);
    expect(history(stamps[2]!).body).toEqual([
      expect.objectContaining({ version: 1 }),
      expect.objectContaining({ version: 2, validTo: stamps[2], deleted: true }),
    ]);
    const one = (at: string) => fromReplica.find((a) => a.path === readsAt(orgId, '1', at)[1])!;
    expect(one(stamps[1]!).body).toMatchObject({ version: 2, start: '2030-01-01T11:00:00.000Z' });
    expect(one(stamps[2]!).status).toBe(404);
    expect(one(stamps[3]!).body).toMatchObject({ version: 3, start: '2030-01-01T15:00:00.000Z' });
    const list = (at: string) => fromReplica.find((a) => a.path === readsAt(orgId, '1', at)[0])!;
    expect(list(stamps[2]!).body.map((a: { id: string }) => a.id)).toEqual(['2']);

    // current reads stay on the primary and are not counted
    const current = delta(await readCounts(withReplica.base), await readCounts(withReplica.base));
    expect(current).toEqual({});
    await http(withReplica.base, 'GET', `/api/appointments?orgId=${orgId}`);
    await http(withReplica.base, 'GET', `/api/appointments/1/history?orgId=${orgId}`);
    expect(delta(before, await readCounts(withReplica.base))).toEqual(counted);

    // the lag gauge: caught up on a quiet primary
    const metrics = await http<string>(withReplica.base, 'GET', '/metrics');
    expect(Number(/^appointments_db_replica_lag_seconds (\S+)$/m.exec(metrics.body)?.[1])).toBeLessThan(1);
  });

  it('with several replica hosts and target_session_attrs=standby, reads go to the one in recovery', async () => {
    const url = new URL(pair.urlOf('standby', 'appointments'));
    url.searchParams.set('target_session_attrs', 'standby');
    // the primary first: it answers, but is no standby
    const hosts = url
      .toString()
      .replace(`@127.0.0.1:${pair.standbyPort}/`, `@127.0.0.1:${pair.primaryPort},127.0.0.1:${pair.standbyPort}/`);
    const several = await serve(pair.urlOf('primary', 'appointments'), hosts);
    try {
      // its first samples, and the instants old enough
      await sleep(Math.max(1_000, Date.parse(stamps.at(-1)!) + SETTLE_MS - Date.now()));
      const paths = stamps.flatMap((at) => readsAt(orgId, '1', at));
      const { given: fromService, counted } = await countedAnswers(several.base, paths);
      expect(fromService).toEqual(await answers(primaryOnly.base, paths));
      expect(counted).toEqual({ replica: paths.length });
    } finally {
      await several.app.close();
    }
  });

  it('with replay paused, reads at instants after later writes go to the primary and see those writes', async () => {
    const standbyAdmin = pair.urlOf('standby', 'postgres');
    await withSql(standbyAdmin, (sql) => sql`SELECT pg_wal_replay_pause()`);
    try {
      for (let i = 0; ; i++) {
        const [{ state }] = await withSql(standbyAdmin, (sql) => sql`SELECT pg_get_wal_replay_pause_state() AS state`);
        if (state === 'paused') break;
        expect(i).toBeLessThan(100);
        await sleep(50);
      }
      const moved = appointment(2, '2030-01-01 17:00', '2030-01-01 18:00', '2021-01-05 00:00');
      const written = await post(withReplica.base, { ...moved, orgId });
      expect(written.body.status).toBe('updated');
      const writtenAt = written.body.appointment.recordedAt as string;
      await sleep(SETTLE_MS + 1_000);
      // the replica has not replayed the write: reading there would miss it
      const [{ seen }] = await withSql(
        pair.urlOf('standby', 'appointments'),
        (sql) =>
          sql`SELECT count(*)::int AS seen FROM appointments WHERE org_id = ${orgId} AND version = 2 AND id = '2'`,
      );
      expect(seen).toBe(0);

      const paths = [writtenAt, new Date(Date.now() - SETTLE_MS).toISOString()].flatMap((at) =>
        readsAt(orgId, '2', at),
      );
      const { given: fromService, counted } = await countedAnswers(withReplica.base, paths);
      expect(fromService).toEqual(await answers(primaryOnly.base, paths));
      expect(counted).toEqual({ primary: paths.length, 'fallback:paused': paths.length });
      expect(fromService[1]!.body).toMatchObject({ version: 2, start: '2030-01-01T17:00:00.000Z' });
      expect(fromService[2]!.body.at(-1)).toMatchObject({ version: 2, validFrom: writtenAt, validTo: null });
    } finally {
      await withSql(standbyAdmin, (sql) => sql`SELECT pg_wal_replay_resume()`);
    }

    // resumed, it catches up and answers again
    await sleep(1_000);
    const at = new Date(Date.now() - SETTLE_MS).toISOString();
    const before = await readCounts(withReplica.base);
    const paths = readsAt(orgId, '2', at);
    expect(await answers(withReplica.base, paths)).toEqual(await answers(primaryOnly.base, paths));
    expect(delta(before, await readCounts(withReplica.base))).toEqual({ replica: paths.length });
  });

  it('with replay behind (recovery_min_apply_delay), reads the replica has not replayed go to the primary', async () => {
    const standbyAdmin = pair.urlOf('standby', 'postgres');
    await withSql(standbyAdmin, async (sql) => {
      await sql`ALTER SYSTEM SET recovery_min_apply_delay = '1h'`;
      await sql`SELECT pg_reload_conf()`;
    });
    try {
      await sleep(500);
      const moved = appointment(2, '2030-01-01 19:00', '2030-01-01 20:00', '2021-01-06 00:00');
      const written = await post(withReplica.base, { ...moved, orgId });
      expect(written.body.status).toBe('updated');
      await sleep(SETTLE_MS);
      const [{ state }] = await withSql(standbyAdmin, (sql) => sql`SELECT pg_get_wal_replay_pause_state() AS state`);
      expect(state).toBe('not paused');
      const paths = readsAt(orgId, '2', written.body.appointment.recordedAt);
      const { given: fromService, counted } = await countedAnswers(withReplica.base, paths);
      expect(fromService).toEqual(await answers(primaryOnly.base, paths));
      expect(counted).toEqual({ primary: paths.length, 'fallback:behind': paths.length });
      expect(fromService[1]!.body).toMatchObject({ version: 3, start: '2030-01-01T19:00:00.000Z' });
    } finally {
      await withSql(standbyAdmin, async (sql) => {
        await sql`ALTER SYSTEM RESET recovery_min_apply_delay`;
        await sql`SELECT pg_reload_conf()`;
      });
    }
  });

  it('a write that commits long after its stamp is waited for: the bound, not the first commit after the instant', async () => {
    // The exclusion check of a write can wait for an overlapping transaction after the write took its
    // stamp (upsert_appointment), so its commit comes well after it. A replica that has replayed
    // everything up to just before that commit must not answer for the stamp's instant.
    const standbyAdmin = pair.urlOf('standby', 'postgres');
    await withSql(standbyAdmin, async (sql) => {
      await sql`ALTER SYSTEM SET recovery_min_apply_delay = '1h'`;
      await sql`SELECT pg_reload_conf()`;
    });
    try {
      await sleep(500);
      const blocker = postgres(pair.urlOf('primary', 'appointments'), { max: 1, onnotice: () => {} });
      let write: Promise<{ status: number; body: any }>;
      try {
        const held = await blocker.reserve();
        await held`BEGIN`;
        await held`SELECT status FROM upsert_appointment(${orgId}, 'blocker', '2030-01-02 10:00Z', '2030-01-02 11:00Z',
                    '2020-01-01Z', '2020-01-01Z', false)`;
        write = post(withReplica.base, { ...appointment('late', '2030-01-02 10:30', '2030-01-02 11:30'), orgId });
        let answered = false;
        void write.then(() => (answered = true));
        // within lock_timeout, which bounds the write's wait
        await sleep(1_500);
        expect(answered, 'the write waits for the overlapping transaction').toBe(false);
        await held`ROLLBACK`;
        held.release();
      } finally {
        await blocker.end();
      }
      const written = await write;
      expect(written.status).toBe(201);
      const stampedAt = written.body.appointment.recordedAt as string;
      await sleep(SETTLE_MS);
      const paths = readsAt(orgId, 'late', stampedAt);
      const { given: fromService, counted } = await countedAnswers(withReplica.base, paths);
      expect(fromService).toEqual(await answers(primaryOnly.base, paths));
      expect(fromService[1]!.body).toMatchObject({ id: 'late', version: 1 });
      expect(counted).toEqual({ primary: paths.length, 'fallback:behind': paths.length });
    } finally {
      await withSql(standbyAdmin, async (sql) => {
        await sql`ALTER SYSTEM RESET recovery_min_apply_delay`;
        await sql`SELECT pg_reload_conf()`;
      });
    }
  });

  it('a replica of another cluster is refused: the primary answers', async () => {
    const password = decodeURIComponent(new URL(pair.urlOf('primary', 'appointments')).password);
    const stranger = await startHotStandby(
      await mkdtemp(path.join(os.tmpdir(), 'appointments-stranger-')),
      'appointments',
      password,
    );
    const url = new URL(pair.urlOf('standby', 'appointments'));
    url.port = String(stranger.port);
    const elsewhere = await serve(pair.urlOf('primary', 'appointments'), url.toString());
    try {
      await sleep(Math.max(1_000, Date.parse(stamps.at(-1)!) + SETTLE_MS - Date.now()));
      const paths = stamps.flatMap((at) => readsAt(orgId, '1', at));
      const { given: fromService, counted } = await countedAnswers(elsewhere.base, paths);
      expect(fromService).toEqual(await answers(primaryOnly.base, paths));
      expect(counted).toEqual({ primary: paths.length, 'fallback:timeline': paths.length });
    } finally {
      await elsewhere.app.close();
      await stranger.destroy();
    }
  });

  it('with the replica stopped, every read is answered by the primary, exactly and without delay', async () => {
    await pair.stopStandby();
    const paths = [...stamps, new Date(Date.now() - SETTLE_MS).toISOString()].flatMap((at) => readsAt(orgId, '1', at));
    const before = await readCounts(withReplica.base);
    const started = performance.now();
    const times: number[] = [];
    const fromService: Awaited<ReturnType<typeof answers>> = [];
    for (const p of paths) {
      const t = performance.now();
      fromService.push(...(await answers(withReplica.base, [p])));
      times.push(performance.now() - t);
    }
    const counted = delta(before, await readCounts(withReplica.base));
    console.info(
      `[replica stopped] ${paths.length} reads in ${Math.round(performance.now() - started)} ms, ` +
        `longest ${Math.round(Math.max(...times))} ms, ${JSON.stringify(counted)}`,
    );
    expect(fromService.every((a) => a.status === 200 || a.status === 404)).toBe(true);
    expect(fromService).toEqual(await answers(primaryOnly.base, paths));
    expect(counted.primary).toBe(paths.length);
    expect(counted.replica).toBeUndefined();
    expect(Math.max(...times)).toBeLessThan(1_500);
    // once the replica is known to be down, reads do not try it
    await sleep(500);
    const later = await readCounts(withReplica.base);
    await answers(withReplica.base, paths.slice(0, 4));
    expect(delta(later, await readCounts(withReplica.base))).toEqual({ primary: 4, 'fallback:unavailable': 4 });
    const metrics = await http<string>(withReplica.base, 'GET', '/metrics');
    expect(metrics.body).toMatch(/^appointments_db_replica_lag_seconds NaN$/im);
  });
});
