"""Forward-only numbered SQL migrations, each in one transaction with its version bump."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from bridge.db.pool import Connection
from bridge.errors import BridgeError, SchemaTooNew
from bridge.log import get_logger

log = get_logger(__name__)

FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
# Any constant works as long as every sms-bridge process uses the same one.
ADVISORY_LOCK_KEY = 0x5_B5_B41D6E


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class BadMigrationFile(BridgeError):
    """A migration file is misnamed or out of sequence."""


def load_migrations() -> list[Migration]:
    """The packaged migrations in order; their numbers must run 1, 2, 3… with no gaps."""
    found: list[Migration] = []
    for entry in resources.files("bridge.db.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_NAME.fullmatch(entry.name)
        if match is None:
            raise BadMigrationFile(f"migration file {entry.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise BadMigrationFile(f"migration {expected:04d} is missing")
    return found


def code_version() -> int:
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


_SCHEMA_EXISTS = "SELECT to_regclass('schema_migrations') IS NOT NULL"

_SCHEMA_VERSION = "SELECT max(version) FROM schema_migrations"

_LOCK = "SELECT pg_advisory_lock($1)"

_UNLOCK = "SELECT pg_advisory_unlock($1)"

_RECORD = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def schema_version(conn: Connection) -> int:
    """The database's schema version; 0 when it has never been migrated."""
    exists = await conn.fetchval(_SCHEMA_EXISTS)
    if not exists:
        return 0
    version: int | None = await conn.fetchval(_SCHEMA_VERSION)
    return version or 0


async def migrate(conn: Connection) -> list[int]:
    """Apply what is missing under an advisory lock; returns the versions applied."""
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    await conn.execute(_LOCK, ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_VERSION_TABLE)
        current = await schema_version(conn)
        if current > latest:
            raise SchemaTooNew(
                f"the database schema is at version {current} but this sms-bridge knows only "
                f"up to {latest}: upgrade sms-bridge, or point it at another database"
            )
        applied = []
        for migration in migrations:
            if migration.version <= current:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, migration.version, migration.name)
            log.info("db.migrated", version=migration.version, name=migration.name)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute(_UNLOCK, ADVISORY_LOCK_KEY)
