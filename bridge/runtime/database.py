"""The one place that opens the database: the configured server, or the embedded one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bridge.config import Settings
from bridge.db.embedded import EmbeddedPostgres
from bridge.db.migrate import code_version, migrate, schema_version
from bridge.db.pool import Database
from bridge.errors import BridgeError, DatabaseUnavailable, SchemaTooNew
from bridge.log import get_logger

log = get_logger(__name__)

CONNECT_ATTEMPTS = 10


class SchemaBehind(BridgeError):
    """The database schema is older than this code and migrating on start is off."""

    code = "schema_behind"


@dataclass(frozen=True)
class Opened:
    """An open pool, and the DSN it was opened with (the LISTEN connection needs it)."""

    db: Database
    dsn: str


async def connect_with_retry(
    dsn: str, *, min_size: int, max_size: int, slow_query_ms: float, attempts: int
) -> Database:
    """Wait for a database that is still starting, as after a host reboot, before giving up."""
    delay = 0.5
    for attempt in range(1, attempts + 1):
        try:
            return await Database.connect(
                dsn, min_size=min_size, max_size=max_size, slow_query_ms=slow_query_ms
            )
        except DatabaseUnavailable as exc:
            if attempt == attempts:
                raise
            log.warning("db.connect_retry", attempt=attempt, error=exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


@asynccontextmanager
async def open_database(
    settings: Settings,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    attempts: int = CONNECT_ATTEMPTS,
) -> AsyncIterator[Opened]:
    """The configured database, or the embedded one (joined, or started and later stopped
    when this process was its last user). Pool sizes default to the settings'; the daemon
    waits for a server that is still starting, an operator's one-off command need not."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url.get_secret_value()
    if not dsn:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        db = await connect_with_retry(
            dsn,
            min_size=settings.db_pool_min if min_size is None else min_size,
            max_size=settings.db_pool_max if max_size is None else max_size,
            slow_query_ms=settings.db_slow_query_ms,
            attempts=attempts,
        )
        try:
            yield Opened(db, dsn)
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def prepare_schema(db: Database, settings: Settings) -> int:
    """Migrate (or, when told not to, insist the schema is already current)."""
    latest = code_version()
    async with db.connection() as conn:
        if settings.migrate_on_start:
            await migrate(conn)
            return latest
        current = await schema_version(conn)
    if current > latest:
        raise SchemaTooNew(f"the database schema is at version {current}, this code at {latest}")
    if current < latest:
        raise SchemaBehind(
            f"the database schema is at version {current} and this code needs {latest}: "
            "run sms-bridge migrate"
        )
    return latest
