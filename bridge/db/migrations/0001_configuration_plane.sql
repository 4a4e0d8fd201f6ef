-- Tenants, their tokens, trunks, SMS configurations, numbers, webhook tokens, extensions and rules.

CREATE TABLE tenants (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    default_country text NOT NULL,
    affinity_hours  integer NOT NULL CHECK (affinity_hours >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_tokens (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX tenant_tokens_tenant ON tenant_tokens (tenant_id, id);

CREATE TABLE delivery_targets (
    tenant_id      text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url            text NOT NULL,
    secret_key_id  text NOT NULL,
    secret_sealed  bytea NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE trunks (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trunks_tenant ON trunks (tenant_id, id);

CREATE TABLE sms_configs (
    id                     text PRIMARY KEY,
    tenant_id              text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    trunk_id               text NOT NULL UNIQUE REFERENCES trunks (id),
    name                   text NOT NULL,
    account_sid            text NOT NULL,
    credential_type        text NOT NULL CHECK (credential_type IN ('auth_token', 'api_key')),
    api_key_sid            text,
    auth_token_last4       text NOT NULL,
    secrets_key_id         text NOT NULL,
    auth_token_sealed      bytea NOT NULL,
    api_key_secret_sealed  bytea,
    sender_id              text,
    messaging_service_sid  text,
    allowed_countries      text[] NOT NULL,
    enabled                boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((credential_type = 'api_key') = (api_key_sid IS NOT NULL AND api_key_secret_sealed IS NOT NULL))
);
CREATE INDEX sms_configs_tenant ON sms_configs (tenant_id, id);

-- The primary key is the promise that a number belongs to one configuration in the whole
-- system: Twilio routes inbound texts by number.
CREATE TABLE sms_numbers (
    number     text PRIMARY KEY,
    config_id  text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position   integer NOT NULL,
    type       text NOT NULL CHECK (type IN ('long_code', 'short_code', 'toll_free')),
    mms        boolean NOT NULL,
    mps        double precision CHECK (mps > 0)
);
CREATE INDEX sms_numbers_config ON sms_numbers (config_id, position);

CREATE TABLE webhook_tokens (
    token       text PRIMARY KEY,
    config_id   text NOT NULL REFERENCES sms_configs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- NULL while current; set when rotated to the end of the grace period.
    valid_until timestamptz
);
CREATE UNIQUE INDEX webhook_tokens_current ON webhook_tokens (config_id) WHERE valid_until IS NULL;

CREATE TABLE extensions (
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    extension    text NOT NULL,
    position     integer NOT NULL,
    name         text NOT NULL DEFAULT '',
    dids         text[] NOT NULL DEFAULT '{}',
    default_did  text,
    PRIMARY KEY (tenant_id, extension)
);

CREATE TABLE inbound_rules (
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    name         text NOT NULL,
    trunk_id     text REFERENCES trunks (id),
    did          text NOT NULL,
    from_pattern text,
    extensions   text[] NOT NULL,
    enabled      boolean NOT NULL,
    PRIMARY KEY (tenant_id, position)
);

CREATE TABLE outbound_rules (
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position         integer NOT NULL,
    name             text NOT NULL,
    from_extensions  text[] NOT NULL,
    prefix           text NOT NULL,
    min_length       integer,
    max_length       integer,
    strip            integer NOT NULL,
    prepend          text NOT NULL,
    trunks           text[] NOT NULL,
    sender           text,
    enabled          boolean NOT NULL,
    PRIMARY KEY (tenant_id, position)
);
