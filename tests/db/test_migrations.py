from __future__ import annotations

import asyncio
from importlib import resources

import asyncpg
import pytest

from bridge.db.migrate import FILE_NAME, code_version, load_migrations, migrate, schema_version
from bridge.errors import SchemaTooNew


def test_migration_files_are_named_and_numbered_without_gaps() -> None:
    names = sorted(
        e.name for e in resources.files("bridge.db.migrations").iterdir() if e.name.endswith(".sql")
    )
    assert names, "no migrations packaged"
    for expected, name in enumerate(names, start=1):
        match = FILE_NAME.fullmatch(name)
        assert match is not None, name
        assert int(match[1]) == expected
    assert code_version() == len(names) == len(load_migrations())


async def test_migrate_from_empty_then_again_is_a_no_op(empty_db_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await schema_version(conn) == 0
        applied = await migrate(conn)
        assert applied == list(range(1, code_version() + 1))
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {"tenants", "sms_configs", "sms_numbers", "webhook_tokens"} <= tables
        assert await migrate(conn) == []
        assert await schema_version(conn) == code_version()
        rows = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert rows == code_version()
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_dsn: str) -> None:
    conns = [await asyncpg.connect(empty_db_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == list(range(1, code_version() + 1))
    finally:
        for conn in conns:
            await conn.close()


async def test_a_newer_schema_is_refused(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        future = code_version() + 1
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future')", future
        )
        with pytest.raises(SchemaTooNew, match="upgrade sms-bridge"):
            await migrate(conn)
        assert await schema_version(conn) == future
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_no_trace(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.db import migrate as module

    real = module.load_migrations()
    broken = [
        *real,
        module.Migration(len(real) + 1, "broken", "CREATE TABLE x (id int); SELECT 1/0;"),
    ]
    monkeypatch.setattr(module, "load_migrations", lambda: broken)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await module.migrate(conn)
        assert await schema_version(conn) == len(real)
        assert await conn.fetchval("SELECT to_regclass('x')") is None
    finally:
        await conn.close()
