"""The asyncpg pool, with slow-query logging and driver errors translated in one place."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bridge.errors import Conflict, DatabaseUnavailable, InUse, NotFound
from bridge.log import get_logger

log = get_logger(__name__)

Record = asyncpg.Record
# A string: asyncpg's classes are generic only to the type checker.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def safe_dsn(dsn: str) -> str:
    """The DSN with its password removed, for logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


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

# Channels to notify once the current task's transaction commits (see `notify`).
_AFTER_COMMIT: ContextVar[set[str] | None] = ContextVar("after_commit", default=None)


async def notify(conn: Connection, channel: str) -> None:
    """Wake the workers listening on ``channel``. Inside `Database.transaction` of a database
    with an announcer, after the commit and coalesced per process: a NOTIFY in a transaction
    takes a lock that serialises every such commit in the cluster, which capped the whole
    send path at a few hundred texts per second. Elsewhere, a NOTIFY now."""
    pending = _AFTER_COMMIT.get()
    if pending is not None:
        pending.add(channel)
    else:
        await conn.execute(_NOTIFY, channel)


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
        channels: set[str] = set()
        scope = None if self.announce is None else _AFTER_COMMIT.set(channels)
        try:
            async with self.pool.acquire() as conn, _discard_if_lost(conn), conn.transaction():
                yield conn
            if channels and self.announce is not None:
                self.announce(channels)
        except _LOST as exc:
            raise DatabaseUnavailable(f"the database connection failed: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise translate(exc) from exc
        finally:
            if scope is not None:
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
