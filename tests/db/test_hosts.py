"""A DSN naming several hosts (design §13): each host gets its own connect timeout, a silent one
is passed by, and when none will do the error names every host and no password; connections
to a server that went silent are noticed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from bridge.db import notify
from bridge.db.notify import Listener
from bridge.db.pool import Database
from bridge.errors import DatabaseUnavailable
from tests.waiting import eventually

TIMEOUT = 1


class Silent:
    """A host that takes connections and never says a word (a machine that went away)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    def attempts(self) -> int:
        """Connections that reached it so far (taken from the backlog, kept open, unanswered)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return len(self.held)
            self.held.append(conn)


class Proxy:
    """TCP on loopback to the test database's server, until frozen: from then on nothing is
    passed on and nothing is closed, which is all a client sees of a server whose machine
    died (here the kernel still acknowledges what is sent, so only the application can tell)."""

    def __init__(self, db_dsn: str) -> None:
        parts = urlsplit(db_dsn)
        self._socket_dir = dict(parse_qsl(parts.query)).get("host")
        self._address = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.frozen = False
        self._closed = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if self.frozen:
                await self._closed.wait()
                return
            sink.write(data)
            await sink.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self.frozen:
                await self._closed.wait()  # a new connection: taken, never answered
                return
            if self._socket_dir is not None:
                path = f"{self._socket_dir}/.s.PGSQL.{self._address[1]}"
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._address)
            pipes = {
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            }
            # Either side closing closes the other (a Terminate, then the server's close).
            _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for pipe in pending:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            up_writer.close()
        except OSError:
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def close(self) -> None:
        assert self._server is not None
        self._closed.set()
        self._server.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
def silent() -> Iterator[Silent]:
    host = Silent()
    yield host
    for conn in host.held:
        conn.close()
    host.sock.close()


@pytest.fixture
async def proxy(db_dsn: str) -> AsyncIterator[Proxy]:
    running = Proxy(db_dsn)
    await running.start()
    yield running
    await running.close()


def url(hosts: list[str], db_dsn: str, **params: str) -> str:
    """The test database under ``hosts`` ("db" standing for its own server)."""
    parts = urlsplit(db_dsn)
    query = dict(parse_qsl(parts.query))
    # The embedded server listens on a socket directory, which a URL's host list can name.
    own = quote(query.pop("host"), safe="") if "host" in query else parts.netloc.split("@")[-1]
    user = parts.netloc.rpartition("@")[0]
    query.update(params)
    tail = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
    netloc = ",".join(own if host == "db" else host for host in hosts)
    return f"postgresql://{user}@{netloc}{parts.path}?{tail}"


def two_hosts(first: str, db_dsn: str) -> str:
    return url(
        [first, "db"], db_dsn, target_session_attrs="read-write", connect_timeout=str(TIMEOUT)
    )


async def test_a_silent_first_host_costs_one_timeout_then_nothing(
    db_dsn: str, silent: Silent
) -> None:
    dsn = two_hosts(f"127.0.0.1:{silent.port}", db_dsn)
    started = time.monotonic()
    db = await Database.connect(dsn, min_size=1, max_size=4, slow_query_ms=1000)
    try:
        took = time.monotonic() - started
        assert silent.attempts() == 1

        # Four connections at once, each new: none of them goes near the silent host again.
        async def use() -> None:
            async with db.transaction() as conn:
                await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.gather(*(use() for _ in range(4)))
        assert db.stats()["size"] == 4
        assert silent.attempts() == 1
    finally:
        await db.close()
    print(f"\nconnected past a silent host in {took:.2f}s (connect_timeout={TIMEOUT})")


async def test_no_usable_host_is_one_typed_error_naming_each(silent: Silent) -> None:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens there now
    dsn = (
        f"postgresql://bridge:s3cret@127.0.0.1:{silent.port},127.0.0.1:{port}/bridge"
        f"?target_session_attrs=read-write&connect_timeout={TIMEOUT}"
    )
    with pytest.raises(DatabaseUnavailable) as caught:
        await Database.connect(dsn, min_size=1, max_size=1, slow_query_ms=1000)
    message = caught.value.message
    assert f"127.0.0.1:{silent.port}: no answer in {TIMEOUT}s" in message
    assert f"127.0.0.1:{port}:" in message
    assert "s3cret" not in message


async def test_pooled_tcp_connections_watch_for_a_dead_peer(db_dsn: str, proxy: Proxy) -> None:
    db = await Database.connect(
        url([f"127.0.0.1:{proxy.port}"], db_dsn), min_size=1, max_size=1, slow_query_ms=1000
    )
    try:
        async with db.connection() as conn:
            # What the kernel does with it cannot be shown on loopback; that it is asked, can.
            sock = conn._con._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 15_000
    finally:
        await db.close()


async def test_the_listener_leaves_a_server_gone_silent_for_one_that_answers(
    db_dsn: str, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its probe, sooner than in production, so the test takes seconds rather than ten.
    monkeypatch.setattr(notify, "PROBE_SECONDS", 0.5)
    monkeypatch.setattr(notify, "PROBE_TIMEOUT", 0.5)
    listener = Listener(two_hosts(f"127.0.0.1:{proxy.port}", db_dsn), channels=("bridge_test",))
    db = await Database.connect(db_dsn, min_size=1, max_size=1, slow_query_ms=1000)

    async def notified() -> bool:
        woken = listener.waiter("bridge_test")
        async with db.connection() as conn:
            await conn.execute("SELECT pg_notify('bridge_test', '')")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                await woken.wait()
        return woken.is_set()

    await listener.start()
    try:
        await eventually(notified, within=10)  # through the proxy, its first host
        proxy.frozen = True
        frozen_at = time.monotonic()
        assert not await notified()
        await eventually(notified, within=20)  # on the second host, by itself
        took = time.monotonic() - frozen_at
    finally:
        await listener.close()
        await db.close()
    print(f"\nthe listener was back {took:.1f}s after its server went silent")
