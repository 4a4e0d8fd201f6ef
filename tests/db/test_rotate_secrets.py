"""Key rotation: every stored secret moves to the new key and still opens."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from bridge.config import decode_secret_key
from bridge.crypto import SecretBox, generate_key, key_id_of
from bridge.db import sms_configs as repo
from bridge.db.pool import Database
from bridge.models import DeliveryTargetPut, SmsConfigCreate, TenantCreate, TrunkCreate
from bridge.services.sms_configs import SmsConfigService
from bridge.services.tenants import TenantService
from bridge.twilio.credentials import rest_credentials
from bridge.urls import PublicUrls
from tests import factories
from tests.daemon import run_cli


async def test_rotate_secrets_reseals_everything_under_the_new_key(
    db_dsn: str, tmp_path: Path
) -> None:
    old, new = generate_key(), generate_key()
    db = await Database.connect(db_dsn, min_size=1, max_size=2, slow_query_ms=1000)
    try:
        box = SecretBox(decode_secret_key(old))
        tenants = TenantService(db, box, "x" * 20)
        configs = SmsConfigService(db, box, PublicUrls("https://pbx.example.test/sms"), 0)
        tenant = await tenants.create(TenantCreate(name="A"))
        trunk = await tenants.create_trunk(tenant.id, TrunkCreate(name="T"))
        body = factories.sms_config(trunk.id, credential=factories.api_key_credential())
        config = await configs.create(tenant.id, SmsConfigCreate.model_validate(body))
        secret = factories.hex32()
        await tenants.put_delivery_target(
            tenant.id, DeliveryTargetPut(url="https://pbx.example.test/e", secret=secret)
        )
    finally:
        await db.close()

    env = {
        "BRIDGE_DATABASE_URL": db_dsn,
        "BRIDGE_DATA_DIR": str(tmp_path / "d"),
        "BRIDGE_SECRET_KEY": new,
        "BRIDGE_PREVIOUS_SECRET_KEYS": f'["{old}"]',
        "BRIDGE_ADMIN_TOKEN": "x" * 20,
    }
    result = run_cli("rotate-secrets", env=env)
    assert result.returncode == 0, result.stderr
    assert "secrets re-encrypted: 2" in result.stdout
    again = run_cli("rotate-secrets", env=env)
    assert "secrets re-encrypted: 0" in again.stdout
    assert old not in result.stdout + result.stderr and new not in result.stdout + result.stderr

    conn = await asyncpg.connect(db_dsn)
    try:
        ids = {await conn.fetchval("SELECT secrets_key_id FROM sms_configs")}
        ids.add(await conn.fetchval("SELECT secret_key_id FROM delivery_targets"))
    finally:
        await conn.close()
    assert ids == {key_id_of(decode_secret_key(new))}

    db = await Database.connect(db_dsn, min_size=1, max_size=2, slow_query_ms=1000)
    try:
        only_new = SecretBox(decode_secret_key(new))
        check = SmsConfigService(db, only_new, PublicUrls("https://pbx.example.test/sms"), 0)
        assert await check.reseal_all() == 0
        row_config = await check.get(tenant.id, config.id)
        assert row_config.credential.api_key_sid == body["credential"]["api_key_sid"]
        async with db.connection() as conn:
            row = await repo.get(conn, tenant.id, config.id)
        assert row is not None
        creds = rest_credentials(only_new, row.id, row.account_sid, row.api_key_sid, row.secrets)
        assert (creds.username, creds.password) == (
            body["credential"]["api_key_sid"],
            body["credential"]["api_key_secret"],
        )
    finally:
        await db.close()
