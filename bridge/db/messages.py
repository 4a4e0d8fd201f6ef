"""Repository: messages, their media and status history, opt-outs, early status callbacks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bridge.db.pool import Connection, Record
from bridge.models import (
    ConfigId,
    DeliveryState,
    EventId,
    MediaItem,
    Message,
    MessageId,
    OptOut,
    StatusChange,
    TenantId,
)

MESSAGE_COLUMNS = (
    "id, tenant_id, config_id, direction, status, from_number, to_number, body, extensions, "
    "segments, encoding, twilio_sid, error_code, error_message, routing, created_at, updated_at"
)


@dataclass(frozen=True)
class NewInbound:
    """An inbound message as the webhook received it, with its routing decision."""

    id: MessageId
    tenant_id: TenantId
    config_id: ConfigId
    status: str
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


async def insert_inbound(conn: Connection, batch: Sequence[NewInbound]) -> list[datetime | None]:
    """Insert each unless its configuration already has its MessageSid (also earlier in the
    batch); per item, its time when inserted. One statement for the whole batch."""
    if not batch:
        return []
    rows = await conn.fetch(
        "INSERT INTO messages (id, tenant_id, config_id, direction, status, from_number, "
        "to_number, body, extensions, segments, encoding, num_media, twilio_sid, routing, params) "
        "SELECT id, tenant_id, config_id, 'inbound', status, from_number, to_number, body, "
        "ARRAY(SELECT jsonb_array_elements_text(extensions)), segments, encoding, num_media, "
        "twilio_sid, routing, params "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
        "$7::text[], $8::jsonb[], $9::int[], $10::text[], $11::int[], $12::text[], $13::jsonb[], "
        "$14::jsonb[]) AS u(id, tenant_id, config_id, status, from_number, to_number, body, "
        "extensions, segments, encoding, num_media, twilio_sid, routing, params) "
        "ON CONFLICT (config_id, twilio_sid) WHERE twilio_sid IS NOT NULL DO NOTHING "
        "RETURNING id, created_at",
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
    )
    created: dict[str, datetime] = {row["id"]: row["created_at"] for row in rows}
    return [created.get(m.id) for m in batch]


async def insert_media(
    conn: Connection, message_id: MessageId, items: Sequence[tuple[str, str | None]], fail_from: int
) -> None:
    """One pending row per media URL; items from ``fail_from`` on are over the limit."""
    await conn.executemany(
        "INSERT INTO message_media (message_id, position, status, source_url, content_type, "
        "last_error) VALUES ($1, $2, $3, $4, $5, $6)",
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


@dataclass(frozen=True)
class AffinityQuery:
    tenant_id: TenantId
    did: str
    remote: str
    hours: int


async def affinity_extensions(
    conn: Connection, queries: Sequence[AffinityQuery]
) -> list[str | None]:
    """Per query, the extension that most recently texted ``remote`` from ``did`` within
    ``hours`` (Twilio took the text); one round trip for all of them."""
    wanted = [q for q in queries if q.hours > 0]
    if not wanted:
        return [None] * len(queries)
    rows = await conn.fetch(
        "SELECT q.i, (SELECT m.from_extension FROM messages m WHERE m.tenant_id = q.tenant_id "
        "AND m.direction = 'outbound' AND m.from_number = q.did AND m.to_number = q.remote "
        "AND m.twilio_sid IS NOT NULL AND m.from_extension IS NOT NULL "
        "AND m.created_at > now() - make_interval(hours => q.hours) "
        "ORDER BY m.created_at DESC LIMIT 1) AS extension "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]) "
        "WITH ORDINALITY AS q(tenant_id, did, remote, hours, i)",
        [q.tenant_id for q in wanted],
        [q.did for q in wanted],
        [q.remote for q in wanted],
        [q.hours for q in wanted],
    )
    found = {wanted[row["i"] - 1]: row["extension"] for row in rows}
    return [found.get(q) for q in queries]


async def affinity_extension(
    conn: Connection, tenant_id: TenantId, did: str, remote: str, hours: int
) -> str | None:
    """The extension that most recently texted ``remote`` from ``did`` (Twilio took it)."""
    query = AffinityQuery(tenant_id, did, remote, hours)
    return (await affinity_extensions(conn, [query]))[0]


def _message(row: Record, media: list[MediaItem], history: list[StatusChange] | None) -> Message:
    return Message(
        id=MessageId(row["id"]),
        tenant_id=TenantId(row["tenant_id"]),
        config_id=None if row["config_id"] is None else ConfigId(row["config_id"]),
        direction=row["direction"],
        status=row["status"],
        from_=row["from_number"],
        to=row["to_number"],
        body=row["body"],
        extensions=list(row["extensions"]),
        segments=row["segments"],
        encoding=row["encoding"],
        media=media,
        twilio_sid=row["twilio_sid"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        routing=json.loads(row["routing"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status_history=history,
    )


async def _media_of(conn: Connection, ids: list[str]) -> dict[str, list[MediaItem]]:
    found: dict[str, list[MediaItem]] = {i: [] for i in ids}
    for r in await conn.fetch(
        "SELECT message_id, position, status, content_type, size FROM message_media "
        "WHERE message_id = ANY ($1::text[]) ORDER BY message_id, position",
        ids,
    ):
        found[r["message_id"]].append(
            MediaItem(
                index=r["position"],
                content_type=r["content_type"],
                size=r["size"],
                status=r["status"],
            )
        )
    return found


async def get(
    conn: Connection, tenant_id: TenantId, message_id: MessageId, *, history: bool = True
) -> Message | None:
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        message_id,
    )
    if row is None:
        return None
    changes = None
    if history:
        changes = [
            StatusChange(status=r["status"], error_code=r["error_code"], at=r["at"])
            for r in await conn.fetch(
                "SELECT status, error_code, at FROM message_status_history "
                "WHERE message_id = $1 ORDER BY id",
                message_id,
            )
        ]
    media = await _media_of(conn, [row["id"]])
    message = _message(row, media[row["id"]], changes)
    if history:
        message.deliveries = [
            DeliveryState(
                event_id=EventId(r["id"]),
                type=r["type"],
                status=r["delivery_status"],
                attempts=r["attempts"],
                last_error=r["last_error"],
                delivered_at=r["delivered_at"],
            )
            for r in await conn.fetch(
                "SELECT id, type, delivery_status, attempts, last_error, delivered_at "
                "FROM events WHERE message_id = $1 ORDER BY seq",
                message_id,
            )
        ]
    return message


@dataclass(frozen=True)
class MessageFilter:
    direction: str | None = None
    status: str | None = None
    config_id: str | None = None
    number: str | None = None


async def list_page(
    conn: Connection, tenant_id: TenantId, f: MessageFilter, before: str | None, limit: int
) -> list[Message]:
    """Newest first; ``before`` is the cursor (the last id of the previous page)."""
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 "
        "AND ($2::text IS NULL OR id < $2) AND ($3::text IS NULL OR direction = $3) "
        "AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR config_id = $5) "
        "AND ($6::text IS NULL OR from_number = $6 OR to_number = $6) "
        "ORDER BY id DESC LIMIT $7",
        tenant_id,
        before,
        f.direction,
        f.status,
        f.config_id,
        f.number,
        limit,
    )
    media = await _media_of(conn, [r["id"] for r in rows])
    return [_message(r, media[r["id"]], None) for r in rows]


async def media_data(
    conn: Connection, tenant_id: TenantId, message_id: MessageId, index: int
) -> Record | None:
    return await conn.fetchrow(
        "SELECT mm.status, mm.content_type, mm.data FROM message_media mm "
        "JOIN messages m ON m.id = mm.message_id "
        "WHERE m.tenant_id = $1 AND mm.message_id = $2 AND mm.position = $3",
        tenant_id,
        message_id,
        index,
    )


async def set_opt_out(
    conn: Connection, config_id: ConfigId, tenant_id: TenantId, remote: str, keyword: str
) -> None:
    await conn.execute(
        "INSERT INTO opt_outs (config_id, tenant_id, remote_number, keyword) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (config_id, remote_number) "
        "DO UPDATE SET keyword = excluded.keyword, opted_out_at = now()",
        config_id,
        tenant_id,
        remote,
        keyword,
    )


async def clear_opt_out(conn: Connection, config_id: ConfigId, remote: str) -> None:
    await conn.execute(
        "DELETE FROM opt_outs WHERE config_id = $1 AND remote_number = $2", config_id, remote
    )


async def is_opted_out(conn: Connection, config_id: ConfigId, remote: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM opt_outs WHERE config_id = $1 AND remote_number = $2)",
        config_id,
        remote,
    )
    return found


async def list_opt_outs(
    conn: Connection, tenant_id: TenantId, after: tuple[str, str] | None, limit: int
) -> list[OptOut]:
    rows = await conn.fetch(
        "SELECT config_id, remote_number, keyword, opted_out_at FROM opt_outs "
        "WHERE tenant_id = $1 AND ($2::text IS NULL OR (config_id, remote_number) > ($2, $3)) "
        "ORDER BY config_id, remote_number LIMIT $4",
        tenant_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [
        OptOut(
            config_id=ConfigId(r["config_id"]),
            number=r["remote_number"],
            keyword=r["keyword"],
            opted_out_at=r["opted_out_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class StatusTarget:
    """The outbound message a status callback is about."""

    id: MessageId
    tenant_id: TenantId
    status_rank: int
    from_number: str
    to_number: str
    created_at: datetime


async def lock_sid(conn: Connection, config_id: ConfigId, twilio_sid: str) -> None:
    """Serialise "learn a message's sid" against "a callback for that sid arrives early":
    without it a callback could be kept as early just after the sender took the early ones."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))", config_id, twilio_sid
    )


