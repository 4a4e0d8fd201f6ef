"""Service: messages, their media, opt-outs and the event stream, as the portal reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from bridge.db import events as events_repo
from bridge.db import media as media_repo
from bridge.db import messages as repo
from bridge.db import opt_outs
from bridge.db import tenants as tenants_repo
from bridge.db.media import MediaFile
from bridge.db.notify import EVENTS, Listener, wait_for
from bridge.db.pool import Database
from bridge.errors import NotFound
from bridge.models import Message, MessageFilter, MessageId, OptOut, Page, TenantId, make_page

__all__ = ["MediaFile", "MessageService", "StreamItem"]

STREAM_BATCH = 100
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class StreamItem:
    """One server-sent event; ``None`` in its place is a keep-alive."""

    event_id: str
    type: str
    data: str


class MessageService:
    """What the portal reads about texts."""

    def __init__(self, db: Database, listener: Listener) -> None:
        self._db = db
        self._listener = listener

    async def list_messages(
        self, tenant_id: TenantId, f: MessageFilter, cursor: str | None, limit: int
    ) -> Page[Message]:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            items = await repo.list_page(conn, tenant_id, f, cursor, limit + 1)
        return make_page(items, limit, lambda m: m.id)

    async def get(self, tenant_id: TenantId, message_id: MessageId) -> Message:
        async with self._db.connection() as conn:
            message = await repo.get(conn, tenant_id, message_id)
        if message is None:
            raise NotFound("message not found")
        return message

    async def media(self, tenant_id: TenantId, message_id: MessageId, index: int) -> MediaFile:
        async with self._db.connection() as conn:
            item = await media_repo.stored_item(conn, tenant_id, message_id, index)
        if item is None:
            raise NotFound("no such media item")
        if item.file is None:
            raise NotFound(f"media item {index} is {item.status}, not stored")
        return item.file

    async def opt_outs(self, tenant_id: TenantId, cursor: str | None, limit: int) -> Page[OptOut]:
        after = None
        if cursor and "|" in cursor:
            config_id, number = cursor.split("|", 1)
            after = (config_id, number)
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            items = await opt_outs.list_opt_outs(conn, tenant_id, after, limit + 1)
        return make_page(items, limit, lambda o: f"{o.config_id}|{o.number}")

    async def stream_position(self, tenant_id: TenantId, last_event_id: str | None) -> int:
        """Where a stream resumes: after ``last_event_id``, or at the live end."""
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            if last_event_id:
                seq = await events_repo.stream_position(conn, tenant_id, last_event_id)
                if seq is not None:
                    return seq
            return await events_repo.stream_head(conn)

    async def stream(
        self, tenant_id: TenantId, position: int, stopping: asyncio.Event
    ) -> AsyncGenerator[StreamItem | None, None]:
        """The tenant's events after ``position`` as they are committed, until ``stopping``;
        a ``None`` now and then keeps an idle stream open."""
        quiet_since = time.monotonic()
        while not stopping.is_set():
            wake = self._listener.waiter(EVENTS)
            async with self._db.connection() as conn:
                batch = await events_repo.stream_after(conn, tenant_id, position, STREAM_BATCH)
            for seq, event_id, event_type, data in batch:
                yield StreamItem(event_id, event_type, data)
                position = seq
            if batch:
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield None
                quiet_since = time.monotonic()
            await wait_for(wake, 1.0)
