"""Service: readiness — the database answers and its schema is the one this code expects."""

from __future__ import annotations

import asyncio

import asyncpg

from bridge.db.migrate import schema_version
from bridge.db.pool import Database
from bridge.errors import BridgeError


class Health:
    """What /ready reports."""

    def __init__(self, db: Database, expected_version: int) -> None:
        self._db = db
        self._expected = expected_version

    async def readiness(self) -> dict[str, object]:
        """``{"status": "ready", ...}`` or ``{"status": "unavailable", "reason": ...}``."""
        try:
            async with asyncio.timeout(2), self._db.connection() as conn:
                version = await schema_version(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, BridgeError):
            return {"status": "unavailable", "reason": "database"}
        if version != self._expected:
            return {"status": "unavailable", "reason": "schema", "schema_version": version}
        return {"status": "ready", "schema_version": version}
