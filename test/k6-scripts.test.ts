import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { insertCalendar } from '../scripts/bench/calendar.js';
import {
  calendarAppointment,
  instantAfterSeeding,
  scenarios,
  SCENARIO_NAMES,
  type ScenarioContext,
  type ScenarioRequest,
} from '../scripts/bench/scenarios.js';
import { http } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// The k6 scripts (scripts/k6/) and npm run bench build their requests from scripts/bench/scenarios.js;
// here a few of each scenario's requests go to a real server, and must get the statuses the k6 checks accept.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server?.close();
});

const send = (r: ScenarioRequest) => http(server.baseUrl, r.method, r.path, r.body);

describe('the k6 scenarios', () => {
  it('has a k6 script for every scenario, built from the shared description', () => {
    for (const name of SCENARIO_NAMES) {
      const script = readFileSync(new URL(`../scripts/k6/${name}.js`, import.meta.url), 'utf8');
      expect(script).toContain(`k6Scenario('${name}')`);
    }
  });

  it.each(SCENARIO_NAMES)('%s: seed and requests get the statuses the checks expect', async (name) => {
    const scenario = scenarios[name as keyof typeof scenarios];
    // a calendar of two batches is enough here (availability; the others have none)
    const ctx: ScenarioContext = { run: `t${Date.now().toString(36)}`, appointments: 2_000 };
    const seedRequests = scenario.seed(ctx);
    // the seed of the 100-org mix is large: every tenth of it is enough to exercise its requests
    const seed =
      seedRequests.length > 300
        ? seedRequests.filter((r) => r.method !== 'POST' || Number(/m-(\d+)/.exec(String(r.body?.id))?.[1]) < 2)
        : seedRequests;
    for (const r of seed) {
      const res = await send(r);
      expect(r.expected, `seed ${r.method} ${r.path} ${JSON.stringify(r.body)}: ${JSON.stringify(res.body)}`).toContain(
        res.status,
      );
    }
    ctx.at = instantAfterSeeding();
    const statuses = new Set<number>();
    // four virtual users, six iterations each, as k6's __VU (from 1) and __ITER (from 0) would number them
    for (let iter = 0; iter < 6; iter++) {
      const responses = await Promise.all(
        [1, 2, 3, 4].map(async (vu) => {
          const r = scenario.request(ctx, vu, iter);
          // in the trimmed mix seed only m-0 and m-1 exist: other seeded ids answer 404 here
          if (name === 'read-write-mix' && /\/m-([2-9]|1\d)\?/.test(r.path)) return null;
          if (name === 'read-write-mix' && r.method === 'POST' && /^m-([2-9]|1\d)$/.test(String(r.body?.id)))
            return null;
          return { r, res: await send(r) };
        }),
      );
      for (const x of responses) {
        if (!x) continue;
        expect(
          x.r.expected,
          `${x.r.method} ${x.r.path} ${JSON.stringify(x.r.body)}: ${JSON.stringify(x.res.body)}`,
        ).toContain(x.res.status);
        expect(x.res.status).toBeLessThan(500);
        statuses.add(x.res.status);
      }
    }
    expect(statuses.size).toBeGreaterThan(0);
  });

  it('reads: the list holds 100 items and the point-in-time list sees the seeded calendar', async () => {
    const ctx: ScenarioContext = { run: `t2${Date.now().toString(36)}` };
    for (const r of scenarios.reads.seed(ctx)) expect((await send(r)).status).toBe(r.expected[0]);
    ctx.at = instantAfterSeeding();
    const list = await send(scenarios.reads.request(ctx, 1, 0));
    const atList = await send(scenarios.reads.request(ctx, 1, 3));
    expect(list.body).toHaveLength(100);
    expect(atList.body).toEqual(list.body);
  });

  it('availability: the HTTP seed writes the calendar that run.ts writes in SQL', async () => {
    const ctx: ScenarioContext = { run: `t4${Date.now().toString(36)}`, appointments: 1_500 };
    for (const r of scenarios.availability.seed(ctx)) {
      const res = await send(r);
      expect(res.status).toBe(200);
      expect(res.body.results.every((x: { status: string }) => x.status === 'created')).toBe(true);
    }
    const viaHttp = scenarios.availability.bulkSeed!.orgId(ctx);
    const viaSql = `${viaHttp}-sql`;
    await server.sql.begin((tx) => insertCalendar(tx, viaSql, 1_500));
    const calendar = (orgId: string) => server.sql<{ id: string; start: string; end: string }[]>`
      SELECT id, to_json(start_at) #>> '{}' AS start, to_json(end_at) #>> '{}' AS "end"
      FROM appointments WHERE org_id = ${orgId} ORDER BY start_at`;
    const stored = await calendar(viaHttp);
    expect(await calendar(viaSql)).toEqual(stored);
    expect(stored).toHaveLength(1_500);
    const expected = Array.from({ length: 1_500 }, (_, g) => calendarAppointment(g));
    expect(stored.map((x) => [x.id, Date.parse(x.start), Date.parse(x.end)])).toEqual(
      expected.map((x) => [x.id, Date.parse(x.start), Date.parse(x.end)]),
    );
  });

  it('availability: a week from Monday to Monday, local midnights in Europe/Berlin, inside the calendar', async () => {
    const ctx: ScenarioContext = { run: `t5${Date.now().toString(36)}`, appointments: 1_000_000 };
    const local = new Intl.DateTimeFormat('en-GB', {
      timeZone: 'Europe/Berlin',
      weekday: 'short',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    const weeks = new Set<string>();
    for (let vu = 1; vu <= 20; vu++)
      for (let iter = 0; iter < 20; iter++) {
        const params = new URL(scenarios.availability.request(ctx, vu, iter).path, 'http://x').searchParams;
        const [from, to] = [Date.parse(params.get('from')!), Date.parse(params.get('to')!)];
        expect(local.format(from)).toBe('Mon 00:00');
        expect(local.format(to)).toBe('Mon 00:00');
        expect(Math.abs(to - from - 7 * 86_400_000)).toBeLessThanOrEqual(3_600_000);
        expect(from).toBeGreaterThanOrEqual(Date.parse(calendarAppointment(0).start) - 86_400_000);
        expect(to).toBeLessThanOrEqual(Date.parse(calendarAppointment(999_999).end) + 7 * 86_400_000);
        weeks.add(params.get('from')!);
      }
    // spread over the centuries the calendar covers, with and without summer time
    expect(weeks.size).toBeGreaterThan(300);
    const offsets = new Set([...weeks].map((w) => new Date(w).getUTCHours()));
    expect(offsets).toEqual(new Set([22, 23]));
  });

  it('availability: the week of the seeded calendar is busy and has slots', async () => {
    const ctx: ScenarioContext = { run: `t6${Date.now().toString(36)}`, appointments: 1_200 };
    for (const r of scenarios.availability.seed(ctx)) expect((await send(r)).status).toBe(200);
    ctx.at = instantAfterSeeding();
    const now = await send(scenarios.availability.request(ctx, 1, 0));
    const atSeeded = await send(scenarios.availability.request(ctx, 1, 3));
    expect(now.status).toBe(200);
    expect(now.body.busy.length).toBeGreaterThan(20);
    expect(now.body.slots.length).toBeGreaterThan(10);
    expect(atSeeded.status).toBe(200);
    expect(atSeeded.body.at).toBeDefined();
  });

  it('contention: writers on the narrow window mostly meet a 409', async () => {
    const ctx: ScenarioContext = { run: `t3${Date.now().toString(36)}` };
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, k) => send(scenarios.contention.request(ctx, (k % 8) + 1, Math.floor(k / 8)))),
    );
    const conflicts = results.filter((x) => x.status === 409).length;
    expect(results.every((x) => x.status === 201 || x.status === 409)).toBe(true);
    // a 2-hour window holds at most four 30-minute appointments
    expect(40 - conflicts).toBeLessThanOrEqual(4);
  });
});
