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
from bridge.db.pool import Connection, Database
from bridge.errors import NotFound
from bridge.log import get_logger
from bridge.models import Message, MessageFilter, MessageId, OptOut, Page, TenantId, make_page

__all__ = ["MediaFile", "MessageService", "StreamItem"]

log = get_logger(__name__)

STREAM_BATCH = 100
KEEPALIVE_SECONDS = 15.0
HORIZON_WAIT_SECONDS = 2.0
HORIZON_POLL_SECONDS = 0.005
# `Last-Event-ID: 0`: before every event (stream positions start at 1).
REPLAY_ALL = "0"


@dataclass(frozen=True)
class StreamItem:
    """One server-sent event; ``None`` in its place is a keep-alive."""

    event_id: str
    type: str
    data: str


class Horizon:
    """How far a stream may read. Positions are drawn when an event is inserted, not when it
    commits, so a reader that passed a position while a lower one was still uncommitted would
    never see that event: the horizon moves to the last position drawn only once the writing
    transactions in flight when it was drawn have finished."""

    def __init__(self) -> None:
        self._settled = 0
        self._pending: tuple[int, list[str], float] | None = None
        self.head = 0

    @property
    def unsettled(self) -> bool:
        return self._pending is not None

    async def advance(self, conn: Connection) -> int:
        if self._pending is not None:
            head, in_flight, since = self._pending
            running = await events_repo.still_running(conn, in_flight)
            if running and time.monotonic() - since < HORIZON_WAIT_SECONDS:
                return self._settled
            if running:
                # A long transaction elsewhere in the database: the stream goes on rather
                # than stall behind it (the delivery target is the channel that never skips).
                log.warning("stream.horizon_forced", transactions=running)
            self._settled = head
            self._pending = None
        self.head, in_flight = await events_repo.stream_horizon(conn)
        if in_flight:
            self._pending = (self.head, in_flight, time.monotonic())
        else:
            self._settled = self.head
        return self._settled


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
            # A cursor from before opt-outs had channels names no channel: "" sorts first.
            config_id, number, channel = [*cursor.split("|", 2), ""][:3]
            after = (config_id, number, channel)
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            items = await opt_outs.list_opt_outs(conn, tenant_id, after, limit + 1)
        return make_page(items, limit, lambda o: f"{o.config_id}|{o.number}|{o.channel}")

    async def stream_position(self, tenant_id: TenantId, last_event_id: str | None) -> int:
        """Where a stream resumes: at the live end without ``last_event_id``; after it when it
        is one of the tenant's events; from the first for ``0`` or an id it does not know."""
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            if not last_event_id:
                return await self._settled_horizon()
            if last_event_id == REPLAY_ALL:
                return 0
            seq = await events_repo.stream_position(conn, tenant_id, last_event_id)
        if seq is None:
            # The client had a position and we cannot place it (another database, a typo, an
            # event of another tenant): replaying may repeat events, the live end would lose
            # some, and events carry their ids.
            log.info("stream.unknown_last_event_id", tenant_id=tenant_id)
            return 0
        return seq

    async def _settled_horizon(self) -> int:
        """A position below which no event can still appear: the writers in flight when it
        was read have finished (they take milliseconds; see `Horizon` for a long one)."""
        horizon = Horizon()
        async with self._db.connection() as conn:
            settled = await horizon.advance(conn)
            while horizon.unsettled:
                await asyncio.sleep(HORIZON_POLL_SECONDS)
                settled = await horizon.advance(conn)
        return settled

    async def stream(
        self, tenant_id: TenantId, position: int, stopping: asyncio.Event
    ) -> AsyncGenerator[StreamItem | None, None]:
        """The tenant's events after ``position`` as they are committed, until ``stopping``;
        a ``None`` now and then keeps an idle stream open."""
        quiet_since = time.monotonic()
        horizon = Horizon()
        settle_wait = HORIZON_POLL_SECONDS
        while not stopping.is_set():
            wake = self._listener.waiter(EVENTS)
            async with self._db.connection() as conn:
                settled = await horizon.advance(conn)
                batch = await events_repo.stream_after(
                    conn, tenant_id, position, settled, STREAM_BATCH
                )
            for seq, event_id, event_type, data in batch:
                yield StreamItem(event_id, event_type, data)
                position = seq
            if batch:
                quiet_since = time.monotonic()
                continue
            if horizon.unsettled:
                # Events are being written: look again as soon as their writers are done.
                await asyncio.sleep(settle_wait)
                settle_wait = min(settle_wait * 2, 0.5)
                continue
            settle_wait = HORIZON_POLL_SECONDS
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield None
                quiet_since = time.monotonic()
            await wait_for(wake, 1.0)
