"""Repository: events for the PBX — the delivery queue and the SSE stream are the same rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crypto import Sealed
from bridge.db.claims import Taker
from bridge.db.notify import EVENTS
from bridge.db.pool import RELAXED_COMMIT, Connection, after_commit, can_defer, notify
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

# The same, each event inserted already claimed by the handoff's worker ($8) when a claim
# could take it now: pending, its conversation free in this process ($9: the first of it in
# the batch, none in hand), nothing still open before it, and the tenant has a target.
# Returns what it took, as a claim would.
_INSERT_TAKING = """
WITH queued AS (
    INSERT INTO events (id, tenant_id, message_id, type, conversation, payload, delivery_status,
        stream_seq, claimed_by, heartbeat_at, attempts)
    SELECT u.id, u.tenant_id, u.message_id, u.type, u.conversation, u.payload, u.status,
           CASE WHEN u.status = 'pending' THEN nextval('event_stream_seq') END,
           CASE WHEN t.taken THEN $8 END, CASE WHEN t.taken THEN now() END,
           CASE WHEN t.taken THEN 1 ELSE 0 END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                $7::text[], $9::bool[])
         AS u(id, tenant_id, message_id, type, conversation, payload, status, first)
    CROSS JOIN LATERAL (
        SELECT u.status = 'pending' AND u.first
               AND EXISTS (SELECT 1 FROM delivery_targets d WHERE d.tenant_id = u.tenant_id)
               AND NOT EXISTS (
                   SELECT 1 FROM events p
                   WHERE p.conversation = u.conversation
                     AND p.delivery_status IN ('held', 'pending')) AS taken) t
    RETURNING id, tenant_id, delivery_status, claimed_by IS NOT NULL AS taken,
              CASE WHEN claimed_by IS NOT NULL THEN payload::text END AS payload
)
SELECT q.id, q.tenant_id, q.delivery_status, q.taken, q.payload, d.url, d.secret_key_id,
       d.secret_sealed
FROM queued q LEFT JOIN delivery_targets d ON q.taken AND d.tenant_id = q.tenant_id
"""


_HELD_FOR_MESSAGE = """
SELECT id FROM events WHERE message_id = $1 AND delivery_status = 'held' FOR UPDATE
"""

_RELEASE = """
UPDATE events SET payload = $2, delivery_status = 'pending', next_attempt_at = now(),
       stream_seq = nextval('event_stream_seq')
WHERE id = $1 AND delivery_status = 'held'
"""

# Whether an event has later ones of its conversation waiting for it to be out of the way.
_FOLLOWED = """
EXISTS (SELECT 1 FROM events f
        WHERE f.conversation = e.conversation AND f.seq > e.seq AND f.delivery_status = 'pending')
"""

_DELIVERED = f"""
{RELAXED_COMMIT}
UPDATE events e SET delivery_status = 'delivered', delivered_at = now(), claimed_by = NULL,
       last_error = NULL
FROM relaxed_commit
WHERE e.id = ANY ($1::text[]) AND e.claimed_by = $2
RETURNING {_FOLLOWED} AS followed
"""

_RETRY_LATER = """
UPDATE events SET claimed_by = NULL, last_error = $3,
       next_attempt_at = now() + make_interval(secs => $4)
WHERE id = $1 AND claimed_by = $2
"""

_DEAD = f"""
UPDATE events e SET delivery_status = 'dead', claimed_by = NULL, last_error = $3
WHERE e.id = $1 AND e.claimed_by = $2
RETURNING {_FOLLOWED} AS followed
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


async def insert_many(
    conn: Connection,
    events: Sequence[tuple[NewEvent, bool]],
    taker: Taker[Claimed] | None = None,
) -> None:
    """Queue events (each with whether it is held), in order, and wake the delivery workers
    for what ``taker`` does not take; what it takes it is given once this commits. Outside
    `Database.transaction` nothing is taken: there is no commit to wait for."""
    if not events:
        return
    columns = (
        [e.id for e, _ in events],
        [e.tenant_id for e, _ in events],
        [e.message_id for e, _ in events],
        [e.type for e, _ in events],
        [e.conversation for e, _ in events],
        [None if e.payload is None else json.dumps(e.payload) for e, _ in events],
        ["held" if held else "pending" for _, held in events],
    )
    if taker is None or not can_defer():
        await conn.execute(_INSERT, *columns)
        if not all(held for _, held in events):
            await notify(conn, EVENTS)
        return
    keys = [e.conversation for e, _ in events]
    with taker.reserving(keys) as reservation:
        rows = await conn.fetch(_INSERT_TAKING, *columns, taker.worker, reservation.free)
    conversation = dict(zip(columns[0], keys, strict=True))
    held = {conversation[r["id"]] for r in rows if r["taken"]}
    reservation.keep_only(held)
    taken = [
        Claimed(
            id=EventId(r["id"]),
            tenant_id=TenantId(r["tenant_id"]),
            payload=r["payload"],
            attempts=1,
            url=r["url"],
            secret=Sealed(r["secret_key_id"], r["secret_sealed"]),
            age_seconds=0.0,
        )
        for r in rows
        if r["taken"]
    ]
    if taken:
        after_commit(lambda: taker.receive(taken, held), lambda: taker.release(held))
    if any(r["delivery_status"] == "pending" and not r["taken"] for r in rows):
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
_CLAIM = f"""
{RELAXED_COMMIT}
UPDATE events e SET claimed_by = $1, heartbeat_at = now(), attempts = e.attempts + 1
FROM delivery_targets d, relaxed_commit
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


async def delivered(conn: Connection, event_ids: Sequence[str], worker: str) -> bool:
    """Acknowledged by the PBX; only while ``worker`` still holds their claims. Whether later
    events of their conversations were waiting for them (they may be claimed now)."""
    rows = await conn.fetch(_DELIVERED, list(event_ids), worker)
    return any(r["followed"] for r in rows)


async def retry_later(
    conn: Connection, event_id: str, worker: str, delay: float, error: str
) -> None:
    await conn.execute(_RETRY_LATER, event_id, worker, error[:500], delay)


async def dead(conn: Connection, event_id: str, worker: str, error: str) -> bool:
    """Given up on; whether later events of its conversation were waiting for it."""
    rows = await conn.fetch(_DEAD, event_id, worker, error[:500])
    return any(r["followed"] for r in rows)


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
