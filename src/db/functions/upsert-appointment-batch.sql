-- A batch of writes in one statement and one transaction: each item through upsert_appointment, in
-- item order, so that every rule of a single write holds per item, and an item sees the items before
-- it (two overlapping new items: the first wins). p_items is a JSON array of
-- {"i": index, "orgId", "id", "start", "end", "createdAt", "updatedAt", "ifMatch": [etag, ...] | null}
-- with canonical times; the answer is one row per item, in order: status and appointment (its columns,
-- all NULL for none) as upsert_appointment gives them ('overlap': the appointment in the way, or none
-- when the constraint refused the item and nothing committed is in the way any more). Columns, not
-- the row type appointments, so that the signature does not depend on the table (a Down migration
-- drops it).
--
-- Org locks: every org's lock is taken up front in one order (sorted), shared, or exclusive with
-- p_alone, so that batches and single writes never wait on each other's org locks in a circle;
-- upsert_appointment then takes the lock it already holds. A deadlock on rows (two batches writing
-- the same ids in opposite orders) aborts the whole statement, so nothing of it was written, and the
-- caller sends it again with p_alone, where no other writer of its orgs is in flight.
--
-- Not atomic: one item's refusal undoes nothing else. An overlap with a writer that had not committed
-- raises exclusion_violation from the constraint, which only a subtransaction can survive; one per item
-- costs, and past 64 in one transaction every snapshot of the cluster gets slower to check. So the
-- items first run without them; only when the constraint refuses one is that work undone and the batch
-- run again, item by item in a subtransaction of its own.
--
-- p_atomic: all or nothing. The rows the batch writes are locked first, in (org_id, id) order, so that
-- two atomic batches on the same ids in opposite orders wait for each other instead of deadlocking;
-- the first refused item (overlap or precondition failed) ends the batch: everything is undone and the
-- answer is that item's row alone.
CREATE OR REPLACE FUNCTION upsert_appointment_batch(p_items jsonb, p_atomic boolean, p_alone boolean)
RETURNS TABLE (item integer, status text, id text, org_id text, start_at timestamptz, end_at timestamptz,
               created_at timestamptz, updated_at timestamptz, version integer, recorded_at timestamptz,
               deleted_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  org text;
  it record;
  res record;
  st text;
  ap appointments;
  items integer[];
  statuses text[];
  written appointments[];
  per_item boolean := false;
  n integer;
BEGIN
  FOR org IN
    SELECT DISTINCT x->>'orgId' COLLATE "C" AS o FROM jsonb_array_elements(p_items) x ORDER BY o
  LOOP
    PERFORM lock_org_writes(org, p_alone);
  END LOOP;

  IF p_atomic THEN
    PERFORM 1 FROM appointments a
    WHERE (a.org_id, a.id) IN (SELECT x->>'orgId', x->>'id' FROM jsonb_array_elements(p_items) x)
    ORDER BY a.org_id, a.id
    FOR UPDATE;
  END IF;

  <<attempt>>
  LOOP
    items := '{}';
    statuses := '{}';
    written := '{}';
    BEGIN
      FOR it IN
        SELECT * FROM jsonb_to_recordset(p_items) AS x(
          i integer, "orgId" text, id text, start timestamptz, "end" timestamptz,
          "createdAt" timestamptz, "updatedAt" timestamptz, "ifMatch" text[])
        ORDER BY x.i
      LOOP
        IF per_item THEN
          BEGIN
            SELECT u.status, u.appointment INTO res
            FROM upsert_appointment(it."orgId", it.id, it.start, it."end", it."createdAt", it."updatedAt",
                                    p_alone, it."ifMatch") AS u;
            st := res.status;
            ap := res.appointment;
          EXCEPTION WHEN exclusion_violation THEN
            -- only this item is undone; a new snapshot sees what is committed in the way now
            st := 'overlap';
            ap := NULL;
            SELECT * INTO ap FROM overlapping_appointment(it."orgId", it.start, it."end", it.id);
          END;
        ELSE
          SELECT u.status, u.appointment INTO res
          FROM upsert_appointment(it."orgId", it.id, it.start, it."end", it."createdAt", it."updatedAt",
                                  p_alone, it."ifMatch") AS u;
          st := res.status;
          ap := res.appointment;
        END IF;
        items := array_append(items, it.i);
        statuses := array_append(statuses, st);
        written := array_append(written, ap);
        IF p_atomic AND st IN ('overlap', 'precondition failed') THEN
          -- undoes the items before it; the variables keep the refusal
          RAISE EXCEPTION USING ERRCODE = 'P0B01';
        END IF;
      END LOOP;
      EXIT attempt;
    EXCEPTION
      WHEN exclusion_violation THEN
        IF p_atomic THEN
          ap := NULL;
          SELECT * INTO ap FROM overlapping_appointment(it."orgId", it.start, it."end", it.id);
          items := ARRAY[it.i];
          statuses := ARRAY['overlap'];
          written := ARRAY[ap];
          EXIT attempt;
        END IF;
        per_item := true;
      WHEN SQLSTATE 'P0B01' THEN
        n := cardinality(items);
        items := items[n:n];
        statuses := statuses[n:n];
        written := written[n:n];
        EXIT attempt;
    END;
  END LOOP;

  FOR n IN 1 .. cardinality(items) LOOP
    item := items[n];
    status := statuses[n];
    ap := written[n];
    id := ap.id;
    org_id := ap.org_id;
    start_at := ap.start_at;
    end_at := ap.end_at;
    created_at := ap.created_at;
    updated_at := ap.updated_at;
    version := ap.version;
    recorded_at := ap.recorded_at;
    deleted_at := ap.deleted_at;
    RETURN NEXT;
  END LOOP;
END
$$;
