import type { Sql } from 'postgres';

// Read when Prometheus scrapes, not on any request's path; each is one cheap statement.

/**
 * The age, in seconds, of the oldest open transaction of the cluster that has an xid (it has written),
 * prepared transactions included: the change feed serves nothing past it, so it is how far consumers
 * may lag behind. 0 when there is none. Without pg_read_all_stats (or pg_monitor) the role sees the
 * xids of its own sessions only: grant it for the other roles' transactions to count.
 */
export async function oldestWritingTransactionAge(sql: Sql): Promise<number> {
  const [row] = await sql<{ age: number }[]>`
    SELECT coalesce(extract(epoch FROM clock_timestamp() - min(started)), 0)::float8 AS age
    FROM (SELECT xact_start AS started FROM pg_stat_activity WHERE backend_xid IS NOT NULL
          UNION ALL
          SELECT prepared FROM pg_prepared_xacts) AS open`;
  return Math.max(0, row!.age);
}

/** Webhook messages still to deliver (over every endpoint), and the endpoints disabled. */
export async function webhookBacklog(sql: Sql): Promise<{ pending: number; disabledEndpoints: number }> {
  const [row] = await sql<{ pending: number; disabledEndpoints: number }[]>`
    SELECT (SELECT count(*) FROM webhook_messages WHERE state = 'pending')::int AS pending,
           (SELECT count(*) FROM webhook_endpoints WHERE state = 'disabled')::int AS "disabledEndpoints"`;
  return row!;
}
