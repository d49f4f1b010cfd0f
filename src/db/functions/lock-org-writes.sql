-- The org's write lock, taken by every write of the service before it touches a row (see
-- upsert_appointment): shared among writes, exclusive for a write sent alone after it lost a deadlock.
-- Single writes and batches lock in one key space, so that they wait for each other as they should.
CREATE OR REPLACE FUNCTION lock_org_writes(p_org_id text, p_alone boolean) RETURNS void
LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN p_alone
    THEN pg_advisory_xact_lock(hashtext('upsert_appointment'), hashtext(p_org_id))
    ELSE pg_advisory_xact_lock_shared(hashtext('upsert_appointment'), hashtext(p_org_id))
  END
$$;
