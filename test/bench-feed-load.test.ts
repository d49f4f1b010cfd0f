import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeLoad } from '../scripts/bench/feed-load.js';
import { startTestServer, type TestServer } from './support/server.js';

// The feed's latency target is judged at the rate scripts/bench/feed-load.ts says it achieved: its
// open loop must keep the pace asked for, count what it could not send, and write what it counts.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const stored = async (orgId: string) =>
  Number((await server.sql<{ n: string }[]>`SELECT count(*) AS n FROM appointments WHERE org_id = ${orgId}`)[0]!.n);

describe('the feed benchmark write load', () => {
  it('sends creates at the asked pace into free slots of the org, each one a 201 that is stored', async () => {
    const orgId = 'load-pace';
    const t0 = performance.now();
    // a pace far below the service's, with room for 50 in flight: nothing may fall behind
    const load = writeLoad(server.baseUrl, orgId, { rate: 50, maxInFlight: 50 });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const result = await load.stop();
    const due = ((performance.now() - t0) * 50) / 1000;
    expect(result.notStarted).toBe(0);
    // each tick starts what has fallen due: never ahead of the clock, and behind it only by as much as
    // the last ticks were late (half a second allowed, for a busy machine)
    expect(result.started).toBeLessThanOrEqual(Math.ceil(due));
    expect(result.started).toBeGreaterThanOrEqual(Math.floor(due) - 25);
    expect(result.statuses).toEqual({ 201: result.started });
    expect(load.created).toBe(result.started);
    expect(await stored(orgId)).toBe(result.started);
    // `seconds` is rounded to 10 ms in the result
    expect(Math.abs(result.achievedPerSecond - result.started / result.seconds)).toBeLessThanOrEqual(1);
  });

  it('counts the creates that fell due while all the places were taken, and does not send them', async () => {
    const orgId = 'load-bound';
    const load = writeLoad(server.baseUrl, orgId, { rate: 2_000, maxInFlight: 1 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const result = await load.stop();
    expect(result.notStarted).toBeGreaterThan(0);
    expect(result.started).toBeGreaterThan(0);
    expect(result.statuses).toEqual({ 201: result.started });
    expect(await stored(orgId)).toBe(result.started);
  });
});
