-- Up Migration

-- Webhooks (issue 14): each endpoint follows its org's change feed from a position of its own, the way
-- a sync client follows GET /api/changes with a token. A dispatcher turns the changes past that
-- position (below the feed's horizon) into one webhook_messages row each and moves the position on, in
-- one transaction: so the write path stores nothing for webhooks, and no change is skipped or made
-- twice. Workers claim due messages (FOR UPDATE SKIP LOCKED, with a lease), attempt them and log each
-- attempt in webhook_attempts.
--
-- Lock order, on every path: the endpoint row, then its messages. Deleting an endpoint cascades to
-- its messages and attempts in that order too.

CREATE TABLE webhook_endpoints (
  id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id           text        NOT NULL,
  url              text        NOT NULL CHECK (length(url) <= 2048),
  description      text        NOT NULL DEFAULT '',
  state            text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
  -- 'gone' (the receiver answered 410) or 'failing' (nothing succeeded for WEBHOOK_DISABLE_AFTER)
  disabled_reason  text        CHECK (disabled_reason IN ('gone', 'failing')),
  disabled_at      timestamptz,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- 'plain:whsec_...' or 'aes-256-gcm:<iv>.<tag>.<ciphertext>' (base64), see src/webhook-secrets.ts
  secret           text        NOT NULL,
  -- during a rotation, the secret before the current one and until when it still signs
  previous_secret  text,
  previous_secret_until timestamptz,
  -- the feed position up to which this endpoint's messages are made; it starts at the horizon of
  -- the creating transaction's snapshot, and the changes that snapshot already saw are skipped
  feed_xid         xid8        NOT NULL,
  feed_seq         bigint      NOT NULL DEFAULT 0,
  created_snapshot pg_snapshot NOT NULL,
  -- the first failed attempt since the last success; null while all is well
  failing_since    timestamptz,
  -- a 429 or 503 with Retry-After: no attempt to this endpoint starts before it
  paused_until     timestamptz,
  CHECK ((state = 'disabled') = (disabled_reason IS NOT NULL))
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id, created_at, id);

CREATE TABLE webhook_messages (
  endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
  -- the webhook-id header: unique per event, the same on every attempt
  event_id        text        NOT NULL UNIQUE,
  event_type      text        NOT NULL,
  -- the exact bytes sent on every attempt
  body            text        NOT NULL,
  -- the change's position in the feed, which orders an endpoint's messages
  feed_xid        xid8        NOT NULL,
  feed_seq        bigint      NOT NULL,
  made_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- 'pending' (an attempt is due at next_attempt_at), 'delivered', 'failed' (given up after the last
  -- retry, or refused with 410)
  state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz DEFAULT clock_timestamp(),
  -- an attempt in flight: no other worker claims the message before this
  lease_until     timestamptz,
  PRIMARY KEY (endpoint_id, feed_xid, feed_seq),
  CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL))
);
CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at) WHERE state = 'pending';
-- a claim's per-endpoint pick (the most due first) and its count of leases in flight
CREATE INDEX webhook_messages_endpoint_due ON webhook_messages (endpoint_id, next_attempt_at) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
  endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
  event_id        text        NOT NULL,
  event_type      text        NOT NULL,
  attempt         integer     NOT NULL,
  attempted_at    timestamptz NOT NULL,
  status_code     integer,
  error           text,
  duration_ms     integer     NOT NULL,
  next_attempt_at timestamptz,
  -- a unique order for paging among attempts made in the same microsecond
  seq             bigint      GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX webhook_attempts_newest ON webhook_attempts (endpoint_id, attempted_at DESC, seq DESC);

-- what WEBHOOK_RETENTION deletes: finished messages and the delivery log, oldest first
CREATE INDEX webhook_messages_finished ON webhook_messages (made_at) WHERE state <> 'pending';
CREATE INDEX webhook_attempts_attempted ON webhook_attempts (attempted_at);

-- Down Migration

DROP TABLE webhook_attempts;
DROP TABLE webhook_messages;
DROP TABLE webhook_endpoints;
