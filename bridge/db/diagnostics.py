"""Repository: what the diagnosis reads (design §11) — on demand, from the rows the bridge
keeps anyway, so that nothing on the webhook path is spent on it.

Messages are read by id range: ids begin with their creation time, so "the last 24 hours"
is a range of the (tenant, id) index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.db.pool import Connection
from bridge.models import ConfigId, SignatureCause, TenantId

_INBOUND = """
SELECT count(*) AS accepted, max(created_at) AS last_at,
       count(*) FILTER (WHERE status = 'unroutable') AS unroutable,
       -- An RCS sender id is the Messaging Service's, not a number of the configuration.
       count(*) FILTER (WHERE NOT to_number = ANY ($4::text[]) AND channel <> 'rcs')
           AS unknown_number
FROM messages
WHERE tenant_id = $1 AND id >= $2 AND config_id = $3 AND direction = 'inbound'
"""

_LAST_INBOUND = """
SELECT max(created_at) FROM messages
WHERE tenant_id = $1 AND config_id = $2 AND direction = 'inbound' AND id >= $3
"""

_REFUSED = """
SELECT outcome, sum(count)::int AS n FROM webhook_counts
WHERE config_id = $1 AND hour >= date_trunc('hour', now() - interval '24 hours')
GROUP BY outcome
"""

_SIGNATURE_FAILURES = """
SELECT at, cause, detail FROM signature_failures
WHERE config_id = $1 AND at > now() - interval '24 hours'
ORDER BY at DESC LIMIT $2
"""

_QUEUED = """
SELECT count(*) AS queued, extract(epoch FROM now() - min(m.created_at))::float8 AS oldest
FROM sends s JOIN senders p ON p.sender_key = s.sender_key JOIN messages m ON m.id = s.message_id
WHERE p.config_id = $1 AND s.state = 'queued'
"""

_FAILED = """
SELECT error_code, count(*)::int AS n, max(error_message) AS text FROM messages
WHERE tenant_id = $1 AND id >= $2 AND config_id = $3 AND direction = 'outbound'
  AND status IN ('failed', 'undelivered')
GROUP BY error_code ORDER BY n DESC
"""


def _channel_statement(table: str, status: str) -> str:
    """A delivery channel's backlog: its open rows are few and have a partial index of their
    own, and so have its dead ones (both tables have the same shape for this)."""
    return f"""
WITH open AS (
    SELECT created_at, last_error, seq FROM {table}
    WHERE {status} IN ('held', 'pending') AND tenant_id = $1),
dead AS (
    SELECT last_error, seq FROM {table}
    WHERE {status} = 'dead' AND tenant_id = $1 AND created_at > now() - interval '1 day')
SELECT (SELECT count(*) FROM open) AS pending,
       (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM open) AS oldest,
       (SELECT count(*) FROM dead) AS dead,
       (SELECT last_error FROM (SELECT * FROM open UNION ALL SELECT now(), * FROM dead) e
        WHERE last_error IS NOT NULL ORDER BY seq DESC LIMIT 1) AS last_error
"""


_EVENTS = _channel_statement("events", "delivery_status")

_SIP = _channel_statement("sip_deliveries", "status")

_TENANT_SETUP = """
SELECT EXISTS (SELECT 1 FROM delivery_targets WHERE tenant_id = $1) AS webhook,
       EXISTS (SELECT 1 FROM sip_settings WHERE tenant_id = $1 AND enabled) AS sip,
       EXISTS (SELECT 1 FROM inbound_rules WHERE tenant_id = $1 AND enabled) AS rules
"""


@dataclass(frozen=True)
class InboundFacts:
    accepted: int
    last_at: datetime | None
    unroutable: int
    unknown_number: int
    refused: dict[str, int]


@dataclass(frozen=True)
class FailureFact:
    at: datetime
    cause: SignatureCause
    detail: str


@dataclass(frozen=True)
class QueueFacts:
    waiting: int
    oldest_seconds: float | None


@dataclass(frozen=True)
class ChannelFacts:
    pending: int
    oldest_seconds: float | None
    dead_last_24h: int
    last_error: str | None


@dataclass(frozen=True)
class TenantFacts:
    has_webhook: bool
    has_sip: bool
    has_inbound_rule: bool


async def inbound(
    conn: Connection,
    tenant_id: TenantId,
    config_id: ConfigId,
    numbers: list[str],
    *,
    day_id: str,
    month_id: str,
) -> InboundFacts:
    """The last day's inbound texts (ids from ``day_id``); the last one looked for in the
    last month (from ``month_id``) when there was none that day."""
    row = await conn.fetchrow(_INBOUND, tenant_id, day_id, config_id, numbers)
    assert row is not None
    last_at = row["last_at"]
    if last_at is None:
        last_at = await conn.fetchval(_LAST_INBOUND, tenant_id, config_id, month_id)
    refused = {r["outcome"]: r["n"] for r in await conn.fetch(_REFUSED, config_id)}
    return InboundFacts(row["accepted"], last_at, row["unroutable"], row["unknown_number"], refused)


async def signature_failures(
    conn: Connection, config_id: ConfigId, limit: int = 10
) -> list[FailureFact]:
    rows = await conn.fetch(_SIGNATURE_FAILURES, config_id, limit)
    return [FailureFact(r["at"], r["cause"], r["detail"]) for r in rows]


async def queued(conn: Connection, config_id: ConfigId) -> QueueFacts:
    row = await conn.fetchrow(_QUEUED, config_id)
    assert row is not None
    return QueueFacts(row["queued"], row["oldest"])


async def failed(
    conn: Connection, tenant_id: TenantId, config_id: ConfigId, since_id: str
) -> list[tuple[int | None, int, str | None]]:
    """Outbound texts of the period that failed, by Twilio error code, most first."""
    rows = await conn.fetch(_FAILED, tenant_id, since_id, config_id)
    return [(r["error_code"], r["n"], r["text"]) for r in rows]


async def webhook_channel(conn: Connection, tenant_id: TenantId) -> ChannelFacts:
    return await _channel(conn, _EVENTS, tenant_id)


async def sip_channel(conn: Connection, tenant_id: TenantId) -> ChannelFacts:
    return await _channel(conn, _SIP, tenant_id)


async def _channel(conn: Connection, statement: str, tenant_id: TenantId) -> ChannelFacts:
    row = await conn.fetchrow(statement, tenant_id)
    assert row is not None
    return ChannelFacts(row["pending"], row["oldest"], row["dead"], row["last_error"])


async def tenant_setup(conn: Connection, tenant_id: TenantId) -> TenantFacts:
    row = await conn.fetchrow(_TENANT_SETUP, tenant_id)
    assert row is not None
    return TenantFacts(row["webhook"], row["sip"], row["rules"])
