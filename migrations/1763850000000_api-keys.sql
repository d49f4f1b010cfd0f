-- Up Migration

-- API keys: `apk_<key_id>_<secret>`. Only the SHA-256 of the secret is kept; the secret is 256 random
-- bits, so a slow password hash would add nothing but latency to every request.
CREATE TABLE api_keys (
  key_id      text        PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9]{1,64}$'),
  org_id      text        NOT NULL CHECK (org_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
  secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
  label       text        CHECK (length(label) <= 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

CREATE INDEX api_keys_org_id ON api_keys (org_id);

-- Down Migration

DROP TABLE api_keys;
