"""LISTEN/NOTIFY: one connection per process wakes local waiters when rows are queued."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import TypeVar

import asyncpg

from bridge.db.pool import Servers
from bridge.errors import BridgeError
from bridge.log import get_logger

log = get_logger(__name__)

Claimed = TypeVar("Claimed")

EVENTS = "bridge_events"
MEDIA = "bridge_media"
OUTBOUND = "bridge_outbound"
SIP = "bridge_sip"
CHANNELS = (EVENTS, MEDIA, OUTBOUND, SIP)
# At most one NOTIFY per this many seconds from a process: other processes learn of new rows
# that much later at worst; this process's own workers are woken at once.
NOTIFY_INTERVAL = 0.02
# A server whose machine died closes nothing: a LISTEN connection that is only ever read would
# wait for it forever, through a failover. So it is asked something this often, with a timeout.
PROBE_SECONDS = 5.0
PROBE_TIMEOUT = 5.0
# Attempts while the database is away come at most this far apart, so a new primary is found
# within about this long of taking over.
RECONNECT_MAX_DELAY = 2.0
# How it shows in pg_stat_activity, beside the pool's "sms-bridge" connections.
APPLICATION = "sms-bridge listener"

_NOTIFY_MANY = "SELECT pg_notify(c, '') FROM unnest($1::text[]) AS c"


class Listener:
    """Wake-ups are hints only: every waiter also polls, so a lost notification costs a delay."""

    def __init__(self, dsn: str, channels: Sequence[str] = CHANNELS) -> None:
        self._servers = Servers(dsn)
        self._channels = tuple(channels)
        self._events = {c: asyncio.Event() for c in self._channels}
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._outgoing: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._last_sent = 0.0
        self._probed_at = 0.0
        # One statement at a time on the connection: the probe and the NOTIFY sender share it.
        self._using = asyncio.Lock()

    def waiter(self, channel: str) -> asyncio.Event:
        """Take this before looking for work; wait on it after: nothing notified between is lost."""
        return self._events[channel]

    def _wake(self, channel: str) -> None:
        event = self._events[channel]
        self._events[channel] = asyncio.Event()
        event.set()

    def _on_notify(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        self._wake(channel)

    def announce(self, channels: Collection[str]) -> None:
        """Rows were committed for ``channels``: wake this process's waiters now, and the other
        processes with one NOTIFY per NOTIFY_INTERVAL for everything announced meanwhile."""
        for channel in channels:
            self._wake(channel)
        self._outgoing.update(channels)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_notifications())

    async def _send_notifications(self) -> None:
        loop = asyncio.get_running_loop()
        while self._outgoing:
            wait = self._last_sent + NOTIFY_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            channels, self._outgoing = sorted(self._outgoing), set()
            conn = self._conn
            if conn is None or conn.is_closed():
                return  # the others poll; they are also woken when this connection is back
            try:
                async with self._using:
                    await conn.execute(_NOTIFY_MANY, channels, timeout=PROBE_TIMEOUT)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("db.notify_failed", error=str(exc) or type(exc).__name__)
                conn.terminate()  # a server that cannot take a NOTIFY is no longer the one
                return
            self._last_sent = loop.time()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="db-listener")

    async def _connect(self) -> None:
        conn = await self._servers.connect(server_settings={"application_name": APPLICATION})
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notify)
        except BaseException:
            conn.terminate()  # also when cancelled mid-way, so no connection is left behind
            raise
        self._conn = conn
        self._probed_at = asyncio.get_running_loop().time()

    async def _probe(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._probed_at < PROBE_SECONDS:
            return
        async with self._using:
            await conn.execute("SELECT 1", timeout=PROBE_TIMEOUT)
        self._probed_at = now

    async def _keep_listening(self) -> None:
        delay = 0.5
        lost_at: float | None = None
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                conn = self._conn
                if conn is None or conn.is_closed():
                    await self._connect()
                    if lost_at is not None:
                        log.info("db.listener_reconnected", after_s=round(loop.time() - lost_at, 2))
                    delay, lost_at = 0.5, None
                    for channel in self._channels:
                        self._wake(channel)  # anything queued while we were away
                else:
                    await self._probe(conn)
                await asyncio.sleep(1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("db.listener_reconnect", error=str(exc) or type(exc).__name__)
                if self._conn is not None:
                    self._conn.terminate()
                self._conn = None
                lost_at = loop.time() if lost_at is None else lost_at
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    async def close(self) -> None:
        self._closing = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
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


async def claim_in_turns(
    name: str,
    listener: Listener,
    channel: str,
    workers: Sequence[str],
    claim: Callable[[str], Awaitable[Sequence[Claimed]]],
    handle: Callable[[str, Sequence[Claimed]], Awaitable[object]],
    *,
    batch: int,
    poll_seconds: float,
) -> None:
    """Lanes, one per worker id, that claim in turn and handle their claims side by side.

    One lane at a time waits for work and claims; it hands the turn on as soon as its claim
    is made, before handling what it took. So a notification costs one claim, not one per
    lane (each lane claiming on every commit kept PostgreSQL busy finding nothing), and a full
    claim lets the next lane claim at once while this one works. Rows a lane still holds are
    leftovers of its own failed batch, which its next claim takes again (the claim queries
    re-take their own worker's rows).
    """
    turn = asyncio.Lock()
    wake = listener.waiter(channel)
    more = True

    async def lane(worker: str) -> None:
        nonlocal wake, more
        while True:
            async with turn:
                if not more:
                    await wait_for(wake, poll_seconds)
                # Taken before the claim: whatever is committed from now on wakes the next.
                wake = listener.waiter(channel)
                try:
                    claimed = await claim(worker)
                except (OSError, BridgeError) as exc:
                    log.warning(f"{name}.loop_error", error=str(exc))
                    claimed = ()
                except Exception:
                    log.exception(f"{name}.loop_crashed")
                    claimed = ()
                more = len(claimed) >= batch
            if claimed:
                try:
                    await handle(worker, claimed)
                except Exception:
                    # A lane must outlive any one bad batch; the rows stay claimed, for a retry.
                    log.exception(f"{name}.loop_crashed")

    await asyncio.gather(*(lane(worker) for worker in workers))
