-- The ETag of an appointment's version: its number, which counts over the appointment's whole life
-- (a re-creation after a delete goes on counting), and when it was recorded, in microseconds since
-- 1970, so that a tag never names two different versions, not even of an id removed by hand and
-- written anew. src/etags.ts makes the same text from an appointment as the API prints it.
-- The microseconds in numeric, which is exact: timeline_micros() goes through float8, whose last digit
-- is off for instants after the year 2100 or so, where the tag would no longer be the one TS prints.
CREATE OR REPLACE FUNCTION appointment_etag(p_version integer, p_recorded_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '"' || p_version || '-'
  || (extract(epoch FROM p_recorded_at - timestamptz '1970-01-01 00:00:00+00') * 1000000)::bigint || '"';
