"""Repository: a tenant's extensions and its inbound and outbound rules (ordered lists)."""

from __future__ import annotations

from bridge.db.pool import Connection
from bridge.models import Extension, InboundRule, OutboundRule, TenantId, TrunkId


async def get_extensions(conn: Connection, tenant_id: TenantId) -> list[Extension]:
    rows = await conn.fetch(
        "SELECT extension, name, dids, default_did FROM extensions "
        "WHERE tenant_id = $1 ORDER BY position",
        tenant_id,
    )
    return [
        Extension.model_construct(
            extension=r["extension"],
            name=r["name"],
            dids=list(r["dids"]),
            default_did=r["default_did"],
        )
        for r in rows
    ]


async def replace_extensions(
    conn: Connection, tenant_id: TenantId, extensions: list[Extension]
) -> None:
    await conn.execute("DELETE FROM extensions WHERE tenant_id = $1", tenant_id)
    await conn.executemany(
        "INSERT INTO extensions (tenant_id, extension, position, name, dids, default_did) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (tenant_id, e.extension, i, e.name, e.dids, e.default_did)
            for i, e in enumerate(extensions)
        ],
    )


async def extension_names(conn: Connection, tenant_id: TenantId) -> set[str]:
    rows = await conn.fetch("SELECT extension FROM extensions WHERE tenant_id = $1", tenant_id)
    return {r["extension"] for r in rows}


async def get_inbound_rules(conn: Connection, tenant_id: TenantId) -> list[InboundRule]:
    rows = await conn.fetch(
        "SELECT name, trunk_id, did, from_pattern, extensions, enabled FROM inbound_rules "
        "WHERE tenant_id = $1 ORDER BY position",
        tenant_id,
    )
    return [
        InboundRule.model_construct(
            name=r["name"],
            trunk_id=None if r["trunk_id"] is None else TrunkId(r["trunk_id"]),
            did=r["did"],
            from_=r["from_pattern"],
            extensions=list(r["extensions"]),
            enabled=r["enabled"],
        )
        for r in rows
    ]


async def replace_inbound_rules(
    conn: Connection, tenant_id: TenantId, rules: list[InboundRule]
) -> None:
    await conn.execute("DELETE FROM inbound_rules WHERE tenant_id = $1", tenant_id)
    await conn.execute(
        "UPDATE tenants SET rules_version = rules_version + 1 WHERE id = $1", tenant_id
    )
    await conn.executemany(
        "INSERT INTO inbound_rules (tenant_id, position, name, trunk_id, did, from_pattern, "
        "extensions, enabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (tenant_id, i, r.name, r.trunk_id, r.did, r.from_, r.extensions, r.enabled)
            for i, r in enumerate(rules)
        ],
    )


async def get_outbound_rules(conn: Connection, tenant_id: TenantId) -> list[OutboundRule]:
    rows = await conn.fetch(
        "SELECT name, from_extensions, prefix, min_length, max_length, strip, prepend, trunks, "
        "sender, enabled FROM outbound_rules WHERE tenant_id = $1 ORDER BY position",
        tenant_id,
    )
    return [
        OutboundRule.model_construct(
            name=r["name"],
            from_extensions=list(r["from_extensions"]),
            prefix=r["prefix"],
            min_length=r["min_length"],
            max_length=r["max_length"],
            strip=r["strip"],
            prepend=r["prepend"],
            trunks=[TrunkId(t) for t in r["trunks"]],
            sender=r["sender"],
            enabled=r["enabled"],
        )
        for r in rows
    ]


async def replace_outbound_rules(
    conn: Connection, tenant_id: TenantId, rules: list[OutboundRule]
) -> None:
    await conn.execute("DELETE FROM outbound_rules WHERE tenant_id = $1", tenant_id)
    await conn.executemany(
        "INSERT INTO outbound_rules (tenant_id, position, name, from_extensions, prefix, "
        "min_length, max_length, strip, prepend, trunks, sender, enabled) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            (
                tenant_id,
                i,
                r.name,
                r.from_extensions,
                r.prefix,
                r.min_length,
                r.max_length,
                r.strip,
                r.prepend,
                r.trunks,
                r.sender,
                r.enabled,
            )
            for i, r in enumerate(rules)
        ],
    )


async def extensions_used_by_rules(conn: Connection, tenant_id: TenantId) -> set[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT unnest(extensions) AS extension FROM inbound_rules WHERE tenant_id = $1",
        tenant_id,
    )
    return {r["extension"] for r in rows}
