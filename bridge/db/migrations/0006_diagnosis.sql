-- "Why don't my texts arrive?" (design §11): what the webhook path refused, counted per hour
-- (never the refused bodies), the last signature failures with their diagnosed cause, and the
-- configurations that keep their Twilio numbers pointed at the bridge themselves.

CREATE TABLE webhook_counts (
    config_id  text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    hour       timestamptz NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('duplicate', 'bad_signature', 'refused')),
    count      integer NOT NULL,
    PRIMARY KEY (config_id, hour, outcome)
);

CREATE TABLE signature_failures (
    id         bigserial PRIMARY KEY,
    config_id  text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,
    cause      text NOT NULL,
    detail     text NOT NULL
);
CREATE INDEX signature_failures_config ON signature_failures (config_id, at DESC);

ALTER TABLE sms_configs ADD COLUMN auto_setup boolean NOT NULL DEFAULT false;

-- Given-up deliveries, for the diagnosis: a partial index holds only them (statuses already
-- keep these rows from HOT updates, so it costs the delivery path nothing it did not pay).
CREATE INDEX events_dead ON events (tenant_id, created_at) WHERE delivery_status = 'dead';
CREATE INDEX sip_deliveries_dead ON sip_deliveries (tenant_id, created_at) WHERE status = 'dead';
