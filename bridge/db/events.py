"""Repository: events for the PBX — the delivery queue and the SSE stream are the same rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crypto import Sealed
from bridge.db.notify import EVENTS
from bridge.db.pool import Connection, notify
from bridge.events import conversation_key, new_event_id, payload
from bridge.models import EventId, Message, MessageId, TenantId

_INSERT = """
INSERT INTO events (id, tenant_id, message_id, type, conversation, payload, delivery_status,
    stream_seq)
SELECT id, tenant_id, message_id, type, conversation, payload, status,
       CASE WHEN status = 'pending' THEN nextval('event_stream_seq') END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[])
     AS u(id, tenant_id, message_id, type, conversation, payload, status)
"""

_HELD_FOR_MESSAGE = """
SELECT id FROM events WHERE message_id = $1 AND delivery_status = 'held' FOR UPDATE
"""

_RELEASE = """
UPDATE events SET payload = $2, delivery_status = 'pending', next_attempt_at = now(),
       stream_seq = nextval('event_stream_seq')
WHERE id = $1 AND delivery_status = 'held'
"""

_DELIVERED = """
UPDATE events SET delivery_status = 'delivered', delivered_at = now(), claimed_by = NULL,
       last_error = NULL
WHERE id = ANY ($1::text[]) AND claimed_by = $2
"""

_RETRY_LATER = """
UPDATE events SET claimed_by = NULL, last_error = $3,
       next_attempt_at = now() + make_interval(secs => $4)
WHERE id = $1 AND claimed_by = $2
"""

_DEAD = """
UPDATE events SET delivery_status = 'dead', claimed_by = NULL, last_error = $3
WHERE id = $1 AND claimed_by = $2
"""

_STREAM_AFTER = """
SELECT stream_seq, id, type, payload::text AS payload FROM events
WHERE tenant_id = $1 AND stream_seq > $2 AND stream_seq <= $3 ORDER BY stream_seq LIMIT $4
"""

_STREAM_POSITION = "SELECT stream_seq FROM events WHERE tenant_id = $1 AND id = $2"

_STREAM_HEAD = "SELECT max(stream_seq) FROM events"

# Stream positions are drawn when an event is inserted, not when it commits: a reader must not
# pass a position while a transaction that may hold a lower one is still running. The horizon
# is the last position drawn, with the writing transactions then in flight.
_STREAM_HORIZON = """
SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_stream_seq) AS head,
       ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x) AS in_flight
"""

_STILL_RUNNING = """
SELECT count(*) FROM unnest($1::text[]) AS x WHERE pg_xact_status(x::xid8) = 'in progress'
"""


@dataclass(frozen=True)
class NewEvent:
    id: EventId
    tenant_id: TenantId
    message_id: MessageId
    type: str
    conversation: str
    payload: dict[str, object] | None


async def insert_many(conn: Connection, events: Sequence[tuple[NewEvent, bool]]) -> None:
    """Queue events (each with whether it is held), in order, and wake the delivery workers."""
    if not events:
        return
    await conn.execute(
        _INSERT,
        [e.id for e, _ in events],
        [e.tenant_id for e, _ in events],
        [e.message_id for e, _ in events],
        [e.type for e, _ in events],
        [e.conversation for e, _ in events],
        [None if e.payload is None else json.dumps(e.payload) for e, _ in events],
        ["held" if held else "pending" for _, held in events],
    )
    if not all(held for _, held in events):
        await notify(conn, EVENTS)


def new_event(message: Message, event_type: str, *, held: bool) -> NewEvent:
    """An event about ``message``, which the caller already holds as it now stands."""
    event_id = new_event_id()
    return NewEvent(
        id=event_id,
        tenant_id=message.tenant_id,
        message_id=message.id,
        type=event_type,
        conversation=conversation_key(message),
        payload=None if held else payload(event_id, event_type, message),
    )


async def held_for_message(conn: Connection, message_id: MessageId) -> list[EventId]:
    """The message's events still waiting (for its media), locked."""
    return [EventId(r["id"]) for r in await conn.fetch(_HELD_FOR_MESSAGE, message_id)]


