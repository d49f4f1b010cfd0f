-- The service's write: create-or-update by (org_id, id), last writer wins on updated_at, in one
-- INSERT ... ON CONFLICT, inside the org's write lock.
-- status: created (new id, or an id deleted with an older updated_at), updated, unchanged (the same
-- version again: nothing written), stale (the stored version wins: nothing written), with the
-- appointment as stored; overlap (refused, nothing written), with the appointment in the way; or
-- precondition failed (p_if_match: ETags as appointment_etag prints them, or '*' for any live version;
-- p_if_none_match: create only), with the live appointment or NULL.
-- An overlap the check below cannot see (a writer that has not committed) raises exclusion_violation
-- (23P01) from the constraint, or deadlock_detected (40P01) when two overlapping writers wait on each
-- other.
--
-- p_alone: overlapping inserts can deadlock inside the exclusion check. A write that lost a deadlock
-- and is sent again at once can meet the same crowd and lose again, many times in a row on a loaded
-- machine. So every write takes its org's lock shared, which waits for nothing but a write sent alone;
-- a write sent again after a deadlock (p_alone) takes it exclusive: it waits until the org's writes in
-- flight have ended, runs while new ones wait behind it, and so cannot meet another writer of the org
-- inside the check. The exclusion constraint still decides every overlap; the lock only makes sure
-- that a write which lost a deadlock gets an answer. Locks of one key space never meet the single-key
-- locks of the migration runner; two orgs whose names hash alike only share a turn now and then.
CREATE OR REPLACE FUNCTION upsert_appointment(
  p_org_id text, p_id text, p_start timestamptz, p_end timestamptz, p_created timestamptz, p_updated timestamptz,
  p_alone boolean, p_if_match text[] DEFAULT NULL, p_if_none_match boolean DEFAULT false)
RETURNS TABLE (status text, appointment appointments)
LANGUAGE plpgsql AS $$
DECLARE
  r appointments;
  settled timestamptz;
  live boolean;
BEGIN
  PERFORM lock_org_writes(p_org_id, p_alone);

  -- Preconditions are checked on the stored row locked, so that no other write comes between the
  -- check and this one: of many writers sending the same If-Match, one writes, the others fail.
  -- If-Match never creates; If-None-Match: * only creates (over a tombstone too, by the usual rule).
  IF p_if_match IS NOT NULL OR p_if_none_match THEN
    SELECT * INTO r FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id FOR UPDATE;
    live := FOUND AND r.deleted_at IS NULL;
    IF (p_if_none_match AND live)
       OR (p_if_match IS NOT NULL
           AND NOT (live AND ('*' = ANY (p_if_match) OR appointment_etag(r.version, r.recorded_at) = ANY (p_if_match))))
    THEN
      status := 'precondition failed';
      appointment := CASE WHEN live THEN r END;
      RETURN NEXT;
      RETURN;
    END IF;
  END IF;

  -- A new id in a range that a committed appointment of the org already holds is refused before the
  -- INSERT. A refused INSERT leaves a dead row and dead index entries behind, and every later
  -- exclusion check in that range visits them until a vacuum: under a crowd of writers on one window
  -- each check became slower than the last, and writers queued for seconds. The exclusion constraint
  -- still decides every race this check does not see. One step down the start index tells (see
  -- last_appointment_starting_before); only a refusal looks further, for the first in the way by
  -- start, which the answer names, so that the client needs no second query.
  IF NOT EXISTS (SELECT 1 FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id)
     AND (SELECT a.end_at > p_start FROM last_appointment_starting_before(p_org_id, p_end) AS a) THEN
    SELECT * INTO r FROM overlapping_appointment(p_org_id, p_start, p_end, p_id);
    IF FOUND THEN
      status := 'overlap';
      appointment := r;
      RETURN NEXT;
      RETURN;
    END IF;
    -- moved or deleted by a commit in between (this query has a new snapshot): the constraint decides
  END IF;

  -- Ties on updated_at go to the greater (start, end, created_at), so that the final state never
  -- depends on arrival order. A deleted appointment comes back only with a newer updated_at: a late
  -- retry of the deleted version must not resurrect it.
  -- clock_timestamp(), not now(): now() is when the transaction started, which can be before the
  -- moment this statement got the row lock, and so before the end of the version it replaces.
  INSERT INTO appointments AS a (org_id, id, start_at, end_at, created_at, updated_at, version, recorded_at)
  VALUES (p_org_id, p_id, p_start, p_end, p_created, p_updated, 1, clock_timestamp())
  ON CONFLICT ON CONSTRAINT appointments_pkey DO UPDATE SET
    start_at = excluded.start_at,
    end_at = excluded.end_at,
    created_at = excluded.created_at,
    updated_at = excluded.updated_at,
    version = a.version + 1,
    recorded_at = greatest(clock_timestamp(), coalesce(a.deleted_at, a.recorded_at + interval '1 microsecond')),
    deleted_at = NULL
  WHERE CASE
    WHEN a.deleted_at IS NOT NULL THEN excluded.updated_at > a.updated_at
    ELSE (excluded.updated_at, excluded.start_at, excluded.end_at, excluded.created_at)
       > (a.updated_at, a.start_at, a.end_at, a.created_at)
       -- create only: a live appointment inserted since the check above is not updated
       AND NOT p_if_none_match
  END
  RETURNING a.* INTO r;

  IF NOT FOUND THEN
    -- Nothing written: ON CONFLICT has locked the stored row, and this new query (a new snapshot, as
    -- this function is volatile) reads the version that won, even if it committed after we started.
    SELECT * INTO r FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id;
    status := CASE
      WHEN p_if_none_match AND r.deleted_at IS NULL THEN 'precondition failed'
      WHEN r.deleted_at IS NULL
       AND (r.updated_at, r.start_at, r.end_at, r.created_at) = (p_updated, p_start, p_end, p_created)
      THEN 'unchanged' ELSE 'stale' END;
    appointment := r;
    RETURN NEXT;
    RETURN;
  END IF;

  -- recorded_at was taken before the exclusion check, which may have waited for a transaction that
  -- moved another appointment out of this range and ended that version later than our recorded_at.
  -- A read at an instant in between would show both. Now that the check has passed (and the
  -- transactions it waited for have committed, visible to this new snapshot), start this version
  -- no earlier than any overlapping version of the org ended.
  SELECT max(v.valid_to) INTO settled
  FROM appointment_versions v
  WHERE v.org_id = p_org_id
    AND v.valid_to > r.recorded_at
    AND tstzrange(v.start_at, v.end_at, '[)') && tstzrange(p_start, p_end, '[)');
  IF settled IS NOT NULL THEN
    -- the version this one replaced (if it was not deleted) ends when this one begins
    UPDATE appointment_versions v SET valid_to = settled
    WHERE v.org_id = p_org_id AND v.id = p_id AND v.version = r.version - 1
      AND v.valid_to = r.recorded_at AND NOT v.deleted;
    UPDATE appointments a SET recorded_at = settled WHERE a.org_id = p_org_id AND a.id = p_id;
    r.recorded_at := settled;
  END IF;

  status := CASE
    WHEN r.version = 1 OR EXISTS (
      SELECT 1 FROM appointment_versions v
      WHERE v.org_id = p_org_id AND v.id = p_id AND v.version = r.version - 1 AND v.deleted)
    THEN 'created' ELSE 'updated' END;
  appointment := r;
  RETURN NEXT;
END
$$;
