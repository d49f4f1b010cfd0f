// System times as the service writes them (recordedAt, validFrom, validTo: `YYYY-MM-DDTHH:MM:SS.ffffffZ`,
// microseconds of PostgreSQL's clock_timestamp()), and a pause. JavaScript's Date keeps milliseconds
// only, so the microseconds are counted apart, as a bigint where an instant must survive any year.

const SYSTEM_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{3}|\d{6})Z$/;

/** Microseconds since the epoch of a `...SS.ffffffZ` (or `...SS.fffZ`) instant. */
export function systemTimeMicros(text: string): bigint {
  const m = SYSTEM_TIME.exec(text);
  if (!m) throw new Error(`not a system time: ${text}`);
  return BigInt(Date.parse(`${m[1]}Z`)) * 1_000n + BigInt(m[2]!.padEnd(6, '0'));
}

/** The same, as a number: exact for instants before the year 2255. */
export const systemTimeUs = (text: string): number => Number(systemTimeMicros(text));

/** The `...SS.ffffffZ` text of an instant in microseconds since the epoch. */
export function systemTimeText(micros: number | bigint): string {
  const us = typeof micros === 'bigint' ? micros : BigInt(Math.floor(micros));
  const ms = us / 1_000n - (us % 1_000n < 0n ? 1n : 0n);
  return `${new Date(Number(ms)).toISOString().slice(0, 23)}${String(us - ms * 1_000n).padStart(3, '0')}Z`;
}

/** An instant of system time moved by a number of microseconds. */
export const shiftMicroseconds = (time: string, delta: number): string =>
  systemTimeText(systemTimeMicros(time) + BigInt(delta));

/** The system time one microsecond before `time`. */
export const microsecondBefore = (time: string): string => shiftMicroseconds(time, -1);

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
