-- Up Migration

-- From here on, every function that no index depends on lives in src/db/functions/, one file each,
-- written as CREATE OR REPLACE and applied by the migration runner after the migrations, in one
-- transaction (src/db/migrations.ts): its history reads as `git log -p` of its file. Migrations keep
-- the tables, constraints, indexes, triggers and the immutable functions of indexes, and the DROP of
-- a function whose signature changes.
--
-- Each application of the files is logged here, with the sha256 over their names and contents in name
-- order; /ready compares the last one with the hash of the files the service was built with.
CREATE TABLE database_functions (
  id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hash       text        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  files      text[]      NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- /ready reads it on the service's own role; a hash of files in the repository is no secret, and an
-- upgrade needs no new grant from the administrator.
GRANT SELECT ON database_functions TO PUBLIC;

-- write_appointment is merged into upsert_appointment, which now takes the lock flag and answers an
-- overlap it sees with the appointment in the way: a new signature and a new meaning, so both old
-- ones go, and the file defines the new one.
DROP FUNCTION write_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz, boolean);
DROP FUNCTION upsert_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz);
-- Nothing calls them: the driver prints the times (src/db/client.ts).
DROP FUNCTION api_system_time(timestamptz);
DROP FUNCTION api_time(timestamptz);

-- Down Migration

-- The release before this migration kept its functions in migrations and has no files to apply, so
-- this Down puts back the functions as the earlier migrations left them (the last Down that carries
-- function bodies). The functions of the files go first, as their result types depend on the tables
-- that the earlier Downs drop (IF EXISTS: a later Down may have dropped a signature already).
-- From here on, the Down of a signature change drops the new signature only: the earlier release's
-- runner applies its own files when it starts, as their hash is not the one recorded.
DROP FUNCTION IF EXISTS upsert_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz, boolean);
DROP FUNCTION IF EXISTS overlapping_appointment(text, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS last_appointment_starting_before(text, timestamptz, timestamptz, text);
DROP TABLE database_functions;

-- as migrations 1763800000000 and 1763900000000 left them
CREATE FUNCTION api_time(t timestamptz) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

CREATE FUNCTION api_system_time(t timestamptz) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- as migration 1763800000000 left it (the file may have changed it since)
CREATE OR REPLACE FUNCTION appointments_record_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.deleted_at IS NULL THEN
      INSERT INTO appointment_versions
      VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
              OLD.recorded_at, greatest(clock_timestamp(), OLD.recorded_at + interval '1 microsecond'), true);
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.deleted_at IS NOT NULL OR (NEW.version = OLD.version AND NEW.deleted_at IS NULL) THEN
    RETURN NEW;
  END IF;
  INSERT INTO appointment_versions
  VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
          OLD.recorded_at, coalesce(NEW.deleted_at, NEW.recorded_at), NEW.deleted_at IS NOT NULL);
  RETURN NEW;
END
$$;

-- as migration 1764000000000 left it
CREATE FUNCTION upsert_appointment(
  p_org_id text, p_id text, p_start timestamptz, p_end timestamptz, p_created timestamptz, p_updated timestamptz)
RETURNS TABLE (status text, appointment appointments)
LANGUAGE plpgsql AS $$
DECLARE
  r appointments;
  settled timestamptz;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id)
     AND (SELECT a.end_at > p_start FROM appointments a
          WHERE a.org_id = p_org_id AND a.deleted_at IS NULL AND a.start_at < p_end
          ORDER BY a.start_at DESC LIMIT 1) THEN
    RAISE EXCEPTION USING ERRCODE = 'exclusion_violation',
      MESSAGE = 'the appointment overlaps another appointment of the organization';
  END IF;

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
    SELECT * INTO r FROM appointments a WHERE a.org_id = p_org_id AND a.id = p_id;
    status := CASE
      WHEN r.deleted_at IS NULL
       AND (r.updated_at, r.start_at, r.end_at, r.created_at) = (p_updated, p_start, p_end, p_created)
      THEN 'unchanged' ELSE 'stale' END;
    appointment := r;
    RETURN NEXT;
    RETURN;
  END IF;

  SELECT max(v.valid_to) INTO settled
  FROM appointment_versions v
  WHERE v.org_id = p_org_id
    AND v.valid_to > r.recorded_at
    AND tstzrange(v.start_at, v.end_at, '[)') && tstzrange(p_start, p_end, '[)');
  IF settled IS NOT NULL THEN
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

-- as migration 1764100000000 left it
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
