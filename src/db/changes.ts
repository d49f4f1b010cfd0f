import type { Sql, TransactionSql } from 'postgres';
import type { Appointment } from '../schemas/appointments.js';
import { toMilliseconds } from './client.js';

// Every SQL statement of the change feed. A change's position is (feed_xid, feed_seq); the feed serves
// positions whose feed_xid is below the horizon, pg_snapshot_xmin of the reading statement's snapshot:
// every transaction there has ended, so nothing can commit behind a position a reader has passed
// (migrations/1764300000000_change-feed.sql, functions/appointments-feed-position.sql).

/** The feed's identity and the secret its tokens are signed with when SYNC_TOKEN_SECRET is unset. */
export async function getChangeFeed(sql: Sql): Promise<{ feedId: string; tokenSecret: Buffer }> {
  const [feed] = await sql<{ feedId: string; tokenSecret: Buffer }[]>`
    SELECT feed_id AS "feedId", token_secret AS "tokenSecret" FROM change_feed`;
  if (!feed) throw new Error('the change_feed table is empty: the migrations have not run');
  return feed;
}

export interface ChangeRow {
  type: 'upsert' | 'delete';
  id: string;
  version: number;
  recordedAt: string;
  /** The version (for a delete: the version deleted). */
  appointment: Appointment;
  xid: string;
  seq: string;
}

export interface FeedPage {
  /** Up to limit + 1 changes, in position order: one more than asked tells that there is more. */
  changes: ChangeRow[];
  /** pg_snapshot_xmin of the reading statement: what is servable now ends below it. */
  horizon: string;
  /** pg_snapshot_xmax: no position of this database reaches it. */
  nextXid: string;
}

interface Row {
  type: 'upsert' | 'delete';
  id: string;
  orgId: string;
  version: number;
  start: string;
  end: string;
  createdAt: string;
  updatedAt: string;
  versionRecordedAt: string;
  recordedAt: string;
  xid: string;
  seq: string;
}

function toChange(row: Row): ChangeRow {
  return {
    type: row.type,
    id: row.id,
    version: row.version,
    recordedAt: row.recordedAt,
    appointment: {
      id: row.id,
      orgId: row.orgId,
      start: toMilliseconds(row.start),
      end: toMilliseconds(row.end),
      createdAt: toMilliseconds(row.createdAt),
      updatedAt: toMilliseconds(row.updatedAt),
      version: row.version,
      recordedAt: row.versionRecordedAt,
    },
    xid: row.xid,
    seq: row.seq,
  };
}

const versionColumns = (sql: Sql | TransactionSql) => sql`
  id, org_id AS "orgId", version, start_at AS "start", end_at AS "end", created_at AS "createdAt",
  updated_at AS "updatedAt"`;

/**
 * The changes of an org after the position (xid, seq) and below the horizon, in position order: the
 * beginnings of current versions, of earlier versions, and the deletes, each one range scan of its index.
 */
export async function readChangesAfter(
  sql: Sql | TransactionSql,
  o: { orgId: string; xid: string; seq: string; limit: number },
): Promise<FeedPage> {
  const n = o.limit + 1;
  const after = sql`(${o.xid}::xid8, ${o.seq}::bigint)`;
  const rows = await sql<(Row & { horizon: string; nextXid: string })[]>`
    WITH horizon AS MATERIALIZED (
      SELECT pg_snapshot_xmin(s) AS xmin, pg_snapshot_xmax(s) AS xmax FROM pg_current_snapshot() AS s)
    SELECT h.xmin::text AS horizon, h.xmax::text AS "nextXid", c.type, c.id, c."orgId", c.version, c."start", c."end",
           c."createdAt", c."updatedAt", c."versionRecordedAt", c."recordedAt", c.xid::text AS xid, c.seq::text AS seq
    FROM horizon h
    LEFT JOIN LATERAL (
      SELECT * FROM (
        (SELECT 'upsert' AS type, ${versionColumns(sql)}, recorded_at AS "versionRecordedAt",
                recorded_at AS "recordedAt", feed_xid AS xid, feed_seq AS seq
         FROM appointments
         WHERE org_id = ${o.orgId} AND deleted_at IS NULL AND (feed_xid, feed_seq) > ${after} AND feed_xid < h.xmin
         ORDER BY feed_xid, feed_seq
         LIMIT ${n})
        UNION ALL
        (SELECT 'upsert', ${versionColumns(sql)}, valid_from, valid_from, feed_xid, feed_seq
         FROM appointment_versions
         WHERE org_id = ${o.orgId} AND (feed_xid, feed_seq) > ${after} AND feed_xid < h.xmin
         ORDER BY feed_xid, feed_seq
         LIMIT ${n})
        UNION ALL
        (SELECT 'delete', ${versionColumns(sql)}, valid_from, valid_to, deleted_feed_xid, deleted_feed_seq
         FROM appointment_versions
         WHERE org_id = ${o.orgId} AND deleted AND (deleted_feed_xid, deleted_feed_seq) > ${after}
           AND deleted_feed_xid < h.xmin
         ORDER BY deleted_feed_xid, deleted_feed_seq
         LIMIT ${n})
      ) AS changes
      ORDER BY xid, seq
      LIMIT ${n}
    ) c ON true`;
  const [first] = rows;
  // FROM horizon LEFT JOIN ... ON true: never no row
  if (!first) throw new Error('the change feed query answered no row');
  return {
    horizon: first.horizon,
    nextXid: first.nextXid,
    changes: first.id === null ? [] : rows.map(toChange),
  };
}

