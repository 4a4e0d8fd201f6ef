"""The asyncpg pool, with slow-query logging and driver errors translated in one place."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bridge.dsn import parse_dsn, safe_dsn
from bridge.errors import Conflict, DatabaseUnavailable, InUse, NotFound
from bridge.log import get_logger

log = get_logger(__name__)

Record = asyncpg.Record
# A string: asyncpg's classes are generic only to the type checker.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


class NoServerAvailable(ConnectionError):
    """No host of the DSN took a connection (one that can write, when several are named)."""


# A host that let a connection attempt time out is tried after the others for this long.
SILENT_SECONDS = 30.0
# A server whose machine died closes nothing: without these an idle pooled connection to it
# looks alive forever, and a query sent on one waits for command_timeout. Probes after 10 s
# idle, every 5 s, 3 of them; and sent data unacknowledged for 15 s ends the connection.
_TCP_OPTIONS = (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
_TCP_USER_TIMEOUT_MS = 15_000
# What makes a host unusable for now; any of them sends the next connection to the next host.
_UNUSABLE = (
    OSError,  # refused, unreachable, timed out
    asyncpg.PostgresError,  # starting up, shutting down, too many connections, no such database
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a standby, where target_session_attrs asked for the primary
)


class Servers:
    """The hosts a DSN names, tried in turn, each with its own timeout (libpq's way: asyncpg
    gives them all one timeout, which a host that went silent uses up before the next one is
    tried), and every error passing on to the next host.

    The host that answered last is tried first. One that let its timeout run out is, for a
    while, tried last and by one connection attempt at a time, the others passing it by: a
    former primary whose machine is gone holds up neither the 503s while there is no primary
    nor finding the new one, and is still noticed as soon as it answers again."""

    def __init__(self, dsn: str) -> None:
        parsed = parse_dsn(dsn)
        self._hosts = parsed.hosts
        self._urls = parsed.urls
        self._timeout = parsed.connect_timeout
        self._first = 0
        self._silent_until = [0.0] * len(self._urls)
        self._probing: set[int] = set()

    def _order(self, now: float) -> list[int]:
        rest = [i for i in range(len(self._urls)) if i != self._first]
        ranked = [self._first, *rest]
        return sorted(ranked, key=lambda i: self._silent_until[i] > now)  # stable: order kept

    async def connect(self, dsn: str | None = None, **options: Any) -> asyncpg.Connection[Any]:
        """A new connection (``dsn`` is the pool's copy of the one given at construction)."""
        options.pop("timeout", None)
        failures = []
        now = time.monotonic()
        for index in self._order(now):
            host = self._hosts[index]
            silent = self._silent_until[index] > now
            if silent and index in self._probing:
                failures.append(f"{host}: did not answer in {self._timeout:g}s lately")
                continue
            if silent:
                self._probing.add(index)
            try:
                conn: asyncpg.Connection[Any] = await asyncpg.connect(
                    self._urls[index], timeout=self._timeout, **options
                )
            except TimeoutError:
                self._silent_until[index] = time.monotonic() + SILENT_SECONDS
                failures.append(f"{host}: no answer in {self._timeout:g}s")
                continue
            except _UNUSABLE as exc:
                failures.append(f"{host}: {str(exc) or type(exc).__name__}")
                continue
            finally:
                if silent:
                    self._probing.discard(index)
            self._first, self._silent_until[index] = index, 0.0
            _notice_dead_peer(conn)
            return conn
        raise NoServerAvailable("; ".join(failures))


def _notice_dead_peer(conn: asyncpg.Connection[Any]) -> None:
    """TCP keepalives and a user timeout on the connection's socket (not on a Unix socket)."""
    # asyncpg has no public way to its socket, nor keepalive options of its own.
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (*_TCP_OPTIONS, ("TCP_USER_TIMEOUT", _TCP_USER_TIMEOUT_MS))
    for name, value in options:
        option = getattr(socket, name, None)  # Linux has them all; others some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


# The server went away (restart, failover, network) or the driver lost track of the protocol
# (InternalClientError: "another operation is in progress" on a connection the server killed
# while it sat idle). Callers see one typed, retryable error instead of driver internals, and
# the connection is closed rather than handed to the next caller in an unknown state.
_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,  # connection closed mid-operation, failure, rejection
    asyncpg.OperatorInterventionError,  # shutting down, crash recovery, cannot connect now
    # A server that cannot write is not the primary (any more): a fresh connection finds it.
    asyncpg.ReadOnlySQLTransactionError,
)


# Constraint violations that mean something to an API caller, by constraint name (the names
# PostgreSQL gave them in the migrations); anything else is a plain conflict or missing reference.
_IN_USE = {
    "sms_configs_trunk_id_fkey": "the trunk carries an SMS configuration; delete that first",
    "inbound_rules_trunk_id_fkey": "the trunk is named by an inbound rule; change the rules first",
}
_TAKEN = {
    "sms_numbers_pkey": "a number is already used by another SMS configuration",
    "sms_configs_trunk_id_key": "this trunk already has an SMS configuration",
}


def translate(exc: asyncpg.PostgresError) -> Exception:
    """Map constraint violations to domain errors by constraint name; others stay as they are."""
    name = getattr(exc, "constraint_name", None) or ""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict(_TAKEN.get(name, "that value is already in use"))
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        if name in _IN_USE:
            return InUse(_IN_USE[name])
        return NotFound("a referenced resource does not exist")
    return exc


