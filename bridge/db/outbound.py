"""Repository: outbound messages, the send queue, sender leases, idempotency keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridge.crypto import StoredSecrets
from bridge.db.notify import OUTBOUND
from bridge.db.pool import Connection, Record, notify
from bridge.db.sms_configs import stored_secrets
from bridge.models import Channel, ConfigId, MessageId, SendChannel, TenantId

SendState = Literal["queued", "done", "failed"]

_INSERT_MESSAGE = """
INSERT INTO messages (id, tenant_id, config_id, direction, status, status_rank, from_number,
    to_number, body, extensions, from_extension, segments, encoding, routing, num_media, channel,
    content_sid, content_variables)
VALUES ($1, $2, $3, 'outbound', 'accepted', 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
        $15)
RETURNING created_at
"""

# The sender's row is upserted (its pace may have changed with the number's settings), the
# text joins the end of its queue, and its history starts at `accepted`.
_QUEUE = """
WITH history AS (
    INSERT INTO message_status_history (message_id, status) VALUES ($1, 'accepted')),
sender AS (
    INSERT INTO senders (sender_key, config_id, mps) VALUES ($2, $3, $4)
    ON CONFLICT (sender_key) DO UPDATE SET mps = excluded.mps
    RETURNING sender_key)
INSERT INTO sends (message_id, sender_key, state) SELECT $1, sender_key, 'queued' FROM sender
"""

_DELETE_STALE_KEY = """
DELETE FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2 AND created_at < now() - interval '24 hours'
"""

_CLAIM_KEY = """
INSERT INTO idempotency_keys (tenant_id, key, request_hash, message_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, key) DO NOTHING
RETURNING message_id
"""

_KEY_HOLDER = """
SELECT request_hash, message_id FROM idempotency_keys WHERE tenant_id = $1 AND key = $2
"""

# A sender is due when its pace allows a send and the head of its queue is due; a lease this
# worker holds but is not running was left by a failure, and is taken again.
_CLAIM_SENDERS = """
UPDATE senders p SET claimed_by = $1, heartbeat_at = now()
WHERE p.sender_key IN (
    SELECT q.sender_key FROM senders q
    WHERE q.next_free_at <= now()
      AND (q.claimed_by IS NULL OR q.heartbeat_at < now() - make_interval(secs => $3)
           OR (q.claimed_by = $1 AND NOT q.sender_key = ANY ($4::text[])))
      AND (SELECT s.next_attempt_at FROM sends s
           WHERE s.sender_key = q.sender_key AND s.state = 'queued'
           ORDER BY s.seq LIMIT 1) <= now()
    ORDER BY q.next_free_at
    LIMIT $2
    FOR UPDATE OF q SKIP LOCKED)
RETURNING p.sender_key, p.next_free_at
"""

_BEAT = """
UPDATE senders SET heartbeat_at = now() WHERE sender_key = $1 AND claimed_by = $2 RETURNING 1
"""

_RELEASE_SENDER = """
UPDATE senders SET claimed_by = NULL, next_free_at = greatest(next_free_at, $3)
WHERE sender_key = $1 AND claimed_by = $2
"""


@dataclass(frozen=True)
class NewOutbound:
    id: MessageId
    tenant_id: TenantId
    config_id: ConfigId
    from_number: str
    to_number: str
    body: str
    from_extension: str | None
    segments: int
    encoding: str
    routing: dict[str, object]
    sender_key: str
    mps: float
    num_media: int = 0
    channel: SendChannel = "sms"
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None


async def insert(conn: Connection, m: NewOutbound) -> datetime:
    """The message (accepted), its place in its sender's queue, and a wake-up for the senders
    once committed; when it was stored."""
    created_at: datetime = await conn.fetchval(
        _INSERT_MESSAGE,
        m.id,
        m.tenant_id,
        m.config_id,
        m.from_number,
        m.to_number,
        m.body,
        [m.from_extension] if m.from_extension else [],
        m.from_extension,
        m.segments,
        m.encoding,
        json.dumps(m.routing),
        m.num_media,
        m.channel,
        m.content_sid,
        None if m.content_variables is None else json.dumps(m.content_variables),
    )
    await conn.execute(_QUEUE, m.id, m.sender_key, m.config_id, m.mps)
    await notify(conn, OUTBOUND)
    return created_at


async def remember_key(
    conn: Connection, tenant_id: TenantId, key: str, request_hash: str, message_id: MessageId
) -> tuple[str, MessageId] | None:
    """Claim an idempotency key; if it is taken (and younger than 24 h), its hash and message."""
    await conn.execute(_DELETE_STALE_KEY, tenant_id, key)
    if await conn.fetchrow(_CLAIM_KEY, tenant_id, key, request_hash, message_id) is not None:
        return None
    existing = await conn.fetchrow(_KEY_HOLDER, tenant_id, key)
    assert existing is not None
    return existing["request_hash"], MessageId(existing["message_id"])


async def claim_senders(
    conn: Connection,
    worker: str,
    limit: int,
    stale_seconds: float,
    running: Sequence[str] = (),
) -> list[tuple[str, datetime]]:
    """Lease senders whose first queued message is due and whose pacing allows a send; a
    lease this worker holds but is not ``running`` was left by a failure, and is taken again."""
    rows = await conn.fetch(_CLAIM_SENDERS, worker, limit, stale_seconds, list(running))
    return [(r["sender_key"], r["next_free_at"]) for r in rows]


async def beat(conn: Connection, sender_key: str, worker: str) -> bool:
    """Renew ``worker``'s lease on the sender; False if it no longer holds it."""
    return await conn.fetchval(_BEAT, sender_key, worker) is not None


