// Durations in settings (WEBHOOK_RETRY_SCHEDULE, WEBHOOK_DISABLE_AFTER): a whole number and a unit,
// `250ms`, `5s`, `5m`, `2h`, `5d`; milliseconds so that tests can run a schedule in a moment.

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const ONE = '[0-9]{1,9}(ms|s|m|h|d)';
/** One duration, as a JSON-schema pattern for a setting. */
export const DURATION_PATTERN = `^${ONE}$`;
/** A comma-separated list of at least one duration. */
export const DURATION_LIST_PATTERN = `^${ONE}(,${ONE})*$`;

/** A duration in ms; throws on text that DURATION_PATTERN refuses. */
export function parseDuration(text: string): number {
  const match = /^([0-9]{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) throw new Error(`${JSON.stringify(text)} is not a duration such as 250ms, 5s, 5m, 2h or 5d`);
  return Number(match[1]) * UNITS[match[2]!]!;
}

/** A comma-separated list of durations, each in ms. */
export const parseDurationList = (text: string): number[] => text.split(',').map(parseDuration);