/** The feed's horizon now: a full sync's snapshot is taken as of the position (horizon, 0). */
export async function currentHorizon(sql: Sql): Promise<{ horizon: string; nextXid: string }> {
  const [row] = await sql<{ horizon: string; nextXid: string }[]>`
    SELECT pg_snapshot_xmin(s)::text AS horizon, pg_snapshot_xmax(s)::text AS "nextXid"
    FROM pg_current_snapshot() AS s`;
  return row!;
}

/**
 * A page of an org's snapshot as of the position (horizon, 0), in id order after `afterId`: for each
 * appointment, its newest change below that position, unless that was its delete. Only changes below a
 * past horizon are read, and those never change, so a page reads the same whenever it is asked for.
 * The current row serves when its version began below the position; otherwise history has the version.
 */
export async function readSnapshot(
  sql: Sql,
  o: { orgId: string; horizon: string; afterId: string | null; limit: number },
): Promise<ChangeRow[]> {
  const horizon = sql`${o.horizon}::xid8`;
  const after = o.afterId === null ? sql`` : sql`AND a.id > ${o.afterId}`;
  const rows = await sql<Row[]>`
    SELECT 'upsert' AS type, a.id, a.org_id AS "orgId", v.version, v.start_at AS "start", v.end_at AS "end",
           v.created_at AS "createdAt", v.updated_at AS "updatedAt", v.recorded_at AS "versionRecordedAt",
           v.recorded_at AS "recordedAt", v.xid::text AS xid, v.seq::text AS seq
    FROM appointments a
    CROSS JOIN LATERAL (
      SELECT * FROM (
        SELECT a.version, a.start_at, a.end_at, a.created_at, a.updated_at, a.recorded_at, a.feed_xid AS xid,
               a.feed_seq AS seq, false AS gone
        WHERE a.deleted_at IS NULL AND a.feed_xid < ${horizon}
        UNION ALL
        (SELECT h.version, h.start_at, h.end_at, h.created_at, h.updated_at, h.valid_from, h.feed_xid, h.feed_seq,
                h.deleted AND h.deleted_feed_xid < ${horizon}
         FROM appointment_versions h
         WHERE h.org_id = a.org_id AND h.id = a.id AND h.feed_xid < ${horizon}
         ORDER BY h.version DESC
         LIMIT 1)
      ) AS candidates
      ORDER BY version DESC
      LIMIT 1
    ) v
    WHERE a.org_id = ${o.orgId} ${after} AND NOT v.gone
    ORDER BY a.id
    LIMIT ${o.limit + 1}`;
  return rows.map(toChange);
}

/**
 * For each org, the position of its last change below the horizon now (null when it has none): a
 * waiting reader whose position is behind it has something to read. One statement for every org that
 * readers of this instance wait on.
 */
export async function latestPositions(
  sql: Sql,
  orgIds: string[],
): Promise<Map<string, { xid: string; seq: string } | null>> {
  const rows = await sql<{ orgId: string; xid: string | null; seq: string | null }[]>`
    WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
    SELECT o.org_id AS "orgId", last.xid::text AS xid, last.seq::text AS seq
    FROM unnest(${orgIds}::text[]) AS o(org_id)
    CROSS JOIN horizon h
    LEFT JOIN LATERAL (
      SELECT * FROM (
        (SELECT feed_xid AS xid, feed_seq AS seq FROM appointments
         WHERE org_id = o.org_id AND deleted_at IS NULL AND feed_xid < h.xmin
         ORDER BY feed_xid DESC, feed_seq DESC LIMIT 1)
        UNION ALL
        (SELECT feed_xid, feed_seq FROM appointment_versions
         WHERE org_id = o.org_id AND feed_xid < h.xmin
         ORDER BY feed_xid DESC, feed_seq DESC LIMIT 1)
        UNION ALL
        (SELECT deleted_feed_xid, deleted_feed_seq FROM appointment_versions
         WHERE org_id = o.org_id AND deleted AND deleted_feed_xid < h.xmin
         ORDER BY deleted_feed_xid DESC, deleted_feed_seq DESC LIMIT 1)
      ) AS ends
      ORDER BY xid DESC, seq DESC
      LIMIT 1
    ) last ON true`;
  return new Map(rows.map((r) => [r.orgId, r.xid === null ? null : { xid: r.xid, seq: r.seq! }]));
}
