"""Repository: remote numbers that texted STOP to a configuration, per channel (design §5
`opt-outs`, §12)."""

from __future__ import annotations

from bridge.db.pool import Connection
from bridge.models import ConfigId, OptOut, SendChannel, TenantId

_SET = """
INSERT INTO opt_outs (config_id, tenant_id, remote_number, keyword, channel)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (config_id, remote_number, channel) DO UPDATE SET keyword = excluded.keyword,
    opted_out_at = now()
"""

_CLEAR = "DELETE FROM opt_outs WHERE config_id = $1 AND remote_number = $2 AND channel = $3"

_IS_OPTED_OUT = """
SELECT EXISTS (SELECT 1 FROM opt_outs
               WHERE config_id = $1 AND remote_number = $2 AND channel = $3)
"""

_LIST = """
SELECT config_id, remote_number, channel, keyword, opted_out_at FROM opt_outs
WHERE tenant_id = $1 AND ($2::text IS NULL OR (config_id, remote_number, channel) > ($2, $3, $4))
ORDER BY config_id, remote_number, channel LIMIT $5
"""


async def set_opt_out(
    conn: Connection,
    config_id: ConfigId,
    tenant_id: TenantId,
    remote: str,
    keyword: str,
    channel: SendChannel,
) -> None:
    await conn.execute(_SET, config_id, tenant_id, remote, keyword, channel)


async def clear_opt_out(
    conn: Connection, config_id: ConfigId, remote: str, channel: SendChannel
) -> None:
    await conn.execute(_CLEAR, config_id, remote, channel)


async def is_opted_out(
    conn: Connection, config_id: ConfigId, remote: str, channel: SendChannel
) -> bool:
    found: bool = await conn.fetchval(_IS_OPTED_OUT, config_id, remote, channel)
    return found


async def list_opt_outs(
    conn: Connection, tenant_id: TenantId, after: tuple[str, str, str] | None, limit: int
) -> list[OptOut]:
    """In (configuration, number, channel) order; ``after`` is the last of the previous page."""
    first, number, channel = after if after else (None, None, None)
    rows = await conn.fetch(_LIST, tenant_id, first, number, channel, limit)
    return [
        OptOut(
            config_id=ConfigId(r["config_id"]),
            number=r["remote_number"],
            channel=r["channel"],
            keyword=r["keyword"],
            opted_out_at=r["opted_out_at"],
        )
        for r in rows
    ]
