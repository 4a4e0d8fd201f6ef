"""LISTEN/NOTIFY: one connection per process wakes local waiters when rows are queued."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from bridge.errors import BridgeError
from bridge.log import get_logger

log = get_logger(__name__)

EVENTS = "bridge_events"
MEDIA = "bridge_media"
OUTBOUND = "bridge_outbound"
CHANNELS = (EVENTS, MEDIA, OUTBOUND)


class Listener:
    """Wake-ups are hints only: every waiter also polls, so a lost notification costs a delay."""

    def __init__(self, dsn: str, channels: Sequence[str] = CHANNELS) -> None:
        self._dsn = dsn
        self._channels = tuple(channels)
        self._events = {c: asyncio.Event() for c in self._channels}
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def waiter(self, channel: str) -> asyncio.Event:
        """Take this before looking for work; wait on it after: nothing notified between is lost."""
        return self._events[channel]

    def _wake(self, channel: str) -> None:
        event = self._events[channel]
        self._events[channel] = asyncio.Event()
        event.set()

    def _on_notify(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        self._wake(channel)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="db-listener")

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notify)
        except BaseException:
            conn.terminate()  # also when cancelled mid-way, so no connection is left behind
            raise
        self._conn = conn

    async def _keep_listening(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                    delay = 0.5
                    for channel in self._channels:
                        self._wake(channel)  # anything queued while we were away
                await asyncio.sleep(1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("db.listener_reconnect", error=str(exc))
                self._conn = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until notified or ``seconds`` pass, whichever is first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def poll_forever(
    name: str,
    listener: Listener,
    channel: str,
    work: Callable[[], Awaitable[int]],
    *,
    batch: int,
    poll_seconds: float,
) -> None:
    """Run ``work`` (which returns how many rows it handled) until cancelled: again at once
    after a full batch, else after a notification on ``channel`` or ``poll_seconds``."""
    while True:
        wake = listener.waiter(channel)
        try:
            busy = await work()
        except (OSError, BridgeError) as exc:
            log.warning(f"{name}.loop_error", error=str(exc))
            busy = 0
        except Exception:
            # A worker must outlive any one bad batch; the rows stay queued for a retry.
            log.exception(f"{name}.loop_crashed")
            busy = 0
        if busy < batch:
            await wait_for(wake, poll_seconds)
