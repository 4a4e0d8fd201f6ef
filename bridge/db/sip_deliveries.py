"""Repository: the store-and-forward queue of MESSAGEs to phones (design §10)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridge.crypto import Sealed
from bridge.db.claims import Taker
from bridge.db.notify import SIP
from bridge.db.pool import Connection, Record, after_commit, can_defer, notify
from bridge.models import DeliveryStatus, MessageId, TenantId

SipKind = Literal["message", "failure_notice"]

# Rows for the extensions of each text whose tenant has SIP on and which did not opt out;
# ids name the message, the extension and the kind, so each reaches a queue once.
_FAN_OUT = """
INSERT INTO sip_deliveries (id, tenant_id, message_id, kind, extension, from_number, did, body,
    status)
SELECT u.message_id || ':' || u.extension || ':' || u.kind, u.tenant_id, u.message_id, u.kind,
       u.extension, u.from_number, u.did, u.body, u.status
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[])
     AS u(message_id, tenant_id, kind, extension, from_number, did, body, status)
JOIN sip_settings s ON s.tenant_id = u.tenant_id AND s.enabled
    AND (u.kind = 'message' OR s.notify_failures)
JOIN extensions e ON e.tenant_id = u.tenant_id AND e.extension = u.extension AND e.sip
ON CONFLICT (id) DO NOTHING
RETURNING status
"""

# Due, its tenant's SIP on (texts wait while it is off), not held by a live worker, first of
# its extension's queue still open (a phone's texts arrive in order). Rows a worker still
# holds between batches are leftovers of a failed one.
_CLAIM = """
UPDATE sip_deliveries d SET claimed_by = $1, heartbeat_at = now(), attempts = d.attempts + 1
FROM sip_settings s, extensions e
WHERE s.tenant_id = d.tenant_id AND e.tenant_id = d.tenant_id AND e.extension = d.extension
  AND d.id IN (
    SELECT c.id FROM sip_deliveries c
    JOIN sip_settings t ON t.tenant_id = c.tenant_id AND t.enabled
    WHERE c.status = 'pending' AND c.next_attempt_at <= now()
      AND (c.claimed_by IS NULL OR c.claimed_by = $1
           OR c.heartbeat_at < now() - make_interval(secs => $3))
      AND NOT EXISTS (
          SELECT 1 FROM sip_deliveries p
          WHERE p.tenant_id = c.tenant_id AND p.extension = c.extension AND p.seq < c.seq
            AND p.status IN ('held', 'pending'))
    ORDER BY c.next_attempt_at, c.seq
    LIMIT $2
    FOR UPDATE OF c SKIP LOCKED)
RETURNING d.id, d.tenant_id, d.message_id, d.kind, d.extension, d.from_number, d.did, d.body,
          d.parts_sent, d.attempts,
          extract(epoch FROM now() - d.created_at)::float8 AS age_seconds,
          coalesce(e.sip_uri, 'sip:' || d.extension || '@' || s.domain) AS uri,
          s.domain, s.proxy, s.auth_username, s.secrets_key_id, s.auth_password_sealed,
          s.max_age_hours
"""

_PROGRESS = """
UPDATE sip_deliveries SET parts_sent = $3, heartbeat_at = now()
WHERE id = $1 AND claimed_by = $2
"""

# Whether a delivery has later ones of its extension's queue waiting for it to be done.
_FOLLOWED = """
EXISTS (SELECT 1 FROM sip_deliveries f
        WHERE f.tenant_id = d.tenant_id AND f.extension = d.extension AND f.seq > d.seq
          AND f.status = 'pending')
"""

_DELIVERED = f"""
UPDATE sip_deliveries d SET status = 'delivered', delivered_at = now(), claimed_by = NULL,
       last_error = NULL, parts_sent = u.parts_sent
FROM unnest($1::text[], $3::int[]) AS u(id, parts_sent)
WHERE d.id = u.id AND d.claimed_by = $2
RETURNING {_FOLLOWED} AS followed
"""

_RETRY_LATER = """
UPDATE sip_deliveries SET claimed_by = NULL, last_error = $3, parts_sent = $5,
       next_attempt_at = now() + make_interval(secs => $4)
WHERE id = $1 AND claimed_by = $2
"""

_DEAD = f"""
UPDATE sip_deliveries d SET status = 'dead', claimed_by = NULL, last_error = $3,
       parts_sent = $4
