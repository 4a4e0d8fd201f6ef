"""Repository: how an outbound message's status moves — the one path for every change — and
the status callbacks that arrive before the bridge knows their message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.db import events, sip_deliveries
from bridge.db.claims import Taker
from bridge.db.messages import COLUMNS, messages_of
from bridge.db.pool import Connection
from bridge.events import STATUS
from bridge.models import (
    STATUS_RANK,
    Channel,
    ConfigId,
    Message,
    MessageId,
    OutboundStatus,
    TenantId,
)
from bridge.models.twilio_codes import describe

_LOCK_SID = "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))"

_OUTBOUND_BY_SID = """
SELECT id, tenant_id FROM messages
WHERE config_id = $1 AND twilio_sid = $2 AND direction = 'outbound'
FOR UPDATE
"""

# Every status reported goes into the history; the message itself moves to a higher rank only,
# and at most once per message per statement. The moved rows come back whole, so the caller
# can tell the PBX without reading them again.
_ADVANCE = f"""
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::text[], $6::text[])
        WITH ORDINALITY AS i(message_id, status, rank, error_code, error_message, channel, ord)),
history AS (
    INSERT INTO message_status_history (message_id, status, error_code)
    SELECT message_id, status, error_code FROM input ORDER BY ord)
UPDATE messages m SET status = i.status, status_rank = i.rank,
       error_code = coalesce(i.error_code, m.error_code),
       error_message = coalesce(i.error_message, m.error_message),
       channel = coalesce(i.channel, m.channel), updated_at = now()
FROM input i
WHERE m.id = i.message_id AND m.status_rank < i.rank
RETURNING {", ".join("m." + c.strip() for c in COLUMNS.split(","))}
"""

_KEEP_EARLY = """
INSERT INTO early_status_callbacks (config_id, twilio_sid, status, error_code, channel)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
"""

_TAKE_EARLY = """
DELETE FROM early_status_callbacks e USING unnest($1::text[], $2::text[]) AS k(c, s)
WHERE e.config_id = k.c AND e.twilio_sid = k.s
RETURNING e.config_id, e.twilio_sid, e.status, e.error_code, e.channel, e.received_at
"""


@dataclass(frozen=True)
class StatusMove:
    """A status reported for a message (by Twilio, or by the bridge when it gives up)."""

    message_id: MessageId
    status: OutboundStatus
    error_code: int | None = None
    error_message: str | None = None
    # Set when Twilio reports it delivered the text by RCS (a Messaging Service's choice).
    channel: Channel | None = None


async def advance(
    conn: Connection, moves: Sequence[StatusMove], taker: Taker[events.Claimed] | None = None
) -> list[Message]:
    """The one way an outbound status changes: recorded in the message's history, moved
    forward only (design §9), and told to the PBX by a ``message.status`` event in the same
    transaction (which ``taker`` takes if it can). The messages that moved, as they now stand."""
    if not moves:
        return []
    rows = await conn.fetch(
        _ADVANCE,
        [m.message_id for m in moves],
        [m.status for m in moves],
        [STATUS_RANK[m.status] for m in moves],
        [m.error_code for m in moves],
        [_error_text(m) for m in moves],
        [m.channel for m in moves],
    )
    moved = await messages_of(conn, rows)
    await events.insert_many(
        conn, [(events.new_event(m, STATUS, held=False), False) for m in moved], taker
    )
    notices = [_failure_notice(m) for m in moved if _phone_sent_and_failed(m)]
    if notices:
        await sip_deliveries.fan_out(conn, notices)
    return moved


def _phone_sent_and_failed(message: Message) -> bool:
    return (
        message.status in ("failed", "undelivered")
        and message.routing.get("origin") == "sip"
        and bool(message.extensions)
    )


def _failure_notice(message: Message) -> sip_deliveries.FanOut:
    """Design §10: the phone that sent a text hears that it failed, from the remote's address."""
    reason = message.error_message or message.status
    code = f" ({message.error_code})" if message.error_code is not None else ""
    return sip_deliveries.FanOut(
        message_id=message.id,
        tenant_id=message.tenant_id,
        extensions=message.extensions[:1],
        from_number=message.to,
        did=message.from_,
        body=f"Not delivered: {reason}{code}",
        held=False,
        kind="failure_notice",
    )


def _error_text(move: StatusMove) -> str | None:
    if move.error_message is not None:
        return move.error_message
    described = describe(move.error_code)
    return None if described is None else described.meaning


async def lock_sid(conn: Connection, config_id: ConfigId, twilio_sid: str) -> None:
    """Serialise "learn a message's sid" against "a callback for that sid arrives early":
    without it a callback could be kept as early just after the sender took the early ones."""
    await conn.execute(_LOCK_SID, config_id, twilio_sid)


async def outbound_by_sid(
    conn: Connection, config_id: ConfigId, twilio_sid: str
) -> tuple[MessageId, TenantId] | None:
    """The outbound message Twilio knows by this sid, locked."""
    row = await conn.fetchrow(_OUTBOUND_BY_SID, config_id, twilio_sid)
    return None if row is None else (MessageId(row["id"]), TenantId(row["tenant_id"]))


async def keep_early(
    conn: Connection,
    config_id: ConfigId,
    twilio_sid: str,
    status: OutboundStatus,
    error_code: int | None,
    channel: Channel | None = None,
) -> None:
    await conn.execute(_KEEP_EARLY, config_id, twilio_sid, status, error_code, channel)


@dataclass(frozen=True)
class EarlyCallback:
    status: OutboundStatus
    error_code: int | None
    channel: Channel | None


async def take_early(
    conn: Connection, keys: Sequence[tuple[ConfigId, str]]
) -> dict[tuple[str, str], list[EarlyCallback]]:
    """The early callbacks kept for each (configuration, sid), oldest first, now removed."""
    rows = await conn.fetch(_TAKE_EARLY, [c for c, _ in keys], [sid for _, sid in keys])
    found: dict[tuple[str, str], list[EarlyCallback]] = {}
    for r in sorted(rows, key=lambda r: r["received_at"]):
        found.setdefault((r["config_id"], r["twilio_sid"]), []).append(
            EarlyCallback(r["status"], r["error_code"], r["channel"])
        )
    return found
