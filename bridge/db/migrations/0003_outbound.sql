-- The outbound send queue, per-sender pacing leases, outbound media and idempotency keys.

-- One row per sender (a number, an alphanumeric sender, or a shard of a messaging service)
-- of a configuration: its pacing and the lease of the one process sending for it, which keeps
-- one sender's messages in order.
CREATE TABLE senders (
    sender_key    text PRIMARY KEY,
    config_id     text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    mps           double precision NOT NULL CHECK (mps > 0),
    next_free_at  timestamptz NOT NULL DEFAULT now(),
    claimed_by    text,
    heartbeat_at  timestamptz
);

CREATE TABLE sends (
    message_id        text PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    seq               bigserial UNIQUE,
    sender_key        text NOT NULL REFERENCES senders (sender_key) ON DELETE CASCADE,
    state             text NOT NULL CHECK (state IN ('queued', 'done', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- Set before each request to Twilio and cleared only when Twilio certainly did not take
    -- it: while set, the message must be looked for in Twilio's list before any resend.
    attempt_started_at timestamptz,
    last_error        text
);
CREATE INDEX sends_queue ON sends (sender_key, seq) WHERE state = 'queued';

CREATE TABLE outbound_media (
    message_id    text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    token         text NOT NULL UNIQUE,
    content_type  text NOT NULL,
    data          bytea NOT NULL,
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (message_id, position)
);

CREATE TABLE idempotency_keys (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    -- Deferred: the key is claimed first, in the transaction that then stores the message.
    message_id    text NOT NULL REFERENCES messages (id) ON DELETE CASCADE
                  DEFERRABLE INITIALLY DEFERRED,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