async def outbound_by_sid(
    conn: Connection, config_id: ConfigId, twilio_sid: str
) -> StatusTarget | None:
    row = await conn.fetchrow(
        "SELECT id, tenant_id, status_rank, from_number, to_number, created_at FROM messages "
        "WHERE config_id = $1 AND twilio_sid = $2 AND direction = 'outbound' FOR UPDATE",
        config_id,
        twilio_sid,
    )
    if row is None:
        return None
    return StatusTarget(
        MessageId(row["id"]),
        TenantId(row["tenant_id"]),
        row["status_rank"],
        row["from_number"],
        row["to_number"],
        row["created_at"],
    )


@dataclass(frozen=True)
class StatusMove:
    message_id: MessageId
    status: str
    rank: int
    error_code: int | None = None
    error_message: str | None = None


async def record_statuses(conn: Connection, moves: Sequence[StatusMove]) -> list[Message]:
    """Record each status in the history and move the message forward only (never to a lower
    rank), at most one move per message; the messages that moved, as they now stand, so the
    caller can tell the PBX without reading them again. One statement for all of them."""
    if not moves:
        return []
    rows = await conn.fetch(
        "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[],"
        "   $5::text[]) WITH ORDINALITY AS i(message_id, status, rank, error_code,"
        "   error_message, ord)),"
        " history AS (INSERT INTO message_status_history (message_id, status, error_code)"
        "   SELECT message_id, status, error_code FROM input ORDER BY ord)"
        " UPDATE messages m SET status = i.status, status_rank = i.rank,"
        "   error_code = coalesce(i.error_code, m.error_code),"
        "   error_message = coalesce(i.error_message, m.error_message), updated_at = now()"
        " FROM input i WHERE m.id = i.message_id AND m.status_rank < i.rank"
        f" RETURNING {', '.join('m.' + c.strip() for c in MESSAGE_COLUMNS.split(','))},"
        " m.num_media",
        [m.message_id for m in moves],
        [m.status for m in moves],
        [m.rank for m in moves],
        [m.error_code for m in moves],
        [m.error_message for m in moves],
    )
    return [await message_of(conn, row) for row in rows]


