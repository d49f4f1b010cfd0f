-- Up Migration

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Times as the API prints them: UTC, like JavaScript's toISOString(); system times with microseconds.
CREATE FUNCTION api_time(t timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

CREATE FUNCTION api_system_time(t timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- The current state of every appointment. A delete keeps the row as a tombstone (deleted_at set), so
-- that the deleted version's updated_at still decides whether a late write is stale, and version
-- numbers keep counting when the id is created again.
CREATE TABLE appointments (
  org_id      text        NOT NULL,
  id          text        NOT NULL,
  start_at    timestamptz NOT NULL,
  end_at      timestamptz NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  version     integer     NOT NULL CHECK (version >= 1),
  -- when the current version became current (system time)
  recorded_at timestamptz NOT NULL,
  deleted_at  timestamptz,
  PRIMARY KEY (org_id, id),
  -- an empty range would overlap nothing and slip past the exclusion constraint
  CONSTRAINT appointments_start_before_end CHECK (start_at < end_at),
  CONSTRAINT appointments_deleted_after_recorded CHECK (deleted_at > recorded_at),
  -- Half-open ranges: an appointment ending at 11:00 and one starting at 11:00 do not overlap.
  -- "id WITH <>": a row never conflicts with another version of itself, so two concurrent first
  -- creates of one id meet at the primary key (and one becomes an update) instead of here.
  CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
    org_id WITH =,
    tstzrange(start_at, end_at, '[)') WITH &&,
    id WITH <>
  ) WHERE (deleted_at IS NULL)
);

CREATE INDEX appointments_org_start ON appointments (org_id, start_at, id) WHERE deleted_at IS NULL;

-- Every earlier version, current during [valid_from, valid_to).
CREATE TABLE appointment_versions (
  org_id     text        NOT NULL,
  id         text        NOT NULL,
  version    integer     NOT NULL,
  start_at   timestamptz NOT NULL,
  end_at     timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  valid_from timestamptz NOT NULL,
  valid_to   timestamptz NOT NULL,
  -- the version ended by a delete
  deleted    boolean     NOT NULL,
  PRIMARY KEY (org_id, id, version),
  CONSTRAINT appointment_versions_period_not_empty CHECK (valid_from < valid_to),
  -- The periods of one appointment never overlap; the index also serves point-in-time reads.
  CONSTRAINT appointment_versions_periods_apart EXCLUDE USING gist (
    org_id WITH =,
    tstzrange(valid_from, valid_to, '[)') WITH &&,
    id WITH =
  )
);

-- Finds the versions that ended in the last moments (see upsert_appointment).
CREATE INDEX appointment_versions_org_valid_to ON appointment_versions (org_id, valid_to);

CREATE FUNCTION appointments_record_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- not used by the service (it keeps tombstones), but a row removed by hand still leaves its history
    IF OLD.deleted_at IS NULL THEN
      INSERT INTO appointment_versions
      VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
              OLD.recorded_at, greatest(clock_timestamp(), OLD.recorded_at + interval '1 microsecond'), true);
    END IF;
    RETURN OLD;
  END IF;
  -- A re-creation after a delete (the deleted version is in history already), or a change of
  -- recorded_at alone, ends no version.
  IF OLD.deleted_at IS NOT NULL OR (NEW.version = OLD.version AND NEW.deleted_at IS NULL) THEN
    RETURN NEW;
  END IF;
  INSERT INTO appointment_versions
  VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
          OLD.recorded_at, coalesce(NEW.deleted_at, NEW.recorded_at), NEW.deleted_at IS NOT NULL);
  RETURN NEW;
END
$$;

CREATE TRIGGER appointments_record_version
  AFTER UPDATE OR DELETE ON appointments
  FOR EACH ROW EXECUTE FUNCTION appointments_record_version();

-- Create-or-update by (org_id, id), last writer wins on updated_at, in one INSERT ... ON CONFLICT.
-- status: created (new id, or an id deleted with an older updated_at), updated, unchanged (the same
-- version again: nothing written), stale (the stored version wins: nothing written). An overlap raises
-- exclusion_violation (23P01), or deadlock_detected (40P01) when two overlapping writers wait on each other.
CREATE FUNCTION upsert_appointment(
  p_org_id text, p_id text, p_start timestamptz, p_end timestamptz, p_created timestamptz, p_updated timestamptz)
RETURNS TABLE (status text, appointment appointments)
LANGUAGE plpgsql AS $$
DECLARE
  r appointments;
  settled timestamptz;
BEGIN
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
  END
  RETURNING a.* INTO r;

  IF NOT FOUND THEN
    -- Nothing written: ON CONFLICT has locked the stored row, and this new query (a new snapshot, as
    -- this function is volatile) reads the version that won, even if it committed after we started.
    SELECT * INTO r FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id;
    status := CASE
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

-- Down Migration

DROP FUNCTION upsert_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz);
DROP TABLE appointments;
DROP FUNCTION appointments_record_version();
DROP TABLE appointment_versions;
DROP FUNCTION api_system_time(timestamptz);
DROP FUNCTION api_time(timestamptz);
