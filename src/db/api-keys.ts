import type { Sql } from 'postgres';

// Every SQL statement about API keys. Times come out as canonical text with microseconds (see client.ts).

export interface ApiKeyRecord {
  keyId: string;
  orgId: string;
  label: string | null;
  createdAt: string;
  revokedAt: string | null;
}

export async function insertApiKey(
  sql: Sql,
  key: { keyId: string; orgId: string; secretHash: Buffer; label?: string },
): Promise<ApiKeyRecord> {
  const [row] = await sql<ApiKeyRecord[]>`
    INSERT INTO api_keys (key_id, org_id, secret_hash, label)
    VALUES (${key.keyId}, ${key.orgId}, ${key.secretHash}, ${key.label ?? null})
    RETURNING key_id AS "keyId", org_id AS "orgId", label, created_at AS "createdAt", revoked_at AS "revokedAt"`;
  return row!;
}

/** The key's org and hash when it exists and is not revoked: one primary-key lookup per request. */
export async function findActiveApiKey(
  sql: Sql,
  keyId: string,
): Promise<{ orgId: string; secretHash: Buffer } | undefined> {
  const [row] = await sql<{ orgId: string; secretHash: Buffer }[]>`
    SELECT org_id AS "orgId", secret_hash AS "secretHash" FROM api_keys WHERE key_id = ${keyId} AND revoked_at IS NULL`;
  return row;
}

/** Every key (never a secret), newest first; of one org when given. */
export function listApiKeys(sql: Sql, orgId?: string): Promise<ApiKeyRecord[]> {
  return sql<ApiKeyRecord[]>`
    SELECT key_id AS "keyId", org_id AS "orgId", label, created_at AS "createdAt", revoked_at AS "revokedAt"
    FROM api_keys
    WHERE ${orgId === undefined ? sql`true` : sql`org_id = ${orgId}`}
    ORDER BY created_at DESC, key_id`;
}

/** Revokes at once (the next request with the key is refused); false when there is no such active key. */
export async function revokeApiKey(sql: Sql, keyId: string): Promise<boolean> {
  const rows = await sql`UPDATE api_keys SET revoked_at = now() WHERE key_id = ${keyId} AND revoked_at IS NULL`;
  return rows.count === 1;
}
