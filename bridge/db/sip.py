"""Repository: a tenant's SIP settings, and who a MESSAGE from the PBX comes from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.crypto import Sealed
from bridge.db.pool import Connection, Record
from bridge.models import DigestAlgorithm, TenantId

_COLUMNS = """tenant_id, enabled, domain, proxy, allowed_sources::text[] AS allowed_sources,
    auth_username, secrets_key_id, auth_password_sealed, inbound_password_sealed, max_age_hours,
    notify_failures, inbound_digest, created_at, updated_at"""

_GET = f"SELECT {_COLUMNS} FROM sip_settings WHERE tenant_id = $1"

_PUT = f"""
INSERT INTO sip_settings (tenant_id, enabled, domain, proxy, allowed_sources, auth_username,
    secrets_key_id, auth_password_sealed, inbound_password_sealed, max_age_hours, notify_failures,
    inbound_digest)
VALUES ($1, $2, $3, $4, $5::cidr[], $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled, domain = excluded.domain,
    proxy = excluded.proxy, allowed_sources = excluded.allowed_sources,
    auth_username = excluded.auth_username, secrets_key_id = excluded.secrets_key_id,
    auth_password_sealed = excluded.auth_password_sealed,
    inbound_password_sealed = excluded.inbound_password_sealed,
    max_age_hours = excluded.max_age_hours, notify_failures = excluded.notify_failures,
    inbound_digest = excluded.inbound_digest, updated_at = now()
RETURNING {_COLUMNS}
"""

_DELETE = "DELETE FROM sip_settings WHERE tenant_id = $1"

_DOMAIN_TAKEN = """
SELECT EXISTS (SELECT 1 FROM sip_settings WHERE lower(domain) = lower($1) AND tenant_id <> $2)
"""

# The tenant whose domain is the From host and whose sources hold the sender's address.
_FOR_SOURCE = f"""
SELECT {_COLUMNS} FROM sip_settings
WHERE enabled AND lower(domain) = lower($1) AND $2::inet <<= ANY (allowed_sources)
"""

_ALL_SEALED = f"SELECT {_COLUMNS} FROM sip_settings FOR UPDATE"

_RESEAL = """
UPDATE sip_settings SET secrets_key_id = $2, auth_password_sealed = $3,
       inbound_password_sealed = $4
WHERE tenant_id = $1
"""


@dataclass(frozen=True)
class SipSettingsValues:
    """What a tenant's SIP settings hold; the passwords sealed under ``key_id``."""

    enabled: bool
    domain: str
    proxy: str
    allowed_sources: list[str]
    auth_username: str | None
    key_id: str
    auth_password: bytes | None
    inbound_password: bytes | None
    max_age_hours: float
    notify_failures: bool
    inbound_digest: list[DigestAlgorithm]

    def sealed(self, blob: bytes | None) -> Sealed | None:
        return None if blob is None else Sealed(self.key_id, blob)


@dataclass(frozen=True)
class SipSettingsRow:
    """A tenant's SIP settings as stored."""

    tenant_id: TenantId
    values: SipSettingsValues
    created_at: datetime
    updated_at: datetime


def _row(r: Record) -> SipSettingsRow:
    return SipSettingsRow(
        tenant_id=TenantId(r["tenant_id"]),
        values=SipSettingsValues(
            enabled=r["enabled"],
            domain=r["domain"],
            proxy=r["proxy"],
            allowed_sources=list(r["allowed_sources"]),
            auth_username=r["auth_username"],
            key_id=r["secrets_key_id"],
            auth_password=r["auth_password_sealed"],
            inbound_password=r["inbound_password_sealed"],
            max_age_hours=r["max_age_hours"],
            notify_failures=r["notify_failures"],
            inbound_digest=[a for a in r["inbound_digest"] if a == "SHA-256" or a == "MD5"],
        ),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


async def get(conn: Connection, tenant_id: TenantId) -> SipSettingsRow | None:
    row = await conn.fetchrow(_GET, tenant_id)
    return None if row is None else _row(row)


async def put(conn: Connection, tenant_id: TenantId, v: SipSettingsValues) -> SipSettingsRow:
    row = await conn.fetchrow(
        _PUT,
        tenant_id,
        v.enabled,
        v.domain,
        v.proxy,
        v.allowed_sources,
        v.auth_username,
        v.key_id,
        v.auth_password,
        v.inbound_password,
        v.max_age_hours,
        v.notify_failures,
        v.inbound_digest,
    )
    assert row is not None
    return _row(row)


async def delete(conn: Connection, tenant_id: TenantId) -> bool:
    return await conn.execute(_DELETE, tenant_id) == "DELETE 1"


async def domain_taken(conn: Connection, domain: str, tenant_id: TenantId) -> bool:
    taken: bool = await conn.fetchval(_DOMAIN_TAKEN, domain, tenant_id)
    return taken


async def for_source(conn: Connection, domain: str, address: str) -> SipSettingsRow | None:
    """The enabled settings with this domain whose allowed sources hold ``address``."""
    row = await conn.fetchrow(_FOR_SOURCE, domain, address)
    return None if row is None else _row(row)


async def all_sealed(conn: Connection) -> list[SipSettingsRow]:
    """Every tenant's settings, locked for the caller's transaction (to re-seal passwords)."""
    return [_row(r) for r in await conn.fetch(_ALL_SEALED)]


async def reseal(conn: Connection, tenant_id: TenantId, v: SipSettingsValues) -> None:
    await conn.execute(_RESEAL, tenant_id, v.key_id, v.auth_password, v.inbound_password)
