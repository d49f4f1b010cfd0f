-- Up Migration

-- The change feed (GET /api/changes) serves every change of an org in the order of its position: the
-- pair (feed_xid, feed_seq), given to a row by the trigger appointments_feed_position whenever a
-- version begins or is deleted. feed_xid is the writing transaction's id, or the position of the same
-- appointment's previous change when that is greater; feed_seq is a sequence value taken under the row
-- lock. The feed serves only positions whose feed_xid lies below the oldest transaction still running
-- (pg_snapshot_xmin): every change there has committed or rolled back, so nothing can later appear
-- behind a position a reader has passed. The reasons are in src/db/functions/appointments-feed-position.sql.

-- One row: the feed's identity, which a restore from a backup changes (restart_change_feed), and the
-- secret that signs its tokens when SYNC_TOKEN_SECRET is not set (generated here, once).
CREATE TABLE change_feed (
  singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  feed_id      uuid    NOT NULL DEFAULT gen_random_uuid(),
  token_secret bytea   NOT NULL
    DEFAULT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
);
INSERT INTO change_feed DEFAULT VALUES;

CREATE SEQUENCE change_feed_seq AS bigint;

-- appointments: the position of the row's last change (for a tombstone, its delete).
-- appointment_versions: the position of the change that began the version, and of its delete.
ALTER TABLE appointments ADD COLUMN feed_xid xid8, ADD COLUMN feed_seq bigint;
ALTER TABLE appointment_versions
  ADD COLUMN feed_xid xid8, ADD COLUMN feed_seq bigint,
  ADD COLUMN deleted_feed_xid xid8, ADD COLUMN deleted_feed_seq bigint;

-- The history written before the feed existed gets positions in the order it was recorded, all below
-- any transaction id (xid8 1 is never a transaction's).
CREATE TEMPORARY TABLE earlier_changes ON COMMIT DROP AS
  SELECT kind, org_id, id, version, row_number() OVER (ORDER BY at, version, kind) AS seq
  FROM (
    SELECT 'begin' AS kind, org_id, id, version, recorded_at AS at FROM appointments WHERE deleted_at IS NULL
    UNION ALL
    SELECT 'begin', org_id, id, version, valid_from FROM appointment_versions
    UNION ALL
    SELECT 'delete', org_id, id, version, valid_to FROM appointment_versions WHERE deleted
  ) AS changes;
UPDATE appointment_versions v SET feed_xid = '1', feed_seq = c.seq
FROM earlier_changes c
WHERE c.kind = 'begin' AND (c.org_id, c.id, c.version) = (v.org_id, v.id, v.version);
UPDATE appointment_versions v SET deleted_feed_xid = '1', deleted_feed_seq = c.seq
FROM earlier_changes c
WHERE c.kind = 'delete' AND (c.org_id, c.id, c.version) = (v.org_id, v.id, v.version);
-- a tombstone's last change is the delete of its version, a live row's the beginning of its version
UPDATE appointments a SET feed_xid = '1', feed_seq = c.seq
FROM earlier_changes c
WHERE c.kind = CASE WHEN a.deleted_at IS NULL THEN 'begin' ELSE 'delete' END
  AND (c.org_id, c.id, c.version) = (a.org_id, a.id, a.version);
SELECT setval('change_feed_seq', greatest((SELECT count(*) FROM earlier_changes), 1));

ALTER TABLE appointments ALTER COLUMN feed_xid SET NOT NULL, ALTER COLUMN feed_seq SET NOT NULL;
-- The defaults serve versions written by hand (a seed, a repair): a position after everything before.
ALTER TABLE appointment_versions
  ALTER COLUMN feed_xid SET NOT NULL, ALTER COLUMN feed_seq SET NOT NULL,
  ALTER COLUMN feed_xid SET DEFAULT pg_current_xact_id(), ALTER COLUMN feed_seq SET DEFAULT nextval('change_feed_seq'),
  ADD CONSTRAINT appointment_versions_deleted_has_position
    CHECK (deleted = (deleted_feed_xid IS NOT NULL) AND deleted = (deleted_feed_seq IS NOT NULL));

-- One range scan each for a page of the feed: the beginnings of current versions, of earlier versions,
-- and the deletes. A tombstone is left out of the first: its version's beginning is in the second.
CREATE INDEX appointments_feed ON appointments (org_id, feed_xid, feed_seq) WHERE deleted_at IS NULL;
CREATE INDEX appointment_versions_feed ON appointment_versions (org_id, feed_xid, feed_seq);
CREATE INDEX appointment_versions_deleted_feed ON appointment_versions (org_id, deleted_feed_xid, deleted_feed_seq)
  WHERE deleted;

-- The trigger functions as src/db/functions/ has them at this migration: a writer of an instance still
-- running the earlier release must find them between this migration and the application of the files.
CREATE FUNCTION appointments_feed_position() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.feed_xid := pg_current_xact_id();
  ELSIF NEW.version <> OLD.version OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
    NEW.feed_xid := greatest(pg_current_xact_id(), OLD.feed_xid);
  ELSE
    RETURN NEW;
  END IF;
  NEW.feed_seq := nextval('change_feed_seq');
  RETURN NEW;
END
$$;

CREATE TRIGGER appointments_feed_position
  BEFORE INSERT OR UPDATE ON appointments
  FOR EACH ROW EXECUTE FUNCTION appointments_feed_position();

CREATE OR REPLACE FUNCTION appointments_record_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
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

-- upsert_appointment takes preconditions now (If-Match, If-None-Match): a new signature, which the file
-- defines (IF EXISTS: a fresh database gets its functions from the files only after the migrations)
DROP FUNCTION IF EXISTS upsert_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz, boolean);

-- Down Migration

DROP FUNCTION IF EXISTS upsert_appointment_batch(jsonb, boolean, boolean);
DROP FUNCTION IF EXISTS lock_org_writes(text, boolean);
DROP FUNCTION IF EXISTS
  upsert_appointment(text, text, timestamptz, timestamptz, timestamptz, timestamptz, boolean, text[], boolean);
DROP FUNCTION IF EXISTS appointment_etag(integer, timestamptz);

-- The earlier release applies its own files when it starts; appointments_record_version is put back
-- here already, as the columns it fills go.
DROP TRIGGER appointments_feed_position ON appointments;
DROP FUNCTION appointments_feed_position();
DROP FUNCTION IF EXISTS restart_change_feed();
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
ALTER TABLE appointment_versions
  DROP COLUMN feed_xid, DROP COLUMN feed_seq, DROP COLUMN deleted_feed_xid, DROP COLUMN deleted_feed_seq;
ALTER TABLE appointments DROP COLUMN feed_xid, DROP COLUMN feed_seq;
DROP SEQUENCE change_feed_seq;
DROP TABLE change_feed;
