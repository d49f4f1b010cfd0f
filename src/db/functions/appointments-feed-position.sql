-- Gives a row its change-feed position (see the migration change-feed) whenever a version begins (an
-- insert, a new version number) or is deleted; a change of recorded_at alone, or of the position
-- itself (restart_change_feed), keeps it.
--
-- The feed serves a position only once its feed_xid is below pg_snapshot_xmin: then no transaction
-- that could still commit a smaller position is running. A sequence or a clock alone would be taken
-- before the commit, and a reader could pass a number whose transaction commits later. The xid alone
-- does not order one appointment's versions: a transaction takes its xid at its first write, so one
-- that wrote other rows first (an atomic batch), or an insert that waited on a later transaction's
-- insert of the same id and turned into an update, writes version n + 1 with a smaller xid than
-- version n. Hence the greater of the xid and the previous position, and a sequence value taken now,
-- with the row locked, after the previous change's.
--
-- A transaction that writes many rows (a batch) must also keep its own order: once one of its rows took
-- a greater xid from its previous position, a later row of it with an older position would take the
-- transaction's smaller xid and come first. So no change of a transaction has a smaller xid than its
-- change before (appointments.feed_xid_floor, a setting local to the transaction).
CREATE OR REPLACE FUNCTION appointments_feed_position() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  floor xid8 := nullif(current_setting('appointments.feed_xid_floor', true), '')::xid8;
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.feed_xid := greatest(pg_current_xact_id(), floor);
  ELSIF NEW.version <> OLD.version OR NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
    NEW.feed_xid := greatest(pg_current_xact_id(), OLD.feed_xid, floor);
  ELSE
    RETURN NEW;
  END IF;
  NEW.feed_seq := nextval('change_feed_seq');
  IF floor IS DISTINCT FROM NEW.feed_xid THEN
    PERFORM set_config('appointments.feed_xid_floor', NEW.feed_xid::text, true);
  END IF;
  RETURN NEW;
END
$$;