WHERE d.id = $1 AND d.claimed_by = $2
RETURNING {_FOLLOWED} AS followed
"""

_HELD_FOR_MESSAGE = """
SELECT id FROM sip_deliveries WHERE message_id = $1 AND status = 'held' FOR UPDATE
"""

_RELEASE = """
UPDATE sip_deliveries SET status = 'pending', body = $2, next_attempt_at = now()
WHERE message_id = $1 AND status = 'held'
"""

_GIVE_UP_TENANT = """
UPDATE sip_deliveries SET status = 'dead', last_error = $2, claimed_by = NULL
WHERE tenant_id = $1 AND status IN ('held', 'pending')
"""

_DUE_NOW = """
UPDATE sip_deliveries SET next_attempt_at = now()
WHERE tenant_id = $1 AND extension = $2 AND status = 'pending' AND next_attempt_at > now()
"""

_FOR_MESSAGE = """
SELECT extension, kind, status, attempts, last_error, delivered_at FROM sip_deliveries
WHERE message_id = $1 ORDER BY seq
"""


# The same, each row inserted already claimed by the handoff's worker ($9) when a claim could
# take it now: pending, its phone free in this process ($10: the first for it in the batch,
# none in hand), nothing still open before it in that phone's queue. Returns what it took, as
# a claim would.
_FAN_OUT_TAKING = """
WITH queued AS (
    INSERT INTO sip_deliveries (id, tenant_id, message_id, kind, extension, from_number, did,
        body, status, claimed_by, heartbeat_at, attempts)
    SELECT u.message_id || ':' || u.extension || ':' || u.kind, u.tenant_id, u.message_id,
           u.kind, u.extension, u.from_number, u.did, u.body, u.status,
           CASE WHEN t.taken THEN $9 END, CASE WHEN t.taken THEN now() END,
           CASE WHEN t.taken THEN 1 ELSE 0 END
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $10::bool[])
         AS u(message_id, tenant_id, kind, extension, from_number, did, body, status, first)
    JOIN sip_settings s ON s.tenant_id = u.tenant_id AND s.enabled
        AND (u.kind = 'message' OR s.notify_failures)
    JOIN extensions e ON e.tenant_id = u.tenant_id AND e.extension = u.extension AND e.sip
    CROSS JOIN LATERAL (
        SELECT u.status = 'pending' AND u.first AND NOT EXISTS (
            SELECT 1 FROM sip_deliveries p
            WHERE p.tenant_id = u.tenant_id AND p.extension = u.extension
              AND p.status IN ('held', 'pending')) AS taken) t
    ON CONFLICT (id) DO NOTHING
    RETURNING id, tenant_id, message_id, kind, extension, from_number, did, body, parts_sent,
              attempts, status, claimed_by IS NOT NULL AS taken
)
SELECT q.*, 0::float8 AS age_seconds,
       coalesce(e.sip_uri, 'sip:' || q.extension || '@' || s.domain) AS uri,
       s.domain, s.proxy, s.auth_username, s.secrets_key_id, s.auth_password_sealed,
       s.max_age_hours
