import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FEW_RECORDED_PAGES } from '../src/db/appointments.js';
import type { HistoryEntry } from '../src/schemas/appointments.js';
import { seededRandom } from '../scripts/lib/random.js';
import { microsecondBefore } from '../scripts/lib/time.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// The point-in-time list against an oracle: a random sequence of creates, moves, deletes and
// re-creations, then, at every instant where some version began or ended (and a microsecond before
// it), the pages of GET /api/appointments?at= must be exactly the versions whose period holds that
// instant, in start order, filtered by from/to, however they are paged.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

/** A history entry of one appointment, with its id. */
type Version = HistoryEntry & { id: string };

const DAY = '2030-05-01';
const slot = (n: number) => new Date(Date.parse(`${DAY}T08:00:00Z`) + n * 30 * 60_000).toISOString();

async function writeRandomCalendar(
  orgId: string,
  random: () => number,
  operations: number,
  appointments = 24,
): Promise<string[]> {
  const ids = Array.from({ length: appointments }, (_, i) => `p${i}`);
  for (let n = 1; n <= operations; n++) {
    const id = ids[Math.floor(random() * ids.length)]!;
    if (random() < 0.15) {
      await http(server.baseUrl, 'DELETE', `/api/appointments/${id}?orgId=${orgId}`);
      continue;
    }
    const first = Math.floor(random() * 4 * appointments);
    const updatedAt = new Date(Date.parse('2030-01-01T00:00:00Z') + n * 1000).toISOString();
    const res = await post(server.baseUrl, {
      ...appointment(id, slot(first), slot(first + 1 + Math.floor(random() * 2)), updatedAt),
      orgId,
    });
    expect([200, 201, 409]).toContain(res.status);
  }
  return ids;
}

