-- Up Migration

-- The exclusion constraint's GiST index keys org_id under the "C" collation, so that only the
-- constraint uses it. Its org_id key also matched every lookup by org (org_id = $1, whose collation is
-- the column's), and where PostgreSQL estimates an org at a row or two (a table not yet analyzed, or
-- many small orgs), reading the org through it and sorting cost the same as one step down
-- appointments_org_start. A plan made so is kept by each connection (plan_cache_mode, src/db/client.ts)
-- and read the whole org at each call once the org was large: the write's own check, the lists and
-- availability (test/plans-after-growth.test.ts, docs/performance.md "Plans made on small tables").
-- Equality of text under any deterministic collation is equality of its bytes, so the constraint
-- refuses exactly what it refused before.

ALTER TABLE appointments
  DROP CONSTRAINT appointments_no_overlap,
  ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
    org_id COLLATE "C" WITH =,
    tstzrange(start_at, end_at, '[)') WITH &&,
    id WITH <>
  ) WHERE (deleted_at IS NULL);

-- Down Migration

ALTER TABLE appointments
  DROP CONSTRAINT appointments_no_overlap,
  ADD CONSTRAINT appointments_no_overlap EXCLUDE USING gist (
    org_id WITH =,
    tstzrange(start_at, end_at, '[)') WITH &&,
    id WITH <>
  ) WHERE (deleted_at IS NULL);
