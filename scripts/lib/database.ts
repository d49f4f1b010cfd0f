import postgres, { type Sql } from 'postgres';

/** A connection of its own to `url` for the time of `fn`, closed after it. */
export async function withSql<T>(url: string, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}
