import postgres, { type ReservedSql, type Sql } from 'postgres';

// sql.begin of postgres.js answers any error inside the transaction with a ROLLBACK on the same
// connection, also when the error is that the connection has closed: that ROLLBACK is written to a
// socket that is gone, from a setImmediate, and the TypeError it throws is uncaught (the process
// dies). The delivery engine runs transactions all the time, so a PostgreSQL restart would find one
// in flight. Here the ROLLBACK is sent only after an ordinary SQL error, on a connection that lives.

/** An error of a statement on a connection that goes on (not FATAL, not a lost socket). */
const statementError = (error: unknown) =>
  error instanceof postgres.PostgresError && error.severity !== 'FATAL' && error.severity !== 'PANIC';

/**
 * Runs `fn` in a transaction on a connection of its own; with `synchronousCommit: false` its commit
 * does not wait for the WAL to reach the disk (a crash may undo it, never half of it). After a lost connection the connection is
 * neither rolled back nor given back: postgres.js has moved it to its closed ones already (or will at
 * the socket's close), and the server has ended the transaction.
 */
export async function transaction<T>(
  sql: Sql,
  fn: (tx: ReservedSql) => Promise<T>,
  options: { synchronousCommit?: boolean } = {},
): Promise<T> {
  const tx = await sql.reserve();
  let reusable = true;
  try {
    if (options.synchronousCommit === false) await tx.unsafe('BEGIN; SET LOCAL synchronous_commit TO off');
    else await tx`BEGIN`;
    const result = await fn(tx);
    await tx`COMMIT`;
    return result;
  } catch (error) {
    if (statementError(error)) await tx`ROLLBACK`;
    else reusable = false;
    throw error;
  } finally {
    if (reusable) tx.release();
  }
}
