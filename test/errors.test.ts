import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { DatabaseBusyError } from '../src/db/client.js';
import { isDatabaseUnavailable } from '../src/errors.js';

// Which failures of the database are answered 503 with Retry-After (the database cannot do it now)
// rather than 500 (a fault of the service), in one place for every route.

const errno = (code: string) => Object.assign(new Error(code), { code });
const sqlState = (code: string) => new postgres.PostgresError({ code, message: code } as never);

describe('a database failure', () => {
  it('is unavailable when the connection fails, however the socket or the driver says it', () => {
    for (const code of [
      'ECONNREFUSED',
      'ECONNRESET',
      'ECONNABORTED',
      'EPIPE',
      'ETIMEDOUT',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'EADDRNOTAVAIL',
      'ERR_STREAM_DESTROYED',
      'ERR_STREAM_WRITE_AFTER_END',
      'CONNECT_TIMEOUT',
      'CONNECTION_CLOSED',
      'CONNECTION_ENDED',
      'CONNECTION_DESTROYED',
    ])
      expect(isDatabaseUnavailable(errno(code)), code).toBe(true);
    expect(isDatabaseUnavailable(new DatabaseBusyError('busy'))).toBe(true);
  });

  it('is unavailable for the server states that pass: shutting down, starting, timeouts, deadlocks, read-only', () => {
    for (const code of ['57P01', '57P03', '57014', '08006', '53300', '40P01', '40001', '55P03', '25006'])
      expect(isDatabaseUnavailable(sqlState(code)), code).toBe(true);
  });

  it('is no unavailability when it is a fault: an unknown function, a syntax error, an internal error', () => {
    for (const code of ['42883', '42601', 'XX000', '23P01', '22007'])
      expect(isDatabaseUnavailable(sqlState(code)), code).toBe(false);
    expect(isDatabaseUnavailable(errno('ENOENT'))).toBe(false);
    expect(isDatabaseUnavailable(new Error('no code'))).toBe(false);
  });
});
