"""Repository: remote numbers that texted STOP to a configuration (design §5 `opt-outs`)."""

from __future__ import annotations

from bridge.db.pool import Connection
from bridge.models import ConfigId, OptOut, TenantId

_SET = """
INSERT INTO opt_outs (config_id, tenant_id, remote_number, keyword) VALUES ($1, $2, $3, $4)
ON CONFLICT (config_id, remote_number) DO UPDATE SET keyword = excluded.keyword,
    opted_out_at = now()
"""

_CLEAR = "DELETE FROM opt_outs WHERE config_id = $1 AND remote_number = $2"

_IS_OPTED_OUT = """
SELECT EXISTS (SELECT 1 FROM opt_outs WHERE config_id = $1 AND remote_number = $2)
"""

_LIST = """
SELECT config_id, remote_number, keyword, opted_out_at FROM opt_outs
WHERE tenant_id = $1 AND ($2::text IS NULL OR (config_id, remote_number) > ($2, $3))
ORDER BY config_id, remote_number LIMIT $4
"""


async def set_opt_out(
    conn: Connection, config_id: ConfigId, tenant_id: TenantId, remote: str, keyword: str
) -> None:
    await conn.execute(_SET, config_id, tenant_id, remote, keyword)


async def clear_opt_out(conn: Connection, config_id: ConfigId, remote: str) -> None:
    await conn.execute(_CLEAR, config_id, remote)


async def is_opted_out(conn: Connection, config_id: ConfigId, remote: str) -> bool:
    found: bool = await conn.fetchval(_IS_OPTED_OUT, config_id, remote)
    return found


async def list_opt_outs(
    conn: Connection, tenant_id: TenantId, after: tuple[str, str] | None, limit: int
) -> list[OptOut]:
    rows = await conn.fetch(
        _LIST, tenant_id, after[0] if after else None, after[1] if after else None, limit
    )
    return [
        OptOut(
            config_id=ConfigId(r["config_id"]),
            number=r["remote_number"],
            keyword=r["keyword"],
            opted_out_at=r["opted_out_at"],
        )
        for r in rows
    ]
