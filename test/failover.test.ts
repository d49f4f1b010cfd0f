import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { configWith } from '../src/config.js';
import { migrate } from '../src/db/migrations.js';
import { withSql } from '../scripts/lib/database.js';
import { checkStore, countStatuses, startLoad } from '../scripts/lib/faults.js';
import { startReplicatedPair, type ReplicatedPair } from '../scripts/lib/replication.js';
import { sleep } from '../scripts/lib/time.js';
import { newOrg } from './support/fixtures.js';
import { http } from './support/http.js';

// Issue 15, section 2: a primary with a synchronous standby, the primary killed, the standby
// promoted; the service, given both hosts, serves again by itself and has lost nothing it acknowledged.

const ANSWER_BOUND_MS = 5_000;
const RECOVERY_BOUND_MS = 15_000;

describe('the primary killed and the synchronous standby promoted', () => {
  let pair: ReplicatedPair;
  beforeAll(async () => {
    pair = await startReplicatedPair(await mkdtemp(path.join(os.tmpdir(), 'appointments-failover-')), ['appointments']);
  });
  afterAll(() => pair?.destroy());

  it('answers 503 with Retry-After meanwhile, serves again alone after the promotion, and loses no acknowledged write', async () => {
    const databaseUrl = pair.multiHostUrl('appointments');
    await migrate(databaseUrl, () => {});
    const app = await buildApp({ ...configWith({ dbPoolMax: 8 }), databaseUrl, logger: pino({ level: 'silent' }) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const orgId = newOrg('failover');
    try {
      const load = startLoad({ baseUrl, orgId, concurrency: 6, versionsPerId: 3 });
      await sleep(1_000);
      pair.killPrimary();
      const killedAt = Date.now();
      // an operator's (or pg_auto_failover's) delay before the promotion
      await sleep(1_000);
      await pair.promoteStandby();
      const promotedAt = Date.now();
      let recoveredAt: number | undefined;
      while (recoveredAt === undefined && Date.now() - promotedAt < RECOVERY_BOUND_MS + 5_000) {
        await sleep(50);
        recoveredAt = load.outcomes.find((o) => o.startedAt >= promotedAt && o.status === 201)?.startedAt;
      }
      await sleep(500);
      await load.stop();

      const outcomes = load.outcomes;
      const check = await withSql(pair.urlOf('standby', 'appointments'), (sql) => checkStore(sql, orgId, load.acked));
      console.info(
        `[failover] ${outcomes.length} writes, statuses ${JSON.stringify(countStatuses(outcomes))}, ` +
          `longest answer ${Math.max(...outcomes.map((o) => o.ms))} ms, promoted ${promotedAt - killedAt} ms after the kill, ` +
          `first write after the promotion ${recoveredAt === undefined ? 'never' : `${recoveredAt - promotedAt} ms`} later, ` +
          `${load.acked.length} acknowledged, ${check.storedVersions} stored, ${check.lost.length} lost, ${check.duplicated.length} duplicated`,
      );
      expect(recoveredAt, 'the service serves again without a restart').toBeDefined();
      expect(recoveredAt! - promotedAt).toBeLessThan(RECOVERY_BOUND_MS);
      expect([...new Set(outcomes.map((o) => o.status))].every((s) => s === 201 || s === 200 || s === 503)).toBe(true);
      expect(outcomes.filter((o) => o.status === 503).every((o) => o.retryAfter === '1')).toBe(true);
      expect(Math.max(...outcomes.map((o) => o.ms))).toBeLessThan(ANSWER_BOUND_MS);
      expect(check).toMatchObject({ lost: [], duplicated: [], inconsistent: [] });
      expect((await http(baseUrl, 'GET', '/ready')).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