async function allVersions(orgId: string, ids: string[]): Promise<Version[]> {
  const versions: Version[] = [];
  for (const id of ids) {
    const res = await http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`);
    if (res.status === 404) continue;
    expect(res.status).toBe(200);
    versions.push(...(res.body as HistoryEntry[]).map((v) => ({ ...v, id })));
  }
  return versions;
}

async function readAllPages(query: string, limit: number): Promise<unknown[]> {
  const seen: unknown[] = [];
  let path: string | undefined = `/api/appointments?${query}&limit=${limit}`;
  while (path) {
    const res = await http(server.baseUrl, 'GET', path);
    expect(res.status, res.body?.message).toBe(200);
    seen.push(...res.body);
    const link = res.headers.link as string | undefined;
    path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1] : undefined;
  }
  return seen;
}

// The current rows of a snapshot are read one of two ways, depending on how many of them were
// recorded by `at` compared with the page size (see listAppointmentsAt): a calendar of many
// appointments and small pages takes both ways as `at` moves on.
const workloads = [
  {
    name: 'a calendar of few appointments, often moved',
    appointments: 24,
    operations: 400,
    maxLimit: 8,
    bothWays: false,
  },
  {
    name: 'a calendar of many appointments, some moved',
    appointments: 80,
    operations: 300,
    maxLimit: 3,
    bothWays: true,
  },
];

describe.each(workloads)('point-in-time list: $name', ({ appointments, operations, maxLimit, bothWays }) => {
  it('equals the versions current at each instant, in start order, for any window and page size', async () => {
    const seed = Date.now() % 1_000_000;
    const random = seededRandom(seed);
    const orgId = newOrg('pit');
    const neighbour = newOrg('pit');
    const ids = await writeRandomCalendar(orgId, random, operations, appointments);
    // another org in the same slots at the same moments: never part of the answer
    await writeRandomCalendar(neighbour, seededRandom(seed + 1), 40);
    const versions = await allVersions(orgId, ids);
    expect(versions.filter((v) => v.validTo !== null).length, 'the workload left history').toBeGreaterThan(100);

    const boundaries = [...new Set(versions.flatMap((v) => (v.validTo ? [v.validFrom, v.validTo] : [v.validFrom])))];
    const instants = [
      '2000-01-01T00:00:00.000000Z',
      '2999-01-01T00:00:00.000000Z',
      ...boundaries.flatMap((t) => [t, microsecondBefore(t)]).filter(() => random() < 0.25),
    ];
    const windows: Array<{ from?: string; to?: string }> = [
      {},
      { from: slot(30) },
      { to: slot(50) },
      { from: slot(20), to: slot(60) },
      { from: slot(41), to: slot(42) },
    ];

    let compared = 0;
    const ways = { fewRecorded: 0, manyRecorded: 0 };
    for (const at of instants) {
      const window = windows[Math.floor(random() * windows.length)]!;
      const expected = versions
        .filter((v) => v.validFrom <= at && (v.validTo === null || at < v.validTo))
        .filter(
          (v) => (window.from === undefined || v.end > window.from) && (window.to === undefined || v.start < window.to),
        )
        .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.id < b.id ? -1 : 1))
        .map((v) => ({
          id: v.id,
          orgId,
          start: v.start,
          end: v.end,
          createdAt: v.createdAt,
          updatedAt: v.updatedAt,
          version: v.version,
          recordedAt: v.validFrom,
        }));
      const query = [
        `orgId=${orgId}`,
        `at=${at}`,
        ...(window.from ? [`from=${window.from}`] : []),
        ...(window.to ? [`to=${window.to}`] : []),
      ].join('&');
      const limit = 1 + Math.floor(random() * maxLimit);
      const recordedBy = versions.filter((v) => v.validTo === null && v.validFrom <= at).length;
      ways[recordedBy >= FEW_RECORDED_PAGES * (limit + 1) ? 'manyRecorded' : 'fewRecorded']++;
      expect(await readAllPages(query, limit), `seed ${seed}, ${query}, limit ${limit}`).toEqual(expected);
      compared += expected.length;
    }
    expect(compared, 'the instants chosen showed appointments').toBeGreaterThan(200);
    if (bothWays) expect(Math.min(ways.fewRecorded, ways.manyRecorded), JSON.stringify(ways)).toBeGreaterThan(10);
  });
});

describe('point-in-time history', () => {
  it('is the versions begun by the instant, the one current then with no end and no delete, else 404', async () => {
    const seed = Date.now() % 1_000_000;
    const random = seededRandom(seed);
    const orgId = newOrg('pit-history');
    const ids = await writeRandomCalendar(orgId, random, 120, 8);
    const versions = await allVersions(orgId, ids);
    expect(
      versions.some((v) => v.deleted),
      'the workload deleted some',
    ).toBe(true);
    const boundaries = [...new Set(versions.flatMap((v) => (v.validTo ? [v.validFrom, v.validTo] : [v.validFrom])))];
    let compared = 0;
    for (const at of ['2000-01-01T00:00:00.000000Z', ...boundaries.flatMap((t) => [t, microsecondBefore(t)])]) {
      const id = ids[Math.floor(random() * ids.length)]!;
      const expected = versions
        .filter((v) => v.id === id && v.validFrom <= at)
        .map(({ id: _, ...v }) => {
          const ended = v.validTo !== null && v.validTo <= at;
          return { ...v, validTo: ended ? v.validTo : null, deleted: ended && v.deleted };
        });
      const res = await http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}&at=${at}`);
      if (expected.length === 0) {
        expect(res.status, `seed ${seed}, ${id} at ${at}`).toBe(404);
        expect(res.body.message).toContain(`by ${at}`);
      } else {
        expect(res.body, `seed ${seed}, ${id} at ${at}`).toEqual(expected);
        compared += expected.length;
      }
    }
    expect(compared).toBeGreaterThan(50);
    const malformed = await http(server.baseUrl, 'GET', `/api/appointments/${ids[0]}/history?orgId=${orgId}&at=soon`);
    expect(malformed.status).toBe(400);
  });
});
