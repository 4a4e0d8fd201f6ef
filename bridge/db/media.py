"""Repository: media — inbound MMS items and their fetch queue, and the outbound files that
Twilio fetches from the public listener."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.crypto import StoredSecrets
from bridge.db.pool import Connection
from bridge.db.sms_configs import stored_secrets
from bridge.models import ConfigId, MediaStatus, MessageId, TenantId

_INSERT_INBOUND = """
INSERT INTO message_media (message_id, position, status, source_url, content_type, last_error)
VALUES ($1, $2, $3, $4, $5, $6)
"""

# As for events: rows this worker still holds between batches are leftovers of a failed one.
_CLAIM = """
UPDATE message_media m SET claimed_by = $1, heartbeat_at = now(), attempts = m.attempts + 1
FROM messages msg JOIN sms_configs c ON c.id = msg.config_id
WHERE msg.id = m.message_id AND (m.message_id, m.position) IN (
    SELECT q.message_id, q.position FROM message_media q
    WHERE q.status = 'pending' AND q.next_attempt_at <= now()
      AND (q.claimed_by IS NULL OR q.claimed_by = $1
           OR q.heartbeat_at < now() - make_interval(secs => $3))
    ORDER BY q.next_attempt_at
    LIMIT $2
    FOR UPDATE OF q SKIP LOCKED)
RETURNING m.message_id, m.position, m.source_url, m.content_type, m.attempts, msg.tenant_id,
          c.id AS config_id, c.account_sid, c.credential_type, c.api_key_sid, c.secrets_key_id,
          c.auth_token_sealed, c.api_key_secret_sealed
"""

_LOCK_MESSAGE = "SELECT 1 FROM messages WHERE id = $1 FOR UPDATE"

_STORED = """
UPDATE message_media SET status = 'stored', content_type = $4, size = $5, sha256 = $6, data = $7,
       claimed_by = NULL, last_error = NULL
WHERE message_id = $1 AND position = $2 AND claimed_by = $3
"""

_FAILED = """
UPDATE message_media SET status = CASE WHEN $5::float8 IS NULL THEN 'failed' ELSE 'pending' END,
       last_error = $4, claimed_by = NULL,
       next_attempt_at = now() + make_interval(secs => coalesce($5::float8, 0))
