"""Repository: tenants, their tokens, their delivery target and their trunks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.crypto import Sealed
from bridge.db.pool import Connection, Record
from bridge.errors import TenantNotFound
from bridge.models import (
    Tenant,
    TenantCreate,
    TenantId,
    TenantPatch,
    TenantToken,
    TokenId,
    Trunk,
    TrunkId,
)

_TENANT = "id, name, default_country, affinity_hours, created_at, updated_at"
_TOKEN = "id, tenant_id, label, created_at, revoked_at"
_TRUNK = "id, tenant_id, name, created_at, updated_at"

_INSERT_TENANT = f"""
INSERT INTO tenants (id, name, default_country, affinity_hours) VALUES ($1, $2, $3, $4)
RETURNING {_TENANT}
"""

_GET_TENANT = f"SELECT {_TENANT} FROM tenants WHERE id = $1"

_LIST_TENANTS = f"SELECT {_TENANT} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"

_UPDATE_TENANT = f"""
UPDATE tenants SET name = coalesce($2, name), default_country = coalesce($3, default_country),
       affinity_hours = coalesce($4, affinity_hours), updated_at = now()
WHERE id = $1
RETURNING {_TENANT}
"""

# Rules and configurations point at trunks without cascading; they go first so that the
# tenant's own references never block its deletion.
_DELETE_TENANT = """
WITH rules AS (DELETE FROM inbound_rules WHERE tenant_id = $1),
     configs AS (DELETE FROM sms_configs WHERE tenant_id = $1)
SELECT 1
"""

_DELETE_TENANT_ROW = "DELETE FROM tenants WHERE id = $1"

_INSERT_TOKEN = f"""
INSERT INTO tenant_tokens (id, tenant_id, token_hash, label) VALUES ($1, $2, $3, $4)
RETURNING {_TOKEN}
"""

_LIST_TOKENS = f"SELECT {_TOKEN} FROM tenant_tokens WHERE tenant_id = $1 ORDER BY id"

_REVOKE_TOKEN = """
UPDATE tenant_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE tenant_id = $1 AND id = $2
"""

_TENANT_FOR_TOKEN = """
SELECT tenant_id FROM tenant_tokens WHERE token_hash = $1 AND revoked_at IS NULL
"""

_PUT_DELIVERY_TARGET = """
INSERT INTO delivery_targets (tenant_id, url, secret_key_id, secret_sealed)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, secret_key_id = excluded.secret_key_id,
    secret_sealed = excluded.secret_sealed, updated_at = now()
RETURNING tenant_id, url, secret_key_id, secret_sealed, updated_at
"""

_GET_DELIVERY_TARGET = """
SELECT tenant_id, url, secret_key_id, secret_sealed, updated_at FROM delivery_targets
WHERE tenant_id = $1
"""

_ALL_DELIVERY_TARGETS = """
SELECT tenant_id, url, secret_key_id, secret_sealed, updated_at FROM delivery_targets FOR UPDATE
"""

_RESEAL_DELIVERY_SECRET = """
UPDATE delivery_targets SET secret_key_id = $2, secret_sealed = $3 WHERE tenant_id = $1
"""

_INSERT_TRUNK = f"INSERT INTO trunks (id, tenant_id, name) VALUES ($1, $2, $3) RETURNING {_TRUNK}"

_GET_TRUNK = f"SELECT {_TRUNK} FROM trunks WHERE tenant_id = $1 AND id = $2"

_LIST_TRUNKS = f"""
SELECT {_TRUNK} FROM trunks WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3
"""

_TRUNK_IDS = "SELECT id FROM trunks WHERE tenant_id = $1"

_RENAME_TRUNK = f"""
UPDATE trunks SET name = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2
RETURNING {_TRUNK}
"""

_TRUNK_IN_OUTBOUND_RULES = """
SELECT EXISTS (SELECT 1 FROM outbound_rules WHERE tenant_id = $1 AND $2 = ANY (trunks))
"""

_DELETE_TRUNK = "DELETE FROM trunks WHERE tenant_id = $1 AND id = $2"


@dataclass(frozen=True)
class DeliveryTargetRow:
    """A tenant's delivery target as stored: where events go, and the sealed signing secret."""

    tenant_id: TenantId
    url: str
    secret: Sealed
    updated_at: datetime


def _tenant(row: Record) -> Tenant:
    return Tenant.model_validate(dict(row))


def _trunk(row: Record) -> Trunk:
    return Trunk.model_validate(dict(row))


def _target(row: Record) -> DeliveryTargetRow:
    return DeliveryTargetRow(
        tenant_id=TenantId(row["tenant_id"]),
        url=row["url"],
        secret=Sealed(row["secret_key_id"], row["secret_sealed"]),
        updated_at=row["updated_at"],
    )


async def insert_tenant(conn: Connection, tenant_id: TenantId, body: TenantCreate) -> Tenant:
    row = await conn.fetchrow(
        _INSERT_TENANT, tenant_id, body.name, body.default_country, body.affinity_hours
    )
    assert row is not None
    return _tenant(row)


