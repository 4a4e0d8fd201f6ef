"""Repository: tenants, their tokens, their delivery target and their trunks."""

from __future__ import annotations

from bridge.crypto import Sealed
from bridge.db.pool import Connection, Record
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


def _tenant(row: Record) -> Tenant:
    return Tenant.model_validate(dict(row))


def _trunk(row: Record) -> Trunk:
    return Trunk.model_validate(dict(row))


async def insert_tenant(conn: Connection, tenant_id: TenantId, body: TenantCreate) -> Tenant:
    row = await conn.fetchrow(
        f"INSERT INTO tenants (id, name, default_country, affinity_hours) VALUES ($1, $2, $3, $4) "
        f"RETURNING {_TENANT}",
        tenant_id,
        body.name,
        body.default_country,
        body.affinity_hours,
    )
    assert row is not None
    return _tenant(row)


async def get_tenant(conn: Connection, tenant_id: TenantId) -> Tenant | None:
    row = await conn.fetchrow(f"SELECT {_TENANT} FROM tenants WHERE id = $1", tenant_id)
    return None if row is None else _tenant(row)


async def list_tenants(conn: Connection, after: str, limit: int) -> list[Tenant]:
    rows = await conn.fetch(
        f"SELECT {_TENANT} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2", after, limit
    )
    return [_tenant(r) for r in rows]


async def update_tenant(conn: Connection, tenant_id: TenantId, patch: TenantPatch) -> Tenant | None:
    row = await conn.fetchrow(
        f"UPDATE tenants SET name = coalesce($2, name), "
        f"default_country = coalesce($3, default_country), "
        f"affinity_hours = coalesce($4, affinity_hours), updated_at = now() "
        f"WHERE id = $1 RETURNING {_TENANT}",
        tenant_id,
        patch.name,
        patch.default_country,
        patch.affinity_hours,
    )
    return None if row is None else _tenant(row)


async def delete_tenant(conn: Connection, tenant_id: TenantId) -> bool:
    # Rules and configurations point at trunks without cascading; clear them first so
    # the tenant's own references never block its deletion.
    await conn.execute("DELETE FROM inbound_rules WHERE tenant_id = $1", tenant_id)
    await conn.execute("DELETE FROM sms_configs WHERE tenant_id = $1", tenant_id)
    status = await conn.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
    return status == "DELETE 1"


async def insert_token(
    conn: Connection, token_id: TokenId, tenant_id: TenantId, token_hash: bytes, label: str
) -> TenantToken:
    row = await conn.fetchrow(
        f"INSERT INTO tenant_tokens (id, tenant_id, token_hash, label) VALUES ($1, $2, $3, $4) "
        f"RETURNING {_TOKEN}",
        token_id,
        tenant_id,
        token_hash,
        label,
    )
    assert row is not None
    return TenantToken.model_validate(dict(row))


async def list_tokens(conn: Connection, tenant_id: TenantId) -> list[TenantToken]:
    rows = await conn.fetch(
        f"SELECT {_TOKEN} FROM tenant_tokens WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    return [TenantToken.model_validate(dict(r)) for r in rows]


async def revoke_token(conn: Connection, tenant_id: TenantId, token_id: TokenId) -> bool:
    status = await conn.execute(
        "UPDATE tenant_tokens SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        token_id,
    )
    return status == "UPDATE 1"


async def tenant_for_token(conn: Connection, token_hash: bytes) -> TenantId | None:
    tenant_id: str | None = await conn.fetchval(
        "SELECT tenant_id FROM tenant_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash,
    )
    return None if tenant_id is None else TenantId(tenant_id)


async def put_delivery_target(
    conn: Connection, tenant_id: TenantId, url: str, secret: Sealed
) -> Record:
    row = await conn.fetchrow(
        "INSERT INTO delivery_targets (tenant_id, url, secret_key_id, secret_sealed) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, "
        "secret_key_id = excluded.secret_key_id, secret_sealed = excluded.secret_sealed, "
        "updated_at = now() RETURNING url, updated_at",
        tenant_id,
        url,
        secret.key_id,
        secret.blob,
    )
    assert row is not None
    return row


async def get_delivery_target(conn: Connection, tenant_id: TenantId) -> Record | None:
    return await conn.fetchrow(
        "SELECT url, secret_key_id, secret_sealed, updated_at FROM delivery_targets "
        "WHERE tenant_id = $1",
        tenant_id,
    )


async def all_delivery_secrets(conn: Connection) -> list[Record]:
    return list(
        await conn.fetch(
            "SELECT tenant_id, secret_key_id, secret_sealed FROM delivery_targets FOR UPDATE"
        )
    )


async def reseal_delivery_secret(conn: Connection, tenant_id: str, secret: Sealed) -> None:
    await conn.execute(
        "UPDATE delivery_targets SET secret_key_id = $2, secret_sealed = $3 WHERE tenant_id = $1",
        tenant_id,
        secret.key_id,
        secret.blob,
    )


async def insert_trunk(
    conn: Connection, trunk_id: TrunkId, tenant_id: TenantId, name: str
) -> Trunk:
    row = await conn.fetchrow(
        f"INSERT INTO trunks (id, tenant_id, name) VALUES ($1, $2, $3) RETURNING {_TRUNK}",
        trunk_id,
        tenant_id,
        name,
    )
    assert row is not None
    return _trunk(row)


async def get_trunk(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> Trunk | None:
    row = await conn.fetchrow(
        f"SELECT {_TRUNK} FROM trunks WHERE tenant_id = $1 AND id = $2", tenant_id, trunk_id
    )
    return None if row is None else _trunk(row)


async def list_trunks(conn: Connection, tenant_id: TenantId, after: str, limit: int) -> list[Trunk]:
    rows = await conn.fetch(
        f"SELECT {_TRUNK} FROM trunks WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        tenant_id,
        after,
        limit,
    )
    return [_trunk(r) for r in rows]


async def trunk_ids(conn: Connection, tenant_id: TenantId) -> set[str]:
    rows = await conn.fetch("SELECT id FROM trunks WHERE tenant_id = $1", tenant_id)
    return {r["id"] for r in rows}


async def rename_trunk(
    conn: Connection, tenant_id: TenantId, trunk_id: TrunkId, name: str
) -> Trunk | None:
    row = await conn.fetchrow(
        f"UPDATE trunks SET name = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2 "
        f"RETURNING {_TRUNK}",
        tenant_id,
        trunk_id,
        name,
    )
    return None if row is None else _trunk(row)


async def trunk_in_outbound_rules(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM outbound_rules WHERE tenant_id = $1 AND $2 = ANY (trunks))",
        tenant_id,
        trunk_id,
    )
    return found


async def delete_trunk(conn: Connection, tenant_id: TenantId, trunk_id: TrunkId) -> bool:
    status = await conn.execute(
        "DELETE FROM trunks WHERE tenant_id = $1 AND id = $2", tenant_id, trunk_id
    )
    return status == "DELETE 1"
