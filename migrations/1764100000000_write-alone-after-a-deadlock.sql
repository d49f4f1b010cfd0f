-- Up Migration

-- The service's write: upsert_appointment, inside the org's write lock.
--
-- Overlapping inserts can deadlock inside the exclusion check. A write that lost a deadlock and is
-- sent again at once can meet the same crowd and lose again: thirty creates of one window on a
-- loaded machine saw 28 of them lose five times in a row before any had committed. So every write
-- takes its org's lock shared, which waits for nothing but a write sent alone; a write sent again
-- after a deadlock (p_alone) takes it exclusive: it waits until the org's writes in flight have ended,
-- runs while new ones wait behind it, and so cannot meet another writer of the org inside the check.
-- The exclusion constraint still decides every overlap; the lock only makes sure that a write which
-- lost a deadlock gets an answer. Locks of one key space never meet the single-key locks of the
-- migration runner; two orgs whose names hash alike only share a turn now and then.
CREATE FUNCTION write_appointment(
  p_org_id text, p_id text, p_start timestamptz, p_end timestamptz, p_created timestamptz, p_updated timestamptz,
  p_alone boolean)
RETURNS TABLE (status text, appointment appointments)
LANGUAGE plpgsql AS $$
BEGIN
  IF p_alone THEN
    PERFORM pg_advisory_xact_lock(hashtext('write_appointment'), hashtext(p_org_id));
  ELSE
    PERFORM pg_advisory_xact_lock_shared(hashtext('write_appointment'), hashtext(p_org_id));
  END IF;
  RETURN QUERY SELECT * FROM upsert_appointment(p_org_id, p_id, p_start, p_end, p_created, p_updated);
END
$$;

-- Down Migration

DROP FUNCTION write_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz, boolean);
