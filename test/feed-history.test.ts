import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkFeed,
  consumerPlans,
  describeConsumer,
  SLOW_COMMITS_PREFIX,
  SLOW_COMMITS_SQL,
  startFeedConsumers,
} from '../scripts/lib/feed-checker.js';
import { checkHistory, describeAnomalies, readRecordedState, runWorkload } from '../scripts/lib/history-checker.js';
import { newOrg } from './support/fixtures.js';
import { startTestServer, type TestServer } from './support/server.js';

// The change feed under concurrency: consumers of every kind follow the feed while the history
// checker's writers run; afterwards every consumer's sequence is checked against the writes and the
// history (scripts/lib/feed-checker.ts). The long run is `npm run check:history`.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ dbPoolMax: 10 });
  // writes that commit out of transaction-id order (the trap of a feed that serves too early)
  await server.sql.unsafe(SLOW_COMMITS_SQL);
});
afterAll(() => server.close());

const LOAD_MS = 3_000;

describe('the change feed under concurrent writers', () => {
  it('gives every consumer every change exactly once, in order, and replays to the final state', async () => {
    const seed = Number(process.env.HISTORY_SEED ?? Date.now() % 2 ** 31);
    const workload = { seed, orgPrefix: newOrg(SLOW_COMMITS_PREFIX), orgs: 3, idsPerOrg: 6, clients: 24 };
    const plans = consumerPlans(workload, { seed, consumers: 9, loadMs: LOAD_MS, waits: [2, 3] });
    const consumers = startFeedConsumers(server.baseUrl, plans, seed);
    await consumers.ready;
    const events = await runWorkload(server.baseUrl, { ...workload, until: Date.now() + LOAD_MS });
    const state = await readRecordedState(server.baseUrl, workload);
    const records = await consumers.finish(state, { timeoutMs: 10_000 });
    const anomalies = [...checkHistory(events, state), ...checkFeed(events, state, records)];
    const received = records.reduce((n, r) => n + r.changes.length, 0);
    console.log(
      `feed history: seed ${seed}, ${events.length} operations, ${state.versions.length} versions, ` +
        `${records.length} consumers received ${received} changes in ${records.reduce((n, r) => n + r.requests, 0)} requests ` +
        `(${records.reduce((n, r) => n + r.reconnects, 0)} reconnections), ${anomalies.length} anomalies`,
    );
    expect(anomalies, describeAnomalies(anomalies, seed)).toEqual([]);
    // the run reached what the checks are about: changes for every consumer, snapshots mid-load, reconnections
    for (const r of records) expect(r.changes.length, describeConsumer(r)).toBeGreaterThan(0);
    const midLoad = records.filter((r) => r.plan.startAfterMs > 0);
    expect(midLoad.length).toBeGreaterThan(0);
    expect(midLoad.some((r) => r.changes.some((s) => s.change.snapshot === true))).toBe(true);
    for (const r of records.filter((x) => x.plan.reconnecting))
      expect(r.reconnects, describeConsumer(r)).toBeGreaterThan(0);
    expect(events.some((e) => e.op.kind === 'delete' && e.status === 204)).toBe(true);
  });
});
