-- Texts on the phones (design §10): a tenant's SIP settings, its extensions' SIP addresses,
-- the store-and-forward queue of MESSAGEs to phones, and the links to inbound media they carry.

CREATE TABLE sip_settings (
    tenant_id                text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    enabled                  boolean NOT NULL,
    -- The From host of the PBX's MESSAGEs names the tenant (with the source address): unique.
    domain                   text NOT NULL,
    proxy                    text NOT NULL,
    allowed_sources          cidr[] NOT NULL,
    auth_username            text,
    secrets_key_id           text NOT NULL,
    auth_password_sealed     bytea,
    inbound_password_sealed  bytea,
    max_age_hours            double precision NOT NULL,
    notify_failures          boolean NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX sip_settings_domain ON sip_settings (lower(domain));

ALTER TABLE extensions ADD COLUMN sip_uri text, ADD COLUMN sip boolean NOT NULL DEFAULT true;

-- One row per text and extension (or per failure notice). A phone's texts go in order: a row
-- waits while an earlier one to the same extension is still open (held or pending).
CREATE TABLE sip_deliveries (
    id               text PRIMARY KEY,
    seq              bigserial UNIQUE,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    message_id       text REFERENCES messages (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('message', 'failure_notice')),
    extension        text NOT NULL,
    -- Who the phone shows it from (the remote number), and the DID it was sent to.
    from_number      text NOT NULL,
    did              text,
    body             text NOT NULL,
    -- Held until the message's media are stored (the body then gains their links).
    status           text NOT NULL CHECK (status IN ('held', 'pending', 'delivered', 'dead')),
    -- Over UDP a long body goes in numbered parts: those already acknowledged are not resent.
    parts_sent       integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    claimed_by       text,
    heartbeat_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX sip_deliveries_due ON sip_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX sip_deliveries_open ON sip_deliveries (tenant_id, extension, seq)
    WHERE status IN ('held', 'pending');
CREATE INDEX sip_deliveries_message ON sip_deliveries (message_id);

-- Expiring, unguessable links to an inbound message's media, written into its SIP text.
CREATE TABLE media_links (
    token       text PRIMARY KEY,
    message_id  text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX media_links_message ON media_links (message_id);