async def release_sender(
    conn: Connection, sender_key: str, worker: str, next_free_at: datetime
) -> None:
    await conn.execute(_RELEASE_SENDER, sender_key, worker, next_free_at)


@dataclass(frozen=True)
class SendJob:
    """The first queued message of a sender, with what is needed to hand it to Twilio."""

    message_id: MessageId
    tenant_id: TenantId
    config_id: ConfigId
    to: str
    from_number: str
    body: str
    segments: int
    attempts: int
    attempt_started_at: datetime | None
    sender_kind: str
    account_sid: str
    api_key_sid: str | None
    secrets: StoredSecrets
    messaging_service_sid: str | None
    created_at: datetime
    mps: float
    media_tokens: list[str]
    webhook_token: str
    channel: SendChannel = "sms"
    content_sid: str | None = None
    content_variables: str | None = None


# How far into a sender's queue a fetch looks for texts to other recipients: the heads of
# the first few queued texts per text wanted or in flight (at least LOOKAHEAD_MIN, at most
# LOOKAHEAD_MAX); later ones wait until the queue before them drains. A shorter look only
# means less overlap, never another order: the look is always a prefix of the queue, so each
# recipient's first text in it is that recipient's next text. Every fetch reads the whole
# look, so it is kept in proportion: a look of a thousand for each text of a busy Messaging
# Service lane made PostgreSQL the bottleneck of the sending path.
LOOKAHEAD_PER_TEXT = 4
LOOKAHEAD_MIN = 64
LOOKAHEAD_MAX = 1000


def lookahead(limit: int, in_flight: int) -> int:
    return min(LOOKAHEAD_MAX, max(LOOKAHEAD_MIN, LOOKAHEAD_PER_TEXT * (limit + in_flight)))


_START_SENDS = """
WITH lease AS (
    UPDATE senders SET heartbeat_at = now() WHERE sender_key = $1 AND claimed_by = $5
    RETURNING 1),
queued AS (
    SELECT s.message_id, s.seq, s.attempts, s.attempt_started_at, s.next_attempt_at
    FROM sends s WHERE s.sender_key = $1 AND s.state = 'queued' ORDER BY s.seq LIMIT $4),
heads AS (
    SELECT DISTINCT ON (m.to_number) q.* FROM queued q JOIN messages m ON m.id = q.message_id
    ORDER BY m.to_number, q.seq),
picked AS (
    SELECT h.* FROM heads h
    WHERE h.next_attempt_at <= now() AND NOT h.message_id = ANY ($3::text[])
      AND EXISTS (SELECT FROM lease)
    ORDER BY h.seq LIMIT $2),
marked AS (
    UPDATE sends s SET attempt_started_at = coalesce(s.attempt_started_at, now()),
           attempts = s.attempts + 1
    FROM picked k WHERE s.message_id = k.message_id
    RETURNING s.message_id)
SELECT h.message_id, h.attempts, h.attempt_started_at, m.tenant_id, m.config_id, m.to_number,
       m.from_number, m.body, m.segments, m.routing, m.created_at, m.channel, m.content_sid,
       m.content_variables::text AS content_variables, c.account_sid, c.api_key_sid,
       c.secrets_key_id, c.auth_token_sealed, c.api_key_secret_sealed, p.mps,
       w.token AS webhook_token,
       coalesce((SELECT array_agg(o.token ORDER BY o.position) FROM outbound_media o
                 WHERE o.message_id = h.message_id), '{}') AS media_tokens
FROM picked h
JOIN marked USING (message_id)
JOIN messages m ON m.id = h.message_id
JOIN sms_configs c ON c.id = m.config_id
JOIN senders p ON p.sender_key = $1
JOIN webhook_tokens w ON w.config_id = c.id AND w.valid_until IS NULL
ORDER BY h.seq
"""

_RETRY = """
UPDATE sends SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3,
       attempt_started_at = CASE WHEN $4 THEN NULL ELSE attempt_started_at END
WHERE message_id = $1
"""

_FINISH = "UPDATE sends SET state = $2, last_error = $3 WHERE message_id = $1"

