"""The tests' PostgreSQL: a DSN from BRIDGE_TEST_DATABASE_URL, else the embedded server."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bridge.db.embedded import EmbeddedPostgres
from bridge.db.migrate import migrate

ENV = "BRIDGE_TEST_DATABASE_URL"


async def rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """A query's rows, on a connection of its own (beside the bridge's pool)."""
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


class TestPostgres:
    """One server per test session; a migrated template; a fresh clone per test."""

    def __init__(self, scratch: Path) -> None:
        self._embedded: EmbeddedPostgres | None = None
        dsn = os.environ.get(ENV, "")
        if not dsn:
            self._embedded = EmbeddedPostgres(scratch)
            dsn = self._embedded.start()
        self.admin_dsn = dsn
        self.template = f"bridge_tmpl_{secrets.token_hex(4)}"

    async def create_template(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.template}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(with_database(self.admin_dsn, self.template))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def create_empty(self) -> str:
        return await self._create("")

    async def clone(self) -> str:
        """A fresh database that is a copy of the migrated template."""
        return await self._create(f' TEMPLATE "{self.template}"')

    async def _create(self, template: str) -> str:
        name = f"bridge_t_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"{template}')
        finally:
            await conn.close()
        return name

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def drop_template(self) -> None:
        await self.drop(self.template)

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
