// Entity tags of appointments (RFC 9110, section 8.8.3) and the precondition headers that carry them.

/**
 * The strong ETag of an appointment's version, the same text as appointment_etag() in SQL
 * (src/db/functions/appointment-etag.sql): `"<version>-<recordedAt in microseconds since 1970>"`.
 */
export function appointmentEtag(a: { version: number; recordedAt: string }): string {
  // recordedAt is canonical, `2026-12-01T11:42:45.123456Z`: milliseconds from Date, microseconds from the text
  const micros = BigInt(Date.parse(`${a.recordedAt.slice(0, 23)}Z`)) * 1000n + BigInt(a.recordedAt.slice(23, 26));
  return `"${a.version}-${micros}"`;
}

/** What an If-Match or If-None-Match value says: any current version (`*`), or these tags. */
export type EntityTagList = '*' | Array<{ tag: string; weak: boolean }>;

// entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text (%x80-FF)
const ENTITY_TAG = /^(W\/)?("[\x21\x23-\x7e\x80-\xff]*")/;

/** Parses `*` or a comma-separated list of entity tags; null when the value is malformed. */
export function parseEntityTags(value: string): EntityTagList | null {
  const text = value.trim();
  if (text === '*') return '*';
  const tags: Array<{ tag: string; weak: boolean }> = [];
  let rest = text;
  for (;;) {
    const match = ENTITY_TAG.exec(rest);
    if (!match) return null;
    tags.push({ tag: match[2]!, weak: match[1] !== undefined });
    rest = rest.slice(match[0].length).replace(/^[ \t]+/, '');
    if (rest === '') return tags;
    if (!rest.startsWith(',')) return null;
    // empty list elements (`a, , b`) are allowed by the list syntax
    rest = rest.replace(/^[ \t,]+/, '');
    if (rest === '') return tags;
  }
}

/**
 * The tags a write's If-Match accepts, for upsert_appointment and the delete: `['*']` for any live
 * version, else the strong tags only (strong comparison: a weak tag never matches, so a list of weak
 * tags accepts nothing).
 */
export function ifMatchTags(list: EntityTagList): string[] {
  return list === '*' ? ['*'] : list.filter((t) => !t.weak).map((t) => t.tag);
}

/** If-None-Match on a read, by weak comparison (RFC 9110, 13.1.2): whether `etag` is among the tags. */
export function noneMatchHolds(list: EntityTagList, etag: string): boolean {
  return list !== '*' && !list.some((t) => t.tag === etag);
}
