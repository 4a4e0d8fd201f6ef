"""Repository: the inbound media fetch queue."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.db.pool import Connection
from bridge.db.sms_configs import StoredSecrets
from bridge.models import ConfigId, MessageId, TenantId


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
    credential_type: str
    api_key_sid: str | None
    secrets: StoredSecrets


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


async def claim(conn: Connection, worker: str, limit: int, stale_seconds: float) -> list[MediaJob]:
    rows = await conn.fetch(_CLAIM, worker, limit, stale_seconds)
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
            credential_type=r["credential_type"],
            api_key_sid=r["api_key_sid"],
            secrets=StoredSecrets.of(r),
        )
        for r in rows
    ]


async def lock_message(conn: Connection, message_id: MessageId) -> None:
    """Serialises the completion check of one message's media across workers."""
    await conn.execute("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", message_id)


async def stored(
    conn: Connection,
    job: MediaJob,
    worker: str,
    content_type: str,
    data: bytes,
    sha256: str,
) -> None:
    await conn.execute(
        "UPDATE message_media SET status = 'stored', content_type = $4, size = $5, sha256 = $6, "
        "data = $7, claimed_by = NULL, last_error = NULL "
        "WHERE message_id = $1 AND position = $2 AND claimed_by = $3",
        job.message_id,
        job.position,
        worker,
        content_type,
        len(data),
        sha256,
        data,
    )


async def failed(
    conn: Connection, job: MediaJob, worker: str, error: str, retry_in: float | None
) -> None:
    """Retry later, or (``retry_in`` None) give up and mark the item missing."""
    await conn.execute(
        "UPDATE message_media SET status = CASE WHEN $5::float8 IS NULL THEN 'failed' "
        "ELSE 'pending' END, last_error = $4, claimed_by = NULL, "
        "next_attempt_at = now() + make_interval(secs => coalesce($5::float8, 0)) "
        "WHERE message_id = $1 AND position = $2 AND claimed_by = $3",
        job.message_id,
        job.position,
        worker,
        error[:500],
        retry_in,
    )


async def pending_left(conn: Connection, message_id: MessageId) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM message_media WHERE message_id = $1 AND status = 'pending'",
        message_id,
    )
    return count
