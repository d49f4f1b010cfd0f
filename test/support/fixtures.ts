import { randomBytes } from 'node:crypto';
import { CLASSIC_PAYLOADS } from '../../scripts/bench/scenarios.js';

/** A unique org id, so tests sharing a database never see each other's appointments. */
export const newOrg = (label = 'org') => `${label}-${randomBytes(5).toString('hex')}`;

/** An appointment body; times without a zone are UTC. */
export function appointment(
  id: string | number,
  start: string,
  end: string,
  updatedAt = '2020-09-28 14:23:12',
  extra: Record<string, unknown> = {},
) {
  return { id, start, end, createdAt: '2020-09-01 10:00', updatedAt, ...extra };
}

/**
 * The seven payloads of scripts/concurrent-requests.sh, as the load scenarios send them
 * (scripts/bench/scenarios.js): CLASSIC[4] is payload 5, whose end comes before its start.
 */
export const CLASSIC = CLASSIC_PAYLOADS.map(([payload]) => payload);
