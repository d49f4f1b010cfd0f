-- Moves the version an UPDATE or DELETE ends into appointment_versions, with its system-time period
-- [recorded_at, end). The trigger that calls it, appointments_record_version, is in the migrations.
CREATE OR REPLACE FUNCTION appointments_record_version() RETURNS trigger
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
