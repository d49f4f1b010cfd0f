// Durations as settings are written: a whole number and a unit, `500ms`, `90s`, `30m`, `24h`, `5d`, and
// lists of them separated by commas (`5s,5m,30m`). config.ts checks the form with the patterns; the
// code that uses a setting turns it into milliseconds with parseDuration or parseDurationList.

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

const ONE = '[0-9]{1,9}(ms|s|m|h|d)';

/** One duration: digits and a unit (ms, s, m, h or d). */
export const DURATION_PATTERN = `^${ONE}$`;
/** One or more durations separated by commas, without spaces. */
export const DURATION_LIST_PATTERN = `^${ONE}(,${ONE})*$`;
/** The form in words, for the messages of config.ts. */
export const DURATION_RULE = 'a whole number and a unit (ms, s, m, h or d), such as 90s, 30m, 24h or 5d';

const DURATION = /^([0-9]{1,9})(ms|s|m|h|d)$/;

/** The milliseconds of a duration such as `24h`, or undefined when the text is not one. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}

/** The milliseconds of each duration of a list such as `5s,5m,30m`, or undefined when one is not a duration. */
export function parseDurationList(text: string): number[] | undefined {
  const list = text.split(',').map(parseDuration);
  return list.every((ms) => ms !== undefined) ? (list as number[]) : undefined;
}

/** parseDuration for a value config.ts has checked; throws, naming the setting, for one it has not. */
export function durationMs(text: string, setting: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`${setting} must be ${DURATION_RULE}, not ${JSON.stringify(text)}`);
  return ms;
}

/** parseDurationList for a value config.ts has checked; throws, naming the setting, for one it has not. */
export function durationListMs(text: string, setting: string): number[] {
  const list = parseDurationList(text);
  if (list === undefined)
    throw new Error(`${setting} must be a comma-separated list of ${DURATION_RULE}, not ${JSON.stringify(text)}`);
  return list;
}