async def get_tenant(conn: Connection, tenant_id: TenantId) -> Tenant | None:
    row = await conn.fetchrow(_GET_TENANT, tenant_id)
    return None if row is None else _tenant(row)


async def require_tenant(conn: Connection, tenant_id: TenantId) -> Tenant:
    """The tenant, or TenantNotFound: every tenant-scoped operation starts here."""
    tenant = await get_tenant(conn, tenant_id)
    if tenant is None:
        raise TenantNotFound()
    return tenant


async def list_tenants(conn: Connection, after: str, limit: int) -> list[Tenant]:
    return [_tenant(r) for r in await conn.fetch(_LIST_TENANTS, after, limit)]


async def update_tenant(conn: Connection, tenant_id: TenantId, patch: TenantPatch) -> Tenant | None:
    row = await conn.fetchrow(
        _UPDATE_TENANT, tenant_id, patch.name, patch.default_country, patch.affinity_hours
    )
    return None if row is None else _tenant(row)


async def delete_tenant(conn: Connection, tenant_id: TenantId) -> bool:
    await conn.execute(_DELETE_TENANT, tenant_id)
    return await conn.execute(_DELETE_TENANT_ROW, tenant_id) == "DELETE 1"


async def insert_token(
    conn: Connection, token_id: TokenId, tenant_id: TenantId, token_hash: bytes, label: str
) -> TenantToken:
    row = await conn.fetchrow(_INSERT_TOKEN, token_id, tenant_id, token_hash, label)
    assert row is not None
    return TenantToken.model_validate(dict(row))


async def list_tokens(conn: Connection, tenant_id: TenantId) -> list[TenantToken]:
    rows = await conn.fetch(_LIST_TOKENS, tenant_id)
    return [TenantToken.model_validate(dict(r)) for r in rows]


async def revoke_token(conn: Connection, tenant_id: TenantId, token_id: TokenId) -> bool:
    return await conn.execute(_REVOKE_TOKEN, tenant_id, token_id) == "UPDATE 1"


async def tenant_for_token(conn: Connection, token_hash: bytes) -> TenantId | None:
    tenant_id: str | None = await conn.fetchval(_TENANT_FOR_TOKEN, token_hash)
    return None if tenant_id is None else TenantId(tenant_id)


async def put_delivery_target(
    conn: Connection, tenant_id: TenantId, url: str, secret: Sealed
) -> DeliveryTargetRow:
    row = await conn.fetchrow(_PUT_DELIVERY_TARGET, tenant_id, url, secret.key_id, secret.blob)
    assert row is not None
    return _target(row)


async def get_delivery_target(conn: Connection, tenant_id: TenantId) -> DeliveryTargetRow | None:
    row = await conn.fetchrow(_GET_DELIVERY_TARGET, tenant_id)
    return None if row is None else _target(row)


async def all_delivery_targets(conn: Connection) -> list[DeliveryTargetRow]:
    """Every delivery target, locked for the caller's transaction (to re-seal its secret)."""
    return [_target(r) for r in await conn.fetch(_ALL_DELIVERY_TARGETS)]


async def reseal_delivery_secret(conn: Connection, tenant_id: TenantId, secret: Sealed) -> None:
    await conn.execute(_RESEAL_DELIVERY_SECRET, tenant_id, secret.key_id, secret.blob)


async def insert_trunk(
    conn: Connection, trunk_id: TrunkId, tenant_id: TenantId, name: str
) -> Trunk:
    row = await conn.fetchrow(_INSERT_TRUNK, trunk_id, tenant_id, name)
    assert row is not None
    return _trunk(row)


async def get_trunk(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> Trunk | None:
    row = await conn.fetchrow(_GET_TRUNK, tenant_id, trunk_id)
    return None if row is None else _trunk(row)


async def list_trunks(conn: Connection, tenant_id: TenantId, after: str, limit: int) -> list[Trunk]:
    return [_trunk(r) for r in await conn.fetch(_LIST_TRUNKS, tenant_id, after, limit)]


async def trunk_ids(conn: Connection, tenant_id: TenantId) -> set[str]:
    return {r["id"] for r in await conn.fetch(_TRUNK_IDS, tenant_id)}


async def rename_trunk(
    conn: Connection, tenant_id: TenantId, trunk_id: TrunkId, name: str
) -> Trunk | None:
    row = await conn.fetchrow(_RENAME_TRUNK, tenant_id, trunk_id, name)
    return None if row is None else _trunk(row)


async def trunk_in_outbound_rules(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> bool:
    found: bool = await conn.fetchval(_TRUNK_IN_OUTBOUND_RULES, tenant_id, trunk_id)
    return found


async def delete_trunk(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> bool:
    return await conn.execute(_DELETE_TRUNK, tenant_id, trunk_id) == "DELETE 1"
