-- The digest algorithms the bridge challenges a PBX with, in the order offered (design §10).
-- SHA-256 first is what RFC 8760 asks; a PBX that reads only the first challenge and knows only
-- MD5 (SIPp, older stacks) needs MD5 first, or MD5 alone.
ALTER TABLE sip_settings ADD COLUMN inbound_digest text[] NOT NULL DEFAULT '{SHA-256,MD5}';
