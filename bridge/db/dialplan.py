"""Repository: a tenant's extensions and its inbound and outbound rules (ordered lists)."""

from __future__ import annotations

from bridge.db.pool import Connection, Record
from bridge.models import Extension, InboundRule, OutboundRule, TenantId, TrunkId

_EXTENSION = "extension, name, dids, default_did, sip_uri, sip"

_GET_EXTENSIONS = f"SELECT {_EXTENSION} FROM extensions WHERE tenant_id = $1 ORDER BY position"

_GET_EXTENSION = f"SELECT {_EXTENSION} FROM extensions WHERE tenant_id = $1 AND extension = $2"

_DELETE_EXTENSIONS = "DELETE FROM extensions WHERE tenant_id = $1"

_INSERT_EXTENSION = """
INSERT INTO extensions (tenant_id, extension, position, name, dids, default_did, sip_uri, sip)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_EXTENSION_NAMES = "SELECT extension FROM extensions WHERE tenant_id = $1"

_GET_INBOUND_RULES = """
SELECT name, trunk_id, did, from_pattern, extensions, enabled FROM inbound_rules
WHERE tenant_id = $1 ORDER BY position
"""

# A new version tells every process's rule cache (keyed by it) that the rules changed.
_REPLACE_INBOUND_RULES = """
WITH gone AS (DELETE FROM inbound_rules WHERE tenant_id = $1)
UPDATE tenants SET rules_version = rules_version + 1 WHERE id = $1
"""

_INSERT_INBOUND_RULE = """
INSERT INTO inbound_rules (tenant_id, position, name, trunk_id, did, from_pattern, extensions,
    enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

_GET_OUTBOUND_RULES = """
SELECT name, from_extensions, prefix, min_length, max_length, strip, prepend, trunks, sender,
       enabled
FROM outbound_rules WHERE tenant_id = $1 ORDER BY position
"""

_DELETE_OUTBOUND_RULES = "DELETE FROM outbound_rules WHERE tenant_id = $1"

_INSERT_OUTBOUND_RULE = """
INSERT INTO outbound_rules (tenant_id, position, name, from_extensions, prefix, min_length,
    max_length, strip, prepend, trunks, sender, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""

_EXTENSIONS_USED_BY_RULES = """
SELECT DISTINCT unnest(extensions) AS extension FROM inbound_rules WHERE tenant_id = $1
"""


def _extension(r: Record) -> Extension:
    return Extension.model_construct(
        extension=r["extension"],
        name=r["name"],
        dids=list(r["dids"]),
        default_did=r["default_did"],
        sip_uri=r["sip_uri"],
        sip=r["sip"],
    )


async def get_extensions(conn: Connection, tenant_id: TenantId) -> list[Extension]:
    return [_extension(r) for r in await conn.fetch(_GET_EXTENSIONS, tenant_id)]


async def get_extension(conn: Connection, tenant_id: TenantId, extension: str) -> Extension | None:
    row = await conn.fetchrow(_GET_EXTENSION, tenant_id, extension)
    return None if row is None else _extension(row)


async def replace_extensions(
    conn: Connection, tenant_id: TenantId, extensions: list[Extension]
) -> None:
    await conn.execute(_DELETE_EXTENSIONS, tenant_id)
    await conn.executemany(
        _INSERT_EXTENSION,
        [
            (tenant_id, e.extension, i, e.name, e.dids, e.default_did, e.sip_uri, e.sip)
            for i, e in enumerate(extensions)
        ],
    )


async def extension_names(conn: Connection, tenant_id: TenantId) -> set[str]:
    return {r["extension"] for r in await conn.fetch(_EXTENSION_NAMES, tenant_id)}


async def get_inbound_rules(conn: Connection, tenant_id: TenantId) -> list[InboundRule]:
    return [
        InboundRule.model_construct(
            name=r["name"],
            trunk_id=None if r["trunk_id"] is None else TrunkId(r["trunk_id"]),
            did=r["did"],
            from_=r["from_pattern"],
            extensions=list(r["extensions"]),
            enabled=r["enabled"],
        )
        for r in await conn.fetch(_GET_INBOUND_RULES, tenant_id)
    ]


async def replace_inbound_rules(
    conn: Connection, tenant_id: TenantId, rules: list[InboundRule]
) -> None:
    await conn.execute(_REPLACE_INBOUND_RULES, tenant_id)
    await conn.executemany(
        _INSERT_INBOUND_RULE,
        [
            (tenant_id, i, r.name, r.trunk_id, r.did, r.from_, r.extensions, r.enabled)
            for i, r in enumerate(rules)
        ],
    )


async def get_outbound_rules(conn: Connection, tenant_id: TenantId) -> list[OutboundRule]:
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
        for r in await conn.fetch(_GET_OUTBOUND_RULES, tenant_id)
    ]


async def replace_outbound_rules(
    conn: Connection, tenant_id: TenantId, rules: list[OutboundRule]
) -> None:
    await conn.execute(_DELETE_OUTBOUND_RULES, tenant_id)
    await conn.executemany(
        _INSERT_OUTBOUND_RULE,
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
    return {r["extension"] for r in await conn.fetch(_EXTENSIONS_USED_BY_RULES, tenant_id)}
