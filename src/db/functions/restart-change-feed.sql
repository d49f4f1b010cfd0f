-- Run once on a database restored from a backup (docs/operations.md): the restored feed is not the one
-- the clients followed, so it gets a new feed id, and every token issued before is answered 410 (the
-- client syncs again from scratch). After a logical restore (pg_dump) the transaction ids start again
-- lower than the positions the rows carry, so every position is moved below them; the sequence keeps
-- the order of each appointment's changes and of changes one after another.
-- Webhook endpoints resume from the end of the restored feed (the restored messages are still
-- attempted): their positions and creating snapshots hold the old transaction ids, which would skip
-- every change made from then on.
CREATE OR REPLACE FUNCTION restart_change_feed() RETURNS uuid
LANGUAGE sql AS $$
  UPDATE appointments SET feed_xid = '1';
  UPDATE appointment_versions SET feed_xid = '1', deleted_feed_xid = CASE WHEN deleted THEN '1'::xid8 END;
  UPDATE webhook_endpoints SET feed_xid = '1', feed_seq = (SELECT last_value FROM change_feed_seq),
         created_snapshot = '1:1:';
  UPDATE change_feed SET feed_id = gen_random_uuid() RETURNING feed_id;
$$;
