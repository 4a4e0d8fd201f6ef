"""Repository: messages — inbound ones as received, reads with their media, history and
deliveries, and the conversation affinity that routes replies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.db import sip_deliveries
from bridge.db.pool import Connection, Record
from bridge.models import (
    Channel,
    ConfigId,
    DeliveryState,
    EventId,
    InboundStatus,
    MediaItem,
    Message,
    MessageFilter,
    MessageId,
    SendChannel,
    StatusChange,
    TenantId,
)
from bridge.models.twilio_codes import describe

COLUMNS = (
    "id, tenant_id, config_id, direction, status, from_number, to_number, body, extensions, "
    "segments, encoding, twilio_sid, error_code, error_message, routing, created_at, updated_at, "
    "num_media, channel, content_sid, content_variables"
)

_INSERT_INBOUND = """
INSERT INTO messages (id, tenant_id, config_id, direction, status, from_number, to_number, body,
    extensions, segments, encoding, num_media, twilio_sid, routing, params, channel)
SELECT id, tenant_id, config_id, 'inbound', status, from_number, to_number, body,
       ARRAY(SELECT jsonb_array_elements_text(extensions)), segments, encoding, num_media,
       twilio_sid, routing, params, channel
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::jsonb[], $9::int[], $10::text[], $11::int[], $12::text[], $13::jsonb[],
            $14::jsonb[], $15::text[])
     AS u(id, tenant_id, config_id, status, from_number, to_number, body, extensions, segments,
          encoding, num_media, twilio_sid, routing, params, channel)
ON CONFLICT (config_id, twilio_sid) WHERE twilio_sid IS NOT NULL DO NOTHING
RETURNING id, created_at
"""

# Per query, the extension that last texted the remote from the DID on the conversation's
# channel, Twilio having taken it.
_AFFINITY = """
SELECT q.i, (SELECT m.from_extension FROM messages m
             WHERE m.tenant_id = q.tenant_id AND m.direction = 'outbound'
               AND m.from_number = q.did AND m.to_number = q.remote AND m.channel = q.channel
               AND m.twilio_sid IS NOT NULL AND m.from_extension IS NOT NULL
               AND m.created_at > now() - make_interval(hours => q.hours)
             ORDER BY m.created_at DESC LIMIT 1) AS extension
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[])
     WITH ORDINALITY AS q(tenant_id, did, remote, hours, channel, i)
"""

# One probe of messages_whatsapp_window: did the remote write to the number by WhatsApp within
# the window? (design §12)
_WHATSAPP_WINDOW = """
SELECT max(created_at) FROM messages
WHERE config_id = $1 AND to_number = $2 AND from_number = $3
  AND direction = 'inbound' AND channel = 'whatsapp'
  AND created_at > now() - make_interval(secs => $4)
"""

_GET = f"SELECT {COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2"

_HISTORY = """
SELECT status, error_code, at FROM message_status_history WHERE message_id = $1 ORDER BY id
"""

_DELIVERIES = """
SELECT id, type, delivery_status, attempts, last_error, delivered_at FROM events
WHERE message_id = $1 ORDER BY seq
"""

_MEDIA_OF = """
SELECT message_id, position, status, content_type, size FROM message_media
WHERE message_id = ANY ($1::text[]) ORDER BY message_id, position
"""

_LIST_PAGE = f"""
SELECT {COLUMNS} FROM messages
WHERE tenant_id = $1 AND ($2::text IS NULL OR id < $2) AND ($3::text IS NULL OR direction = $3)
  AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR config_id = $5)
  AND ($6::text IS NULL OR from_number = $6 OR to_number = $6)
  AND ($8::text IS NULL OR channel = $8)