WHERE message_id = $1 AND position = $2 AND claimed_by = $3
"""

_ITEM_COUNT = "SELECT count(*) FROM message_media WHERE message_id = $1"

_PENDING_LEFT = """
SELECT count(*) FROM message_media WHERE message_id = $1 AND status = 'pending'
"""

_STORED_ITEM = """
SELECT mm.status, mm.content_type, mm.data FROM message_media mm
JOIN messages m ON m.id = mm.message_id
WHERE m.tenant_id = $1 AND mm.message_id = $2 AND mm.position = $3
"""

_INSERT_OUTBOUND_FILE = """
INSERT INTO outbound_media (message_id, position, token, content_type, data, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
"""

_INSERT_OUTBOUND_ITEM = """
INSERT INTO message_media (message_id, position, status, content_type, size)
VALUES ($1, $2, 'stored', $3, $4)
"""

# What the public listener serves: an outbound MMS's file (for Twilio), or an inbound item
# linked from a MESSAGE to a phone; each under its token until it expires.
_PUBLIC_FILE = """
SELECT content_type, data FROM outbound_media WHERE token = $1 AND expires_at > now()
UNION ALL
SELECT mm.content_type, mm.data FROM media_links l
JOIN message_media mm ON mm.message_id = l.message_id AND mm.position = l.position
WHERE l.token = $1 AND l.expires_at > now() AND mm.status = 'stored'
LIMIT 1
"""

# A link for each stored item of the message (the existing one if it has one).
_LINK_ITEMS = """
INSERT INTO media_links (token, message_id, position, expires_at)
SELECT t.token, $1, mm.position, now() + make_interval(secs => $3)
FROM message_media mm JOIN unnest($2::text[]) WITH ORDINALITY AS t(token, n)
     ON t.n = mm.position + 1
WHERE mm.message_id = $1 AND mm.status = 'stored'
RETURNING position, token
"""


@dataclass(frozen=True)
class MediaJob:
    """One media item to fetch, with the credentials of the configuration it came in on."""

    message_id: MessageId
    position: int
    source_url: str
    content_type: str | None
    attempts: int
    tenant_id: TenantId
    config_id: ConfigId
    account_sid: str
    api_key_sid: str | None
    secrets: StoredSecrets


@dataclass(frozen=True)
class MediaFile:
    """A media item's bytes and type, as served."""

    content_type: str
    data: bytes


@dataclass(frozen=True)
class StoredItem:
    """An inbound or outbound item of a message: its bytes when they are stored."""

    status: MediaStatus
    file: MediaFile | None


@dataclass(frozen=True)
class OutboundFile:
    """A file of an outbound MMS, served to Twilio under its unguessable token."""

    token: str
    content_type: str
    data: bytes


async def insert_inbound(
    conn: Connection, message_id: MessageId, items: Sequence[tuple[str, str | None]], fail_from: int
) -> None:
    """One pending row per media URL; items from ``fail_from`` on are over the limit."""
    await conn.executemany(
        _INSERT_INBOUND,
        [
            (
                message_id,
                i,
                "pending" if i < fail_from else "failed",
                url,
                content_type,
                None if i < fail_from else "more media items than media_max_items",
            )
            for i, (url, content_type) in enumerate(items)
        ],
    )


async def claim(conn: Connection, worker: str, limit: int, stale_seconds: float) -> list[MediaJob]:
    return [
        MediaJob(
            message_id=MessageId(r["message_id"]),
            position=r["position"],
            source_url=r["source_url"],
            content_type=r["content_type"],
            attempts=r["attempts"],
            tenant_id=TenantId(r["tenant_id"]),
            config_id=ConfigId(r["config_id"]),
            account_sid=r["account_sid"],
            api_key_sid=r["api_key_sid"],
            secrets=stored_secrets(r),
        )
        for r in await conn.fetch(_CLAIM, worker, limit, stale_seconds)
    ]


async def lock_message(conn: Connection, message_id: MessageId) -> None:
    """Serialises the completion check of one message's media across workers."""
    await conn.execute(_LOCK_MESSAGE, message_id)


async def stored(
    conn: Connection, job: MediaJob, worker: str, file: MediaFile, sha256: str
) -> None:
    await conn.execute(
        _STORED,
        job.message_id,
        job.position,
        worker,
        file.content_type,
        len(file.data),
        sha256,
        file.data,
    )


async def failed(
    conn: Connection, job: MediaJob, worker: str, error: str, retry_in: float | None
) -> None:
    """Retry later, or (``retry_in`` None) give up and mark the item missing."""
    await conn.execute(_FAILED, job.message_id, job.position, worker, error[:500], retry_in)


async def pending_left(conn: Connection, message_id: MessageId) -> int:
    count: int = await conn.fetchval(_PENDING_LEFT, message_id)
    return count


async def stored_item(
    conn: Connection, tenant_id: TenantId, message_id: MessageId, index: int
) -> StoredItem | None:
    row = await conn.fetchrow(_STORED_ITEM, tenant_id, message_id, index)
    if row is None:
        return None
    if row["status"] != "stored" or row["data"] is None:
        return StoredItem(row["status"], None)
    content_type = row["content_type"] or "application/octet-stream"
    return StoredItem("stored", MediaFile(content_type, bytes(row["data"])))


async def insert_outbound(
    conn: Connection, message_id: MessageId, files: Sequence[OutboundFile], ttl_seconds: float
) -> None:
    """An outbound MMS's files (served to Twilio until they expire) and its media items."""
    await conn.executemany(
        _INSERT_OUTBOUND_FILE,
        [
            (message_id, i, f.token, f.content_type, f.data, ttl_seconds)
            for i, f in enumerate(files)
        ],
    )
    await conn.executemany(
        _INSERT_OUTBOUND_ITEM,
        [(message_id, i, f.content_type, len(f.data)) for i, f in enumerate(files)],
    )


async def public_file(conn: Connection, token: str) -> MediaFile | None:
    row = await conn.fetchrow(_PUBLIC_FILE, token)
    if row is None:
        return None
    return MediaFile(row["content_type"] or "application/octet-stream", bytes(row["data"]))


async def link_items(conn: Connection, message_id: MessageId, ttl_seconds: float) -> dict[int, str]:
    """Unguessable, expiring links to the message's stored items, by position."""
    count: int = await conn.fetchval(_ITEM_COUNT, message_id)
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    rows = await conn.fetch(_LINK_ITEMS, message_id, tokens, ttl_seconds)
    return {r["position"]: r["token"] for r in rows}
