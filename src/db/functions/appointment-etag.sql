-- The ETag of an appointment's version: its number, which counts over the appointment's whole life
-- (a re-creation after a delete goes on counting), and when it was recorded, in microseconds since
-- 1970, so that a tag never names two different versions, not even of an id removed by hand and
-- written anew. src/etags.ts makes the same text from an appointment as the API prints it.
CREATE OR REPLACE FUNCTION appointment_etag(p_version integer, p_recorded_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '"' || p_version || '-' || timeline_micros(p_recorded_at)::bigint || '"';