FROM queued q
LEFT JOIN sip_settings s ON q.taken AND s.tenant_id = q.tenant_id
LEFT JOIN extensions e ON q.taken AND e.tenant_id = q.tenant_id AND e.extension = q.extension
"""


@dataclass(frozen=True)
class FanOut:
    """A text for some extensions: each gets a MESSAGE if its tenant and it take texts by SIP."""

    message_id: MessageId
    tenant_id: TenantId
    extensions: Sequence[str]
    from_number: str
    did: str | None
    body: str
    held: bool
    kind: SipKind = "message"


@dataclass(frozen=True)
class SipJob:
    """A MESSAGE to send now, with where and how."""

    id: str
    tenant_id: TenantId
    message_id: MessageId | None
    kind: SipKind
    extension: str
    uri: str
    from_number: str
    did: str | None
    body: str
    parts_sent: int
    attempts: int
    age_seconds: float
    max_age_hours: float
    domain: str
    proxy: str
    auth_username: str | None
    auth_password: Sealed | None


@dataclass(frozen=True)
class SipDeliveryState:
    extension: str
    kind: SipKind
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


async def fan_out(
    conn: Connection, items: Sequence[FanOut], taker: Taker[SipJob] | None = None
) -> int:
    """Queue the MESSAGEs (one statement for all of them); how many were queued. What
    ``taker`` can send now it is given once this commits (inside `Database.transaction`)."""
    flat = [(item, extension) for item in items for extension in item.extensions]
    if not flat:
        return 0
    columns = (
        [item.message_id for item, _ in flat],
        [item.tenant_id for item, _ in flat],
        [item.kind for item, _ in flat],
        [extension for _, extension in flat],
        [item.from_number for item, _ in flat],
        [item.did for item, _ in flat],
        [item.body for item, _ in flat],
        ["held" if item.held else "pending" for item, _ in flat],
    )
    if taker is None or not can_defer():
        rows = await conn.fetch(_FAN_OUT, *columns)
        if any(r["status"] == "pending" for r in rows):
            await notify(conn, SIP)
        return len(rows)
    keys = [_phone(item.tenant_id, extension) for item, extension in flat]
    with taker.reserving(keys) as reservation:
        rows = await conn.fetch(_FAN_OUT_TAKING, *columns, taker.worker, reservation.free)
    taken = [_job(r) for r in rows if r["taken"]]
    held = {_phone(job.tenant_id, job.extension) for job in taken}
    reservation.keep_only(held)
    if taken:
        after_commit(lambda: taker.receive(taken, held), lambda: taker.release(held))
    if any(r["status"] == "pending" and not r["taken"] for r in rows):
        await notify(conn, SIP)
    return len(rows)


def _phone(tenant_id: str, extension: str) -> str:
    return f"{tenant_id}/{extension}"


def _job(r: Record) -> SipJob:
    return SipJob(
        id=r["id"],
        tenant_id=TenantId(r["tenant_id"]),
        message_id=None if r["message_id"] is None else MessageId(r["message_id"]),
        kind=r["kind"],
        extension=r["extension"],
        uri=r["uri"],
        from_number=r["from_number"],
        did=r["did"],
        body=r["body"],
        parts_sent=r["parts_sent"],
        attempts=r["attempts"],
        age_seconds=r["age_seconds"],
        max_age_hours=r["max_age_hours"],
        domain=r["domain"],
        proxy=r["proxy"],
        auth_username=r["auth_username"],
        auth_password=None
        if r["auth_password_sealed"] is None
        else Sealed(r["secrets_key_id"], r["auth_password_sealed"]),
    )


async def claim(conn: Connection, worker: str, limit: int, stale_seconds: float) -> list[SipJob]:
    return [_job(r) for r in await conn.fetch(_CLAIM, worker, limit, stale_seconds)]


async def progress(conn: Connection, job_id: str, worker: str, parts_sent: int) -> None:
    """Parts of a long text the phone acknowledged: a retry resumes after them."""
    await conn.execute(_PROGRESS, job_id, worker, parts_sent)


async def delivered(conn: Connection, done: Sequence[tuple[str, int]], worker: str) -> bool:
    """Answered 2xx: each (delivery, parts sent), only while ``worker`` still holds it.
    Whether later texts for the same phones were waiting for them (claimable now)."""
    rows = await conn.fetch(_DELIVERED, [d for d, _ in done], worker, [n for _, n in done])
    return any(r["followed"] for r in rows)


async def retry_later(
    conn: Connection, job_id: str, worker: str, delay: float, error: str, parts_sent: int
) -> None:
    await conn.execute(_RETRY_LATER, job_id, worker, error[:500], delay, parts_sent)


async def dead(conn: Connection, job_id: str, worker: str, error: str, parts_sent: int) -> bool:
    """Given up on; whether later texts for the same phone were waiting for it."""
    rows = await conn.fetch(_DEAD, job_id, worker, error[:500], parts_sent)
    return any(r["followed"] for r in rows)


async def has_held(conn: Connection, message_id: MessageId) -> bool:
    """Whether MESSAGEs of this text wait for its media (locked, for the caller to release)."""
    return bool(await conn.fetch(_HELD_FOR_MESSAGE, message_id))


async def release(conn: Connection, message_id: MessageId, body: str) -> None:
    """The text's media are stored: its MESSAGEs go, with ``body`` (the text and the links)."""
    await conn.execute(_RELEASE, message_id, body)
    await notify(conn, SIP)


async def give_up_tenant(conn: Connection, tenant_id: TenantId, reason: str) -> None:
    await conn.execute(_GIVE_UP_TENANT, tenant_id, reason)


async def due_now(conn: Connection, tenant_id: TenantId, extension: str) -> int:
    """Make the extension's waiting texts due now; how many there were."""
    status = await conn.execute(_DUE_NOW, tenant_id, extension)
    count = int(status.split()[-1])
    if count:
        await notify(conn, SIP)
    return count


async def for_message(conn: Connection, message_id: MessageId) -> list[SipDeliveryState]:
    return [
        SipDeliveryState(
            extension=r["extension"],
            kind=r["kind"],
            status=r["status"],
            attempts=r["attempts"],
            last_error=r["last_error"],
            delivered_at=r["delivered_at"],
        )
        for r in await conn.fetch(_FOR_MESSAGE, message_id)
    ]
