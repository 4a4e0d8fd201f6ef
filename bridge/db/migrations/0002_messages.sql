-- Messages, their media and status history, the event/delivery queue, opt-outs, and status
-- callbacks that arrived before the message they describe.

-- Bumped whenever a tenant's inbound rules change, so each process can cache its rule index.
ALTER TABLE tenants ADD COLUMN rules_version bigint NOT NULL DEFAULT 0;

CREATE TABLE messages (
    id              text PRIMARY KEY,
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    config_id       text REFERENCES sms_configs (id) ON DELETE SET NULL,
    direction       text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    status          text NOT NULL,
    status_rank     smallint NOT NULL DEFAULT 0,
    from_number     text NOT NULL,
    to_number       text NOT NULL,
    body            text NOT NULL DEFAULT '',
    extensions      text[] NOT NULL DEFAULT '{}',
    from_extension  text,
    segments        integer NOT NULL DEFAULT 0,
    encoding        text NOT NULL DEFAULT 'GSM-7',
    num_media       integer NOT NULL DEFAULT 0,
    twilio_sid      text,
    error_code      integer,
    error_message   text,
    routing         jsonb NOT NULL DEFAULT '{}',
    -- Every parameter Twilio sent, as received: a JSON array of [name, value] pairs.
    params          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Twilio retries a webhook with the same MessageSid: this key, not a lookup, makes the
-- retry store nothing new.
CREATE UNIQUE INDEX messages_twilio_sid ON messages (config_id, twilio_sid)
    WHERE twilio_sid IS NOT NULL;
CREATE INDEX messages_tenant ON messages (tenant_id, id DESC);
CREATE INDEX messages_affinity ON messages (tenant_id, from_number, to_number, created_at DESC)
    WHERE direction = 'outbound';

CREATE TABLE message_status_history (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status      text NOT NULL,
    error_code  integer,
    -- clock_timestamp: several changes can land in one transaction (early callbacks).
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX message_status_history_message ON message_status_history (message_id, id);

CREATE TABLE message_media (
    message_id       text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position         integer NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'stored', 'failed')),
    source_url       text,
    content_type     text,
    size             bigint,
    sha256           text,
    data             bytea,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    claimed_by       text,
    heartbeat_at     timestamptz,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_media_pending ON message_media (next_attempt_at) WHERE status = 'pending';

CREATE SEQUENCE event_stream_seq;

CREATE TABLE events (
    seq              bigserial UNIQUE,
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    message_id       text REFERENCES messages (id) ON DELETE CASCADE,
    type             text NOT NULL,
    conversation     text NOT NULL,
    payload          jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Assigned when the event is released (payload final): the order of the SSE stream.
    stream_seq       bigint UNIQUE,
    delivery_status  text NOT NULL CHECK (delivery_status IN ('held', 'pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    claimed_by       text,
    heartbeat_at     timestamptz,
    delivered_at     timestamptz
);
CREATE INDEX events_due ON events (next_attempt_at) WHERE delivery_status = 'pending';
CREATE INDEX events_open_conversation ON events (conversation, seq)
    WHERE delivery_status IN ('held', 'pending');
CREATE INDEX events_stream ON events (tenant_id, stream_seq) WHERE stream_seq IS NOT NULL;
CREATE INDEX events_message ON events (message_id);

CREATE TABLE opt_outs (
    config_id      text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    tenant_id      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    remote_number  text NOT NULL,
    keyword        text NOT NULL,
    opted_out_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (config_id, remote_number)
);
CREATE INDEX opt_outs_tenant ON opt_outs (tenant_id, config_id, remote_number);

CREATE TABLE early_status_callbacks (
    config_id    text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    twilio_sid   text NOT NULL,
    status       text NOT NULL,
    error_code   integer,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (config_id, twilio_sid, status)
);
