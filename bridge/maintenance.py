"""Operator commands that run against the database without serving: migrate, rotate-secrets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bridge.bootstrap import RuntimeSecrets
from bridge.config import Settings
from bridge.db.embedded import EmbeddedPostgres
from bridge.db.migrate import migrate
from bridge.db.pool import Database
from bridge.sms_configs import SmsConfigService
from bridge.tenants import TenantService


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """The configured database, or the embedded one (joined, or started and then stopped)."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url.get_secret_value()
    if not dsn:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = await asyncio.to_thread(embedded.start)
    try:
        db = await Database.connect(
            dsn, min_size=1, max_size=2, slow_query_ms=settings.db_slow_query_ms
        )
        try:
            yield db
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def migrate_database(settings: Settings) -> list[int]:
    async with open_database(settings) as db, db.connection() as conn:
        return await migrate(conn)


async def reseal_secrets(settings: Settings, secrets: RuntimeSecrets) -> int:
    """Re-encrypt every stored secret under the current key."""
    async with open_database(settings) as db:
        configs = SmsConfigService(db, secrets.box, settings.public_base_url, 0)
        tenants = TenantService(db, secrets.box, secrets.admin_token)
        return await configs.reseal_all() + await tenants.reseal_delivery_secrets()
