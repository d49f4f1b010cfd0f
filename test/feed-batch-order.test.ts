import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// Found by the feed checker (npm run check:history): the items of a batch that is not atomic came out
// of item order in the feed. A batch is one transaction with one xid, taken at its first write; an item
// on a row last changed by a transaction that began later took that transaction's greater xid as its
// position, and an item after it, on a row with an older position, the batch's own smaller xid.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const write = (orgId: string, id: string, hour: number, updatedAt: string) => ({
  orgId,
  ...appointment(
    id,
    `2033-01-01 ${String(hour).padStart(2, '0')}:00`,
    `2033-01-01 ${String(hour).padStart(2, '0')}:30`,
  ),
  updatedAt,
});

describe('the change feed and the transactions that write many rows', () => {
  it("gives a transaction's changes in the order it wrote them, though a later transaction changed a row first", async () => {
    const orgId = newOrg('order');
    const start = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}`);
    expect((await post(server.baseUrl, write(orgId, 'old', 1, '2032-01-01 00:00'))).status).toBe(201);
    const items = (rows: Array<ReturnType<typeof write>>) =>
      JSON.stringify(
        rows.map((r, i) => ({
          i,
          orgId: r.orgId,
          id: r.id,
          start: r.start,
          end: r.end,
          createdAt: r.createdAt,
          updatedAt: r.updatedAt,
          ifMatch: null,
        })),
      );
    await server.sql.begin(async (tx) => {
      // the batch's first item takes its xid
      await tx`SELECT * FROM upsert_appointment_batch(${items([write(orgId, 'first', 2, '2032-01-02 00:00')])}::text::jsonb, false, false)`;
      // a transaction that began after it changes a row the batch writes next, and commits
      expect((await post(server.baseUrl, write(orgId, 'later', 3, '2032-01-02 00:00'))).status).toBe(201);
      // the batch's next items: that row, then a row last changed before the batch began
      await tx`SELECT * FROM upsert_appointment_batch(${items([
        write(orgId, 'later', 3, '2032-01-03 00:00'),
        write(orgId, 'old', 1, '2032-01-03 00:00'),
      ])}::text::jsonb, false, false)`;
    });
    const page = await http(server.baseUrl, 'GET', `/api/changes?orgId=${orgId}&since=${start.body.next}`);
    expect(page.status).toBe(200);
    expect(page.body.changes.map((c: any) => `${c.id} v${c.version}`)).toEqual([
      'old v1',
      'first v1',
      'later v1',
      // the batch's items in item order, after the change of the row they found
      'later v2',
      'old v2',
    ]);
  });
});