async def _no_session_state(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Skip asyncpg's per-release reset query (a round trip on every release): the bridge
    keeps no session state on pooled connections (no SET, LISTEN or held advisory locks),
    and asyncpg still ends any open transaction itself."""


@asynccontextmanager
async def _discard_if_lost(conn: Connection) -> AsyncIterator[None]:
    """Close a connection that failed below SQL, so the pool opens a fresh one: the bridge
    skips asyncpg's reset query on release, which is what would otherwise notice."""
    try:
        yield
    except _LOST:
        conn.terminate()
        raise


_NOTIFY = "SELECT pg_notify($1, '')"

# Prefixed to a statement that runs as a transaction of its own, and referenced in its FROM:
# that transaction commits without waiting for its WAL to reach the disk (or a synchronous
# standby). For bookkeeping that a crash may undo harmlessly: a lost claim is claimed again, a
# lost acknowledgement means a redelivery with the same event id, which design §8 allows.
# The next durable commit flushes it with its own, so nothing after it depends on it.
RELAXED_COMMIT = (
    "WITH relaxed_commit AS MATERIALIZED "
    "(SELECT set_config('synchronous_commit', 'off', true) AS setting)"
)


@dataclass
class _Committing:
    """What the current task's `Database.transaction` does once it has committed."""

    announcing: bool
    channels: set[str] = field(default_factory=set)
    then: list[Callable[[], None]] = field(default_factory=list)
    otherwise: list[Callable[[], None]] = field(default_factory=list)


_AFTER_COMMIT: ContextVar[_Committing | None] = ContextVar("after_commit", default=None)


async def notify(conn: Connection, channel: str) -> None:
    """Wake the workers listening on ``channel``. Inside `Database.transaction` of a database
    with an announcer, after the commit and coalesced per process: a NOTIFY in a transaction
    takes a lock that serialises every such commit in the cluster, which capped the whole
    send path at a few hundred texts per second. Elsewhere, a NOTIFY now."""
    pending = _AFTER_COMMIT.get()
    if pending is not None and pending.announcing:
        pending.channels.add(channel)
    else:
        await conn.execute(_NOTIFY, channel)


def can_defer() -> bool:
    """Whether the current task is inside `Database.transaction`, so `after_commit` works."""
    return _AFTER_COMMIT.get() is not None


def after_commit(callback: Callable[[], None], otherwise: Callable[[], None] | None = None) -> None:
    """Run ``callback`` once the current task's `Database.transaction` has committed, or
    ``otherwise`` if it does not. Only inside one (see `can_defer`)."""
    pending = _AFTER_COMMIT.get()
    if pending is None:
        raise RuntimeError("after_commit outside Database.transaction")
    pending.then.append(callback)
    if otherwise is not None:
        pending.otherwise.append(otherwise)


class SlowQueryLog:
    """Logs each statement that took longer than the threshold: its text, never its arguments
    (they carry message bodies and sealed secrets)."""

    def __init__(self, slow_query_ms: float) -> None:
        self.threshold = slow_query_ms / 1000

    def __call__(self, record: asyncpg.connection.LoggedQuery) -> None:
        if record.elapsed > self.threshold:
            log.warning(
                "db.slow_query",
                ms=round(record.elapsed * 1000, 1),
                query=" ".join(record.query.split())[:300],
                failed=record.exception is not None,
            )

    async def attach(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        conn.add_query_logger(self)


class Database:
    """One pool per process; repositories take a connection, services open transactions."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], slow_query_ms: float) -> None:
        self.pool = pool
        self._slow = slow_query_ms / 1000
        # Given the channels a committed transaction asked to notify (`notify`).
        self.announce: Callable[[Collection[str]], None] | None = None

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int, max_size: int, slow_query_ms: float
    ) -> Database:
        try:
            pool = await asyncpg.create_pool(
                dsn,
                connect=Servers(dsn).connect,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                server_settings={"application_name": "sms-bridge"},
                reset=_no_session_state,
                init=SlowQueryLog(slow_query_ms).attach,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database at {safe_dsn(dsn)}: {exc}"
            ) from exc
        log.info("db.connected", dsn=safe_dsn(dsn), min_size=min_size, max_size=max_size)
        return cls(pool, slow_query_ms)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection inside a transaction; constraint violations come out as domain errors."""
        started = time.perf_counter()
        committing = _Committing(announcing=self.announce is not None)
        scope = _AFTER_COMMIT.set(committing)
        try:
            try:
                async with self.pool.acquire() as conn, _discard_if_lost(conn), conn.transaction():
                    yield conn
            except BaseException:
                for callback in committing.otherwise:
                    callback()
                raise
            if committing.channels and self.announce is not None:
                self.announce(committing.channels)
            for callback in committing.then:
                callback()
        except _LOST as exc:
            raise DatabaseUnavailable(f"the database connection failed: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise translate(exc) from exc
        finally:
            _AFTER_COMMIT.reset(scope)
            elapsed = time.perf_counter() - started
            if elapsed > self._slow:
                log.warning("db.slow_transaction", ms=round(elapsed * 1000, 1))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        try:
            async with self.pool.acquire() as conn, _discard_if_lost(conn):
                yield conn
        except _LOST as exc:
            raise DatabaseUnavailable(f"the database connection failed: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise translate(exc) from exc

    def stats(self) -> dict[str, int]:
        return {
            "size": self.pool.get_size(),
            "idle": self.pool.get_idle_size(),
            "max": self.pool.get_max_size(),
        }
