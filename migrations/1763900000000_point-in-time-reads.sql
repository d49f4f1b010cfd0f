-- Up Migration

-- Point-in-time lists ask for the versions current at an instant, in start order, a page at a time:
-- a two-dimensional question (system time x start) that no btree answers without reading every
-- version current at that instant. Each version is drawn as a horizontal segment in a plane: x is its
-- period, y its start. An R-tree (GiST over box) finds the segments crossed by the vertical line
-- x = at, and its nearest-neighbour order from a point low on that line yields them by start.

-- Microseconds since 1970 as float8: exact for system times (whole numbers below 2^53, up to the year
-- 2255); appointment starts, which carry milliseconds, stay distinct and in order for any year.
-- Floating-point arithmetic, rounded, rather than numeric: it runs for every row a plan sorts.
CREATE FUNCTION timeline_micros(t timestamptz) RETURNS float8
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN round(date_part('epoch', t - timestamptz '1970-01-01 00:00:00+00') * 1000000);

-- Boxes are closed; ending the segment half a microsecond early makes it the half-open period
-- [valid_from, valid_to) on a timeline of whole microseconds, so that no exact recheck is needed.
CREATE FUNCTION timeline_box(valid_from timestamptz, valid_to timestamptz, start_at timestamptz) RETURNS box
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN box(point(timeline_micros(valid_from), timeline_micros(start_at)),
             point(timeline_micros(valid_to) - 0.5, timeline_micros(start_at)));

CREATE INDEX appointment_versions_timeline ON appointment_versions
  USING gist (org_id, timeline_box(valid_from, valid_to, start_at));

-- The current rows already recorded at `at`: few when `at` lies before most of them were written.
CREATE INDEX appointments_org_recorded ON appointments (org_id, recorded_at) WHERE deleted_at IS NULL;

-- to_char() is STABLE; a function declared IMMUTABLE around it cannot be inlined, and called on its
-- own for every time of every row it made a page of 100 appointments cost twice as much to print.
ALTER FUNCTION api_time(timestamptz) STABLE;
ALTER FUNCTION api_system_time(timestamptz) STABLE;

-- Down Migration

ALTER FUNCTION api_system_time(timestamptz) IMMUTABLE;
ALTER FUNCTION api_time(timestamptz) IMMUTABLE;
DROP INDEX appointments_org_recorded;
DROP INDEX appointment_versions_timeline;
DROP FUNCTION timeline_box(timestamptz, timestamptz, timestamptz);
DROP FUNCTION timeline_micros(timestamptz);
