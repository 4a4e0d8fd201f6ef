"""Operator commands that run against the database without serving: migrate, rotate-secrets."""

from __future__ import annotations

from bridge.config import Settings
from bridge.db.migrate import migrate
from bridge.runtime.bootstrap import RuntimeSecrets, ensure_data_dir
from bridge.runtime.database import open_database
from bridge.services.sip import SipSettingsService
from bridge.services.sms_configs import SmsConfigService
from bridge.services.tenants import TenantService
from bridge.urls import PublicUrls


async def migrate_database(settings: Settings) -> list[int]:
    """Bring the schema up to date; the data directory gets the embedded server, if that is
    the database, and nothing else (no secret key, no admin token)."""
    if not settings.database_url.get_secret_value():
        ensure_data_dir(settings)
    async with (
        open_database(settings, min_size=1, max_size=2, attempts=1) as opened,
        opened.db.connection() as conn,
    ):
        return await migrate(conn)


async def reseal_secrets(settings: Settings, secrets: RuntimeSecrets) -> int:
    """Re-encrypt every stored secret under the current key."""
    async with open_database(settings, min_size=1, max_size=2, attempts=1) as opened:
        configs = SmsConfigService(opened.db, secrets.box, PublicUrls(settings.public_base_url), 0)
        tenants = TenantService(opened.db, secrets.box, secrets.admin_token)
        sip = SipSettingsService(opened.db, secrets.box)
        return (
            await configs.reseal_all()
            + await tenants.reseal_delivery_secrets()
            + await sip.reseal_all()
        )
