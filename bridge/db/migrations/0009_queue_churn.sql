-- The delivery queue, claimed in order of due time then sequence: an index in that order lets
-- a claim read the first due rows and stop, and an index scan (unlike a bitmap scan) marks
-- the entries of rows delivered since the last vacuum as dead as it passes them, so a claim
-- under load no longer revisits every row the queue held since then.
DROP INDEX events_due;
CREATE INDEX events_due ON events (next_attempt_at, seq) WHERE delivery_status = 'pending';

-- The phones' queue is claimed the same way.
DROP INDEX sip_deliveries_due;
CREATE INDEX sip_deliveries_due ON sip_deliveries (next_attempt_at, seq) WHERE status = 'pending';
