import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { overlappingPairs } from '../scripts/lib/overlaps.js';
import { microsecondBefore, sleep } from '../scripts/lib/time.js';
import { appointment, newOrg } from './support/fixtures.js';
import { http, post } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// A write takes its recorded_at when its row is formed, before the exclusion check. If another
// appointment moves out of the range in between, that move ends its old version later than our
// recorded_at, and a read at an instant in between would show both. These tests widen that window
// with a BEFORE trigger that sleeps (it runs after the row is formed, before the check), in this
// file's own database only.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  await server.sql`
    CREATE FUNCTION test_slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- (an upsert fires BEFORE INSERT first, then BEFORE UPDATE once it meets the stored row)
      IF NEW.id = 'slow-' || lower(TG_OP) AND NEW.deleted_at IS NULL THEN PERFORM pg_sleep(0.4); END IF;
      RETURN NEW;
    END $$`;
  await server.sql`
    CREATE TRIGGER test_slow_write BEFORE INSERT OR UPDATE ON appointments
    FOR EACH ROW EXECUTE FUNCTION test_slow_write()`;
});
afterAll(() => server.close());

const history = async (orgId: string, id: string) =>
  (await http(server.baseUrl, 'GET', `/api/appointments/${id}/history?orgId=${orgId}`)).body as Array<{
    version: number;
    start: string;
    end: string;
    validFrom: string;
    validTo: string | null;
  }>;

async function assertEverySnapshotFree(orgId: string, ids: string[]) {
  const versions = (
    await Promise.all(ids.map(async (id) => (await history(orgId, id)).map((v) => ({ ...v, id }))))
  ).flat();
  const instants = [
    ...new Set(versions.flatMap((v) => [v.validFrom, ...(v.validTo ? [v.validTo, microsecondBefore(v.validTo)] : [])])),
  ];
  for (const t of instants) {
    const read = (await http(server.baseUrl, 'GET', `/api/appointments?orgId=${orgId}&at=${t}`)).body;
    expect(overlappingPairs(read), `snapshot at ${t}`).toEqual([]);
  }
}

describe('version boundaries across appointments', () => {
  // A new id is checked against the committed appointments before its row is formed (see the
  // migration refuse-overlaps-before-insert): arriving while the range is held, it is refused at once
  // instead of waiting in the exclusion check for the holder to leave. Updates still form their row
  // first (below).
  it('a create into a range that another appointment holds when it arrives is refused at once, though that one leaves', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, {
      ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 10:00'),
      orgId,
    });
    const slowCreate = post(server.baseUrl, {
      ...appointment('slow-insert', '2020-10-10 10:00', '2020-10-10 11:00'),
      orgId,
    });
    await sleep(100); // had it formed its row, it would still be asleep before its exclusion check
    const move = await post(server.baseUrl, {
      ...appointment('x', '2020-10-10 14:00', '2020-10-10 15:00', '2020-09-28 11:00'),
      orgId,
    });
    expect(move.body.status).toBe('updated');
    const created = await slowCreate;
    expect(created.status).toBe(409);
    expect(created.body.conflictsWith).toEqual({
      id: 'x',
      start: '2020-10-10T10:00:00.000Z',
      end: '2020-10-10T11:00:00.000Z',
    });
    expect((await http(server.baseUrl, 'GET', `/api/appointments/slow-insert?orgId=${orgId}`)).status).toBe(404);
    await assertEverySnapshotFree(orgId, ['x']);
  });

  it('an update into such a range ends its own previous version when the new one begins', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, {
      ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 10:00'),
      orgId,
    });
    await post(server.baseUrl, {
      ...appointment('slow-update', '2020-10-10 12:00', '2020-10-10 13:00', '2020-09-28 10:00'),
      orgId,
    });
    const slowUpdate = post(server.baseUrl, {
      ...appointment('slow-update', '2020-10-10 10:00', '2020-10-10 11:00', '2020-09-28 11:00'),
      orgId,
    });
    await sleep(100);
    const move = await post(server.baseUrl, {
      ...appointment('x', '2020-10-10 14:00', '2020-10-10 15:00', '2020-09-28 11:00'),
      orgId,
    });
    expect(move.body.status).toBe('updated');
    const updated = await slowUpdate;
    expect(updated.body.status).toBe('updated');

    const [xv1] = await history(orgId, 'x');
    const y = await history(orgId, 'slow-update');
    expect(updated.body.appointment.recordedAt >= xv1!.validTo!).toBe(true);
    expect(y[1]!.validFrom).toBe(updated.body.appointment.recordedAt);
    expect(y[0]!.validTo).toBe(y[1]!.validFrom);
    await assertEverySnapshotFree(orgId, ['x', 'slow-update']);
  });

  it('a create into a range freed by a delete while it was on its way is refused, and stores nothing', async () => {
    const orgId = newOrg();
    await post(server.baseUrl, { ...appointment('x', '2020-10-10 10:00', '2020-10-10 11:00'), orgId });
    const slowCreate = post(server.baseUrl, {
      ...appointment('slow-insert', '2020-10-10 10:00', '2020-10-10 11:00'),
      orgId,
    });
    await sleep(100);
    expect((await http(server.baseUrl, 'DELETE', `/api/appointments/x?orgId=${orgId}`)).status).toBe(204);
    expect((await slowCreate).status).toBe(409);
    expect((await http(server.baseUrl, 'GET', `/api/appointments/slow-insert?orgId=${orgId}`)).status).toBe(404);
    // sent again, it is stored, and its version starts after the delete
    const created = await post(server.baseUrl, {
      ...appointment('slow-insert', '2020-10-10 10:00', '2020-10-10 11:00'),
      orgId,
    });
    expect(created.status).toBe(201);
    const [xv1] = await history(orgId, 'x');
    expect(created.body.appointment.recordedAt >= xv1!.validTo!).toBe(true);
    await assertEverySnapshotFree(orgId, ['x', 'slow-insert']);
  });
});
