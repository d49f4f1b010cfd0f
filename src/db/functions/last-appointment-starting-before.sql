-- The rule that lets every search by time take one step down the start index: the current
-- appointments of an org never overlap (appointments_no_overlap), so of those that start before a
-- point only the last can reach past it; each earlier one ends by the time the next begins. A lower
-- bound on start_at follows (nothing that starts before this one need be read), and a write knows
-- whether a committed appointment holds part of its range from a single row, whatever the size of
-- the org.
--
-- Any subset of the current rows keeps the rule: p_recorded_by keeps those recorded by that instant
-- (the current rows of a snapshot), p_except_id leaves one appointment out (the earlier version of
-- the one being written).
--
-- LANGUAGE sql, STABLE, not STRICT, one SELECT: PostgreSQL inlines it into the query that calls it,
-- which is then planned as if the SELECT were written there, its NULL defaults folded away
-- (test/query-plans.test.ts checks that no call is left as a function scan).
CREATE OR REPLACE FUNCTION last_appointment_starting_before(
  p_org_id text, p_point timestamptz, p_recorded_by timestamptz DEFAULT NULL, p_except_id text DEFAULT NULL)
RETURNS SETOF appointments
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM appointments a
  WHERE a.org_id = p_org_id AND a.deleted_at IS NULL AND a.start_at < p_point
    AND (p_recorded_by IS NULL OR a.recorded_at <= p_recorded_by)
    AND (p_except_id IS NULL OR a.id <> p_except_id)
  ORDER BY a.start_at DESC
  LIMIT 1
$$;
