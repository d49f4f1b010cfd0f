import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { inject } from 'vitest';

/**
 * A fresh database copied from the migrated template (test/support/global-setup.ts), or with `empty`
 * one with no tables at all. Either is dropped at the end of the run, by its name.
 */
export async function createTestDatabase(options: { empty?: boolean } = {}): Promise<string> {
  const adminUrl = inject('adminUrl');
  const migrated = inject('templateDatabase');
  const template = options.empty ? 'template0' : migrated;
  const name = `${migrated.replace('template', 'copy')}${options.empty ? '_empty' : ''}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    // Copies of one template cannot be made at the same moment; test files take turns.
    await admin`SELECT pg_advisory_lock(424242)`;
    await admin`CREATE DATABASE ${admin(name)} TEMPLATE ${admin(template)}`;
    await admin`SELECT pg_advisory_unlock(424242)`;
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface DatabaseDigest {
  appointments: number;
  versions: number;
  appointmentsDigest: string;
  versionsDigest: string;
}

/** Everything stored, in a form that changes with any insert, update or delete. */
export async function databaseDigest(sql: Sql): Promise<DatabaseDigest> {
  const [digest] = await sql<DatabaseDigest[]>`
    SELECT (SELECT count(*)::int FROM appointments) AS appointments,
           (SELECT count(*)::int FROM appointment_versions) AS versions,
           (SELECT md5(coalesce(string_agg(a::text, '|' ORDER BY a.org_id, a.id), '')) FROM appointments a) AS "appointmentsDigest",
           (SELECT md5(coalesce(string_agg(v::text, '|' ORDER BY v.org_id, v.id, v.version), '')) FROM appointment_versions v) AS "versionsDigest"`;
  return digest!;
}
