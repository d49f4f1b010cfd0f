-- Moves the version an UPDATE or DELETE ends into appointment_versions, with its system-time period
-- [recorded_at, end) and its change-feed positions. The trigger that calls it, appointments_record_version,
-- is in the migrations.
CREATE OR REPLACE FUNCTION appointments_record_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- not used by the service (it keeps tombstones), but a row removed by hand still leaves its history
    IF OLD.deleted_at IS NULL THEN
      INSERT INTO appointment_versions
        (org_id, id, version, start_at, end_at, created_at, updated_at, valid_from, valid_to, deleted,
         feed_xid, feed_seq, deleted_feed_xid, deleted_feed_seq)
      VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
              OLD.recorded_at, greatest(clock_timestamp(), OLD.recorded_at + interval '1 microsecond'), true,
              OLD.feed_xid, OLD.feed_seq, greatest(pg_current_xact_id(), OLD.feed_xid), nextval('change_feed_seq'));
    END IF;
    RETURN OLD;
  END IF;
  -- A re-creation after a delete (the deleted version is in history already), or a change of
  -- recorded_at alone, ends no version. The version keeps the position of its beginning; a delete's
  -- own position is the row's new one (appointments_feed_position has run before this trigger).
  IF OLD.deleted_at IS NOT NULL OR (NEW.version = OLD.version AND NEW.deleted_at IS NULL) THEN
    RETURN NEW;
  END IF;
  INSERT INTO appointment_versions
    (org_id, id, version, start_at, end_at, created_at, updated_at, valid_from, valid_to, deleted,
     feed_xid, feed_seq, deleted_feed_xid, deleted_feed_seq)
  VALUES (OLD.org_id, OLD.id, OLD.version, OLD.start_at, OLD.end_at, OLD.created_at, OLD.updated_at,
          OLD.recorded_at, coalesce(NEW.deleted_at, NEW.recorded_at), NEW.deleted_at IS NOT NULL,
          OLD.feed_xid, OLD.feed_seq,
          CASE WHEN NEW.deleted_at IS NOT NULL THEN NEW.feed_xid END,
          CASE WHEN NEW.deleted_at IS NOT NULL THEN NEW.feed_seq END);
  RETURN NEW;
END
$$;
