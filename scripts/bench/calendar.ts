import type { TransactionSql } from 'postgres';
import { CALENDAR } from './scenarios.js';

/**
 * Appointments 0 to n - 1 of the calendar of scenarios.js (calendarAppointment) in org `orgId`, in one
 * INSERT ... SELECT: the same integers as the JavaScript, so that the org npm run bench seeds in SQL is
 * the one k6 seeds through HTTP (test/k6-scripts.test.ts compares them).
 */
export function insertCalendar(sql: TransactionSql, orgId: string, n: number) {
  const { firstMonday, workingDays, firstHourUtc, perDay, periodMinutes } = CALENDAR;
  return sql`
    INSERT INTO appointments (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
    SELECT ${orgId}, 'a-' || g, s, s + minutes * interval '1 minute',
           ${'2029-12-31T23:59:00Z'}::timestamptz, ${'2030-01-01T00:00:00Z'}::timestamptz, 1, clock_timestamp()
    FROM generate_series(0, ${n - 1}::int) AS g,
         LATERAL (SELECT 30 + 10 * (g % 4) AS minutes) AS m,
         LATERAL (SELECT ${new Date(firstMonday).toISOString()}::timestamptz
                         + (g / ${workingDays * perDay}::int * 7 + g / ${perDay}::int % ${workingDays}::int) * interval '1 day'
                         + (${firstHourUtc * 60}::int + g % ${perDay}::int * ${periodMinutes}::int
                            + ((g * 7) % 3) * (${periodMinutes}::int - minutes) / 2) * interval '1 minute' AS s) AS t`;
}
