"""The pool's contract with its callers when connections break underneath them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.db.pool import Database
from bridge.errors import DatabaseUnavailable


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    # One connection, so "the next caller" can only get the same one or a fresh one.
    database = await Database.connect(db_dsn, min_size=1, max_size=1, slow_query_ms=1000)
    yield database
    await database.close()


async def backend_pid(db: Database) -> int:
    async with db.connection() as conn:
        pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_a_connection_that_failed_below_sql_is_not_handed_out_again(db: Database) -> None:
    # What asyncpg raises when a connection the server killed while idle is used again.
    before = await backend_pid(db)
    with pytest.raises(DatabaseUnavailable):
        async with db.transaction():
            raise asyncpg.InternalClientError("cannot switch to state 15")
    assert await backend_pid(db) != before


async def test_a_sql_error_keeps_the_connection(db: Database) -> None:
    before = await backend_pid(db)
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.transaction() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert await backend_pid(db) == before


async def test_a_connection_killed_by_the_server_is_a_typed_error_then_replaced(
    db: Database, db_dsn: str
) -> None:
    victim = await backend_pid(db)
    admin = await asyncpg.connect(db_dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
    finally:
        await admin.close()
    outcomes: list[str] = []
    for _ in range(3):
        try:
            async with db.transaction() as conn:
                await conn.fetchval("SELECT 1")
            outcomes.append("ok")
        except DatabaseUnavailable:
            outcomes.append("unavailable")
    # The first use may find out the hard way; after that the pool has a live connection.
    assert outcomes[1:] == ["ok", "ok"], outcomes
    assert await backend_pid(db) != victim