async def record_status(
    conn: Connection,
    message_id: MessageId,
    status: str,
    rank: int,
    error_code: int | None,
    error_message: str | None,
) -> Message | None:
    """`record_statuses` for one message: the message if it moved."""
    moved = await record_statuses(
        conn, [StatusMove(message_id, status, rank, error_code, error_message)]
    )
    return moved[0] if moved else None


async def message_of(conn: Connection, row: Record) -> Message:
    """The message of a row with the columns of MESSAGE_COLUMNS and ``num_media``."""
    media = (await _media_of(conn, [row["id"]]))[row["id"]] if row["num_media"] else []
    return _message(row, media, None)


async def keep_early_callback(
    conn: Connection, config_id: ConfigId, twilio_sid: str, status: str, error_code: int | None
) -> None:
    await conn.execute(
        "INSERT INTO early_status_callbacks (config_id, twilio_sid, status, error_code) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        config_id,
        twilio_sid,
        status,
        error_code,
    )


async def take_early_callbacks(
    conn: Connection, keys: Sequence[tuple[ConfigId, str]]
) -> dict[tuple[str, str], list[tuple[str, int | None]]]:
    """The early callbacks kept for each (configuration, sid), oldest first, now removed."""
    rows = await conn.fetch(
        "DELETE FROM early_status_callbacks e USING unnest($1::text[], $2::text[]) AS k(c, s) "
        "WHERE e.config_id = k.c AND e.twilio_sid = k.s "
        "RETURNING e.config_id, e.twilio_sid, e.status, e.error_code, e.received_at",
        [config_id for config_id, _ in keys],
        [sid for _, sid in keys],
    )
    found: dict[tuple[str, str], list[tuple[str, int | None]]] = {}
    for r in sorted(rows, key=lambda r: r["received_at"]):
        found.setdefault((r["config_id"], r["twilio_sid"]), []).append(
            (r["status"], r["error_code"])
        )
    return found