# Under each sid's lock (see statuses.lock_sid): record the sid (and the number a messaging
# service chose) and close the send.
_SENT = """
WITH locked AS (
    SELECT i.*, pg_advisory_xact_lock(hashtextextended(i.config_id || ':' || i.sid, 0))
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
         AS i(message_id, config_id, sid, from_number, channel)),
done AS (
    UPDATE sends s SET state = 'done', last_error = NULL FROM locked l
    WHERE s.message_id = l.message_id)
UPDATE messages m SET twilio_sid = l.sid, from_number = coalesce(l.from_number, m.from_number),
       channel = coalesce(l.channel, m.channel), updated_at = now()
FROM locked l WHERE m.id = l.message_id
"""

_KNOWN_SIDS = """
SELECT twilio_sid FROM messages WHERE config_id = $1 AND twilio_sid = ANY ($2::text[])
"""

_QUEUE_DEPTH = "SELECT count(*) FROM sends WHERE state = 'queued'"

_QUEUED_FOR_CONFIG = """
SELECT m.id FROM sends s JOIN messages m ON m.id = s.message_id
WHERE m.config_id = $1 AND s.state = 'queued'
FOR UPDATE OF s
"""


async def start_sends(
    conn: Connection, sender_key: str, worker: str, limit: int, in_flight: Sequence[str] = ()
) -> list[SendJob]:
    """Take the sender's next due texts and mark each attempted, while ``worker`` holds the
    sender's lease (renewing it); none if it does not.

    In queue order, at most one per recipient and none to a recipient that has one
    ``in_flight``: each conversation's texts reach Twilio one after another, in order, while
    texts to different recipients may overlap. A retry waiting out its backoff holds back the
    later texts to its recipient, not the sender's other texts.

    The mark is committed before any request leaves, so that a crash means "reconcile before
    resending"; a text marked but not sent yet (its pacing slot not reached when the process
    stopped) costs one look at Twilio's list, never a second send. Each job carries the mark
    as it was before, which says whether an earlier attempt may have reached Twilio. One
    statement for all of it: it runs on the hot path."""
    rows = await conn.fetch(
        _START_SENDS,
        sender_key,
        limit,
        list(in_flight),
        lookahead(limit, len(in_flight)),
        worker,
    )
    return [_job(row) for row in rows]


def _job(row: Record) -> SendJob:
    routing = json.loads(row["routing"])
    kind = str(routing.get("sender_kind", "number"))
    return SendJob(
        message_id=MessageId(row["message_id"]),
        tenant_id=TenantId(row["tenant_id"]),
        config_id=ConfigId(row["config_id"]),
        to=row["to_number"],
        from_number=row["from_number"],
        body=row["body"],
        segments=row["segments"],
        attempts=row["attempts"],
        attempt_started_at=row["attempt_started_at"],
        sender_kind=kind,
        account_sid=row["account_sid"],
        api_key_sid=row["api_key_sid"],
        secrets=stored_secrets(row),
        messaging_service_sid=row["from_number"] if kind == "messaging_service" else None,
        created_at=row["created_at"],
        mps=row["mps"],
        media_tokens=list(row["media_tokens"]),
        webhook_token=row["webhook_token"],
        channel="whatsapp" if row["channel"] == "whatsapp" else "sms",
        content_sid=row["content_sid"],
        content_variables=row["content_variables"],
    )


async def retry_send(
    conn: Connection, message_id: MessageId, delay: float, error: str, *, certain: bool
) -> None:
    """Try again later; ``certain`` that Twilio did not take it clears the reconcile mark."""
    await conn.execute(_RETRY, message_id, delay, error[:500], certain)


async def finish_send(
    conn: Connection, message_id: MessageId, state: SendState, error: str | None = None
) -> None:
    await conn.execute(_FINISH, message_id, state, error)


@dataclass(frozen=True)
class Sent:
    """Twilio took a text: its sid and the number a messaging service chose."""

    message_id: MessageId
    config_id: ConfigId
    sid: str
    from_number: str | None
    channel: Channel | None = None


async def sent(conn: Connection, batch: Sequence[Sent]) -> None:
    """Record each text's sid and close its send; one statement for the batch."""
    await conn.execute(
        _SENT,
        [t.message_id for t in batch],
        [t.config_id for t in batch],
        [t.sid for t in batch],
        [t.from_number for t in batch],
        [t.channel for t in batch],
    )


async def known_sids(conn: Connection, config_id: ConfigId, sids: Sequence[str]) -> set[str]:
    """Which of these sids already belong to a message of the configuration."""
    return {r["twilio_sid"] for r in await conn.fetch(_KNOWN_SIDS, config_id, list(sids))}


async def queue_depth(conn: Connection) -> int:
    depth: int = await conn.fetchval(_QUEUE_DEPTH)
    return depth


async def queued_for_config(conn: Connection, config_id: ConfigId) -> list[MessageId]:
    """Texts still waiting to be sent through this configuration, locked."""
    return [MessageId(r["id"]) for r in await conn.fetch(_QUEUED_FOR_CONFIG, config_id)]
