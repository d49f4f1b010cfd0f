-- The current appointment of the org in the way of the range [p_start, p_end), other than p_except_id
-- (the one being written), the first by start: the one a refused write names in conflictsWith. It is
-- the last one starting before p_start if that one runs past p_start (see
-- last_appointment_starting_before), or else the first that starts inside the range: two steps into
-- the start index, where a filter on the range would read every appointment of the org before it.
-- (Files apply in name order, and a LANGUAGE sql body is checked when it is created: this file sorts
-- after the function it calls.)
CREATE OR REPLACE FUNCTION overlapping_appointment(
  p_org_id text, p_start timestamptz, p_end timestamptz, p_except_id text)
RETURNS SETOF appointments
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM (
    (SELECT * FROM last_appointment_starting_before(p_org_id, p_start, p_except_id => p_except_id))
    UNION ALL
    (SELECT * FROM appointments a
     WHERE a.org_id = p_org_id AND a.deleted_at IS NULL AND a.id <> p_except_id
       AND a.start_at >= p_start AND a.start_at < p_end
     ORDER BY a.start_at
     LIMIT 1)
  ) AS neighbours
  WHERE neighbours.end_at > p_start
  ORDER BY neighbours.start_at
  LIMIT 1
$$;
