-- Asking Twilio what became of outbound texts whose status callbacks never came (a proxy in
-- front of the bridge was down, say): Twilio does not send a lost callback again.

-- Texts Twilio has, not yet final, by when they last changed: where the poller finds the ones
-- that went quiet. 4 is the rank of the final statuses (bridge.models STATUS_RANK).
CREATE INDEX messages_awaiting_status ON messages (updated_at)
    WHERE direction = 'outbound' AND twilio_sid IS NOT NULL AND status_rank < 4;

-- One row per quiet text: when to ask next, and how often it was asked since its status last
-- moved (each quiet answer doubles the wait). While a poller holds the row, next_poll_at is
-- the end of its claim, so a poller that died gives the row back by itself.
CREATE TABLE status_polls (
    message_id    text PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    next_poll_at  timestamptz NOT NULL DEFAULT now(),
    polls         integer NOT NULL DEFAULT 0,
    polled_at     timestamptz,
    claimed_by    text,
    last_error    text
);
CREATE INDEX status_polls_due ON status_polls (next_poll_at);
