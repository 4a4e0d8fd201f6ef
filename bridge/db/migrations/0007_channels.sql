-- WhatsApp through Twilio, and RCS as a Messaging Service delivers it (design §12): each text's
-- channel, the numbers that are WhatsApp senders, conversations and opt-outs per channel, and
-- the 24-hour window a customer's last WhatsApp message opens.

-- A constant default: existing rows read as SMS without the table being rewritten. Addresses
-- stay as they were (the number without Twilio's whatsapp:/rcs: prefix); the channel says how.
ALTER TABLE messages
    ADD COLUMN channel text NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'whatsapp', 'rcs')),
    ADD COLUMN content_sid text,
    ADD COLUMN content_variables jsonb;

ALTER TABLE sms_numbers ADD COLUMN channels text[] NOT NULL DEFAULT '{sms}';

-- Replies follow the conversation of their own channel: an SMS thread and a WhatsApp thread
-- with the same person over the same number are two conversations.
DROP INDEX messages_affinity;
CREATE INDEX messages_affinity ON messages (tenant_id, from_number, to_number, channel, created_at DESC)
    WHERE direction = 'outbound';

-- The window: whether the remote wrote to the number by WhatsApp in the last 24 hours is one
-- probe of this index. It is written by the inbound insert itself (no statement of its own in
-- the webhook's group commit), and SMS texts never enter it.
CREATE INDEX messages_whatsapp_window ON messages (config_id, to_number, from_number, created_at DESC)
    WHERE direction = 'inbound' AND channel = 'whatsapp';

-- A STOP on WhatsApp stops WhatsApp, not SMS (and the other way round).
ALTER TABLE opt_outs
    ADD COLUMN channel text NOT NULL DEFAULT 'sms' CHECK (channel IN ('sms', 'whatsapp'));
ALTER TABLE opt_outs DROP CONSTRAINT opt_outs_pkey,
    ADD PRIMARY KEY (config_id, remote_number, channel);
DROP INDEX opt_outs_tenant;
CREATE INDEX opt_outs_tenant ON opt_outs (tenant_id, config_id, remote_number, channel);

-- The channel a status callback reported (an SMS a Messaging Service delivered by RCS), kept
-- with the callbacks that arrive before their message's sid is known.
ALTER TABLE early_status_callbacks ADD COLUMN channel text;