ORDER BY id DESC LIMIT $7
"""


@dataclass(frozen=True)
class NewInbound:
    """An inbound message as the webhook received it, with its routing decision."""

    id: MessageId
    tenant_id: TenantId
    config_id: ConfigId
    status: InboundStatus
    from_number: str
    to_number: str
    body: str
    extensions: Sequence[str]
    segments: int
    encoding: str
    num_media: int
    twilio_sid: str
    routing: dict[str, object]
    params: Sequence[tuple[str, str]]
    channel: Channel = "sms"

    def as_stored(self, created_at: datetime) -> Message:
        """The message as just stored: reading it back would cost a round trip."""
        return Message(
            id=self.id,
            tenant_id=self.tenant_id,
            config_id=self.config_id,
            direction="inbound",
            status=self.status,
            channel=self.channel,
            from_=self.from_number,
            to=self.to_number,
            body=self.body,
            extensions=list(self.extensions),
            segments=self.segments,
            encoding=self.encoding,
            media=[],
            twilio_sid=self.twilio_sid,
            error_code=None,
            error_message=None,
            routing=self.routing,
            created_at=created_at,
            updated_at=created_at,
        )


async def insert_inbound(conn: Connection, batch: Sequence[NewInbound]) -> list[datetime | None]:
    """Insert each unless its configuration already has its MessageSid (also earlier in the
    batch); per item, its time when inserted. One statement for the whole batch."""
    if not batch:
        return []
    rows = await conn.fetch(
        _INSERT_INBOUND,
        [m.id for m in batch],
        [m.tenant_id for m in batch],
        [m.config_id for m in batch],
        [m.status for m in batch],
        [m.from_number for m in batch],
        [m.to_number for m in batch],
        [m.body for m in batch],
        [json.dumps(list(m.extensions)) for m in batch],
        [m.segments for m in batch],
        [m.encoding for m in batch],
        [m.num_media for m in batch],
        [m.twilio_sid for m in batch],
        [json.dumps(m.routing) for m in batch],
        [json.dumps([list(p) for p in m.params]) for m in batch],
        [m.channel for m in batch],
    )
    created: dict[str, datetime] = {row["id"]: row["created_at"] for row in rows}
    return [created.get(m.id) for m in batch]


@dataclass(frozen=True)
class AffinityQuery:
    tenant_id: TenantId
    did: str
    remote: str
    hours: int
    channel: SendChannel = "sms"


async def affinity_extensions(
    conn: Connection, queries: Sequence[AffinityQuery]
) -> list[str | None]:
    """Per query, the extension that most recently texted ``remote`` from ``did`` within
    ``hours`` (Twilio took the text); one round trip for all of them."""
    wanted = [q for q in queries if q.hours > 0]
    if not wanted:
        return [None] * len(queries)
    rows = await conn.fetch(
        _AFFINITY,
        [q.tenant_id for q in wanted],
        [q.did for q in wanted],
        [q.remote for q in wanted],
        [q.hours for q in wanted],
        [q.channel for q in wanted],
    )
    found = {wanted[row["i"] - 1]: row["extension"] for row in rows}
    return [found.get(q) for q in queries]


async def whatsapp_window_opened(
    conn: Connection, config_id: ConfigId, number: str, remote: str, seconds: float
) -> datetime | None:
    """When ``remote`` last wrote to ``number`` by WhatsApp, if within ``seconds``."""
    opened: datetime | None = await conn.fetchval(
        _WHATSAPP_WINDOW, config_id, number, remote, seconds
    )
    return opened


def message_of(row: Record, media: list[MediaItem], history: list[StatusChange] | None) -> Message:
    """The message of a row with the columns of COLUMNS."""
    return Message(
        id=MessageId(row["id"]),
        tenant_id=TenantId(row["tenant_id"]),
        config_id=None if row["config_id"] is None else ConfigId(row["config_id"]),
        direction=row["direction"],
        status=row["status"],
        channel=row["channel"],
        from_=row["from_number"],
        to=row["to_number"],
        body=row["body"],
        content_sid=row["content_sid"],
        content_variables=None
        if row["content_variables"] is None
        else json.loads(row["content_variables"]),
        extensions=list(row["extensions"]),
        segments=row["segments"],
        encoding=row["encoding"],
        media=media,
        twilio_sid=row["twilio_sid"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        error_advice=_advice(row["error_code"]),
        routing=json.loads(row["routing"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status_history=history,
    )


def _advice(code: int | None) -> str | None:
    described = describe(code)
    return None if described is None else described.advice


async def media_of(conn: Connection, rows: Sequence[Record]) -> dict[str, list[MediaItem]]:
    """The media descriptors of these message rows (one query, none if no row has media)."""
    found: dict[str, list[MediaItem]] = {r["id"]: [] for r in rows}
    with_media = [r["id"] for r in rows if r["num_media"]]
    if not with_media:
        return found
    for r in await conn.fetch(_MEDIA_OF, with_media):
        found[r["message_id"]].append(
            MediaItem(
                index=r["position"],
                content_type=r["content_type"],
                size=r["size"],
                status=r["status"],
            )
        )
    return found


async def messages_of(conn: Connection, rows: Sequence[Record]) -> list[Message]:
    """The messages of these rows, their media read in one query."""
    media = await media_of(conn, rows)
    return [message_of(r, media[r["id"]], None) for r in rows]


async def get(
    conn: Connection, tenant_id: TenantId, message_id: MessageId, *, history: bool = True
) -> Message | None:
    row = await conn.fetchrow(_GET, tenant_id, message_id)
    if row is None:
        return None
    if not history:
        return (await messages_of(conn, [row]))[0]
    changes = [
        StatusChange(status=r["status"], error_code=r["error_code"], at=r["at"])
        for r in await conn.fetch(_HISTORY, message_id)
    ]
    media = await media_of(conn, [row])
    message = message_of(row, media[row["id"]], changes)
    message.deliveries = [
        DeliveryState(
            event_id=EventId(r["id"]),
            type=r["type"],
            status=r["delivery_status"],
            attempts=r["attempts"],
            last_error=r["last_error"],
            delivered_at=r["delivered_at"],
        )
        for r in await conn.fetch(_DELIVERIES, message_id)
    ]
    message.deliveries += [
        DeliveryState(
            channel="sip",
            extension=d.extension,
            type=d.kind,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            delivered_at=d.delivered_at,
        )
        for d in await sip_deliveries.for_message(conn, message_id)
    ]
    return message


async def list_page(
    conn: Connection, tenant_id: TenantId, f: MessageFilter, before: str | None, limit: int
) -> list[Message]:
    """Newest first; ``before`` is the cursor (the last id of the previous page)."""
    rows = await conn.fetch(
        _LIST_PAGE,
        tenant_id,
        before,
        f.direction,
        f.status,
        f.config_id,
        f.number,
        limit,
        f.channel,
    )
    return await messages_of(conn, rows)