async def release(conn: Connection, event_id: EventId, payload: dict[str, object]) -> None:
    await conn.execute(_RELEASE, event_id, json.dumps(payload))
    await notify(conn, EVENTS)


@dataclass(frozen=True)
class Claimed:
    """An event this worker may deliver now, with where to deliver it."""

    id: EventId
    tenant_id: TenantId
    payload: str
    attempts: int
    url: str
    secret: Sealed
    age_seconds: float


# One statement claims: due, not held by a live worker, first of its conversation still
# open (so a conversation's events go out in order), and the tenant has a target. A worker
# claims only between batches, so rows it still holds are leftovers of a failed batch (the
# database went away mid-way): it takes those again at once.
_CLAIM = """
UPDATE events e SET claimed_by = $1, heartbeat_at = now(), attempts = e.attempts + 1
FROM delivery_targets d
WHERE e.tenant_id = d.tenant_id AND e.id IN (
    SELECT c.id FROM events c
    JOIN delivery_targets t ON t.tenant_id = c.tenant_id
    WHERE c.delivery_status = 'pending' AND c.next_attempt_at <= now()
      AND (c.claimed_by IS NULL OR c.claimed_by = $1
           OR c.heartbeat_at < now() - make_interval(secs => $3))
      AND NOT EXISTS (
          SELECT 1 FROM events p
          WHERE p.conversation = c.conversation AND p.seq < c.seq
            AND p.delivery_status IN ('held', 'pending'))
    ORDER BY c.next_attempt_at, c.seq
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED)
RETURNING e.id, e.tenant_id, e.payload::text AS payload, e.attempts, d.url, d.secret_key_id,
          d.secret_sealed, extract(epoch FROM now() - e.created_at)::float8 AS age_seconds
"""


async def claim(conn: Connection, worker: str, limit: int, stale_seconds: float) -> list[Claimed]:
    return [
        Claimed(
            id=EventId(r["id"]),
            tenant_id=TenantId(r["tenant_id"]),
            payload=r["payload"],
            attempts=r["attempts"],
            url=r["url"],
            secret=Sealed(r["secret_key_id"], r["secret_sealed"]),
            age_seconds=r["age_seconds"],
        )
        for r in await conn.fetch(_CLAIM, worker, limit, stale_seconds)
    ]


async def delivered(conn: Connection, event_ids: Sequence[str], worker: str) -> None:
    """Acknowledged by the PBX; only while ``worker`` still holds their claims."""
    await conn.execute(_DELIVERED, list(event_ids), worker)


async def retry_later(
    conn: Connection, event_id: str, worker: str, delay: float, error: str
) -> None:
    await conn.execute(_RETRY_LATER, event_id, worker, error[:500], delay)


async def dead(conn: Connection, event_id: str, worker: str, error: str) -> None:
    await conn.execute(_DEAD, event_id, worker, error[:500])


async def stream_after(
    conn: Connection, tenant_id: TenantId, after: int, until: int, limit: int
) -> list[tuple[int, str, str, str]]:
    """The tenant's events at positions in (``after``, ``until``], in order."""
    rows = await conn.fetch(_STREAM_AFTER, tenant_id, after, until, limit)
    return [(r["stream_seq"], r["id"], r["type"], r["payload"]) for r in rows]


async def stream_position(conn: Connection, tenant_id: TenantId, event_id: str) -> int | None:
    seq: int | None = await conn.fetchval(_STREAM_POSITION, tenant_id, event_id)
    return seq


async def stream_horizon(conn: Connection) -> tuple[int, list[str]]:
    """The last stream position drawn, and the transactions that were writing then."""
    row = await conn.fetchrow(_STREAM_HORIZON)
    assert row is not None
    return row["head"], list(row["in_flight"])


async def still_running(conn: Connection, transactions: list[str]) -> int:
    """How many of these transactions have neither committed nor aborted yet."""
    if not transactions:
        return 0
    count: int = await conn.fetchval(_STILL_RUNNING, transactions)
    return count


async def stream_head(conn: Connection) -> int:
    head: int | None = await conn.fetchval(_STREAM_HEAD)
    return head or 0
