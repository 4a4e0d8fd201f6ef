"""Repository: outbound texts whose status stood still, to be looked up at Twilio (their status
callbacks may have been lost: Twilio never sends one again)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crypto import StoredSecrets
from bridge.db.pool import Connection
from bridge.db.sms_configs import stored_secrets
from bridge.models import STATUS_RANK, ConfigId, MessageId, TenantId

# Statuses of this rank and above are final. The literal in the SQL below (and in the partial
# index of migration 0005) is what lets PostgreSQL use that index.
FINAL_RANK = STATUS_RANK["delivered"]

_AWAITING = f"""
m.direction = 'outbound' AND m.twilio_sid IS NOT NULL AND m.status_rank < {FINAL_RANK}
"""

# Texts that went quiet get a row. The index on texts still awaiting a final status, read
# between the two ages (a text changed no earlier than it was made), keeps this a short range
# scan however many texts are stored, also those that stay `sent` for good.
_DISCOVER = f"""
WITH added AS (
    INSERT INTO status_polls (message_id)
    SELECT m.id FROM messages m
    WHERE {_AWAITING}
      AND m.updated_at <= now() - make_interval(secs => $1)
      AND m.updated_at > now() - make_interval(secs => $2)
      AND m.created_at > now() - make_interval(secs => $2)
      AND m.config_id IS NOT NULL
      AND NOT EXISTS (SELECT FROM status_polls p WHERE p.message_id = m.id)
    ORDER BY m.updated_at
    LIMIT $3
    ON CONFLICT (message_id) DO NOTHING
    RETURNING 1)
SELECT count(*) FROM added
"""

# Due rows, still quiet, are claimed by pushing their next poll to the end of the claim: a
# poller that dies gives them back by itself when the claim runs out.
_CLAIM = f"""
UPDATE status_polls p SET claimed_by = $1, next_poll_at = now() + make_interval(secs => $2)
FROM messages m JOIN sms_configs c ON c.id = m.config_id
WHERE m.id = p.message_id AND p.message_id IN (
    SELECT q.message_id FROM status_polls q JOIN messages n ON n.id = q.message_id
    WHERE q.next_poll_at <= now()
      AND n.status_rank < {FINAL_RANK}
      AND n.updated_at <= now() - make_interval(secs => $3)
      AND n.created_at > now() - make_interval(secs => $4)
    ORDER BY q.next_poll_at
    LIMIT $5
    FOR UPDATE OF q SKIP LOCKED)
RETURNING p.message_id, p.polls, p.polled_at IS NULL OR m.updated_at > p.polled_at AS moved,
          m.tenant_id, m.config_id, m.twilio_sid, m.status, c.account_sid, c.api_key_sid,
          c.secrets_key_id, c.auth_token_sealed, c.api_key_secret_sealed
"""

_RESCHEDULE = """
UPDATE status_polls p SET claimed_by = NULL, polls = u.polls, polled_at = now(),
       next_poll_at = now() + make_interval(secs => u.delay), last_error = u.error
FROM unnest($2::text[], $3::int[], $4::float8[], $5::text[]) AS u(message_id, polls, delay, error)
WHERE p.message_id = u.message_id AND p.claimed_by = $1
"""

_FORGET = "DELETE FROM status_polls WHERE message_id = ANY ($1::text[])"

# Rows whose text is final (a callback came after all), lost its configuration, or is too old
# to be asked about any more; how many of them were given up on before a final status.
_FORGET_SETTLED = f"""
WITH gone AS (
    DELETE FROM status_polls p USING messages m
    WHERE m.id = p.message_id
      AND (m.status_rank >= {FINAL_RANK} OR m.config_id IS NULL
           OR m.created_at <= now() - make_interval(secs => $1))
    RETURNING m.status_rank < {FINAL_RANK} AS unfinished)
SELECT count(*) FILTER (WHERE unfinished) FROM gone
"""


@dataclass(frozen=True)
class Quiet:
    """A claimed text to look up at Twilio, with what opens its configuration's credentials."""

    message_id: MessageId
    tenant_id: TenantId
    config_id: ConfigId
    twilio_sid: str
    status: str
    # Looks since its status last moved (none if it moved since the last look).
    polls: int
    account_sid: str
    api_key_sid: str | None
    secrets: StoredSecrets


@dataclass(frozen=True)
class Reschedule:
    """Ask about this text again after ``delay`` seconds."""

    message_id: MessageId
    polls: int
    delay: float
    error: str | None = None


async def discover(
    conn: Connection, quiet_seconds: float, max_age_seconds: float, limit: int
) -> int:
    """Give a row to texts Twilio has whose status has not moved for ``quiet_seconds``."""
    added: int = await conn.fetchval(_DISCOVER, quiet_seconds, max_age_seconds, limit)
    return added


async def claim(
    conn: Connection,
    worker: str,
    limit: int,
    *,
    claim_seconds: float,
    quiet_seconds: float,
    max_age_seconds: float,
) -> list[Quiet]:
    """Due texts, still quiet, for ``worker`` alone for ``claim_seconds``."""
    rows = await conn.fetch(_CLAIM, worker, claim_seconds, quiet_seconds, max_age_seconds, limit)
    return [
        Quiet(
            message_id=MessageId(r["message_id"]),
            tenant_id=TenantId(r["tenant_id"]),
            config_id=ConfigId(r["config_id"]),
            twilio_sid=r["twilio_sid"],
            status=r["status"],
            polls=0 if r["moved"] else r["polls"],
            account_sid=r["account_sid"],
            api_key_sid=r["api_key_sid"],
            secrets=stored_secrets(r),
        )
        for r in rows
    ]


async def reschedule(conn: Connection, worker: str, later: Sequence[Reschedule]) -> None:
    """Give back ``worker``'s claims, each to be looked at again after its delay."""
    if not later:
        return
    await conn.execute(
        _RESCHEDULE,
        worker,
        [r.message_id for r in later],
        [r.polls for r in later],
        [r.delay for r in later],
        [None if r.error is None else r.error[:500] for r in later],
    )


async def forget(conn: Connection, message_ids: Sequence[MessageId]) -> None:
    """These texts are final: no more looks."""
    if message_ids:
        await conn.execute(_FORGET, list(message_ids))


async def forget_settled(conn: Connection, max_age_seconds: float) -> int:
    """Drop rows of texts now final, without a configuration, or too old; how many of them
    were given up on while not final."""
    gave_up: int = await conn.fetchval(_FORGET_SETTLED, max_age_seconds)
    return gave_up
