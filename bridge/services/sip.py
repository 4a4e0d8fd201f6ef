"""Service: a tenant's SIP settings (design §10), their write-only passwords, and retrying the
texts waiting for a phone."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from bridge.crypto import SecretBox, sip_secret_context
from bridge.db import sip as repo
from bridge.db import sip_deliveries
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Database
from bridge.db.sip import SipSettingsRow, SipSettingsValues
from bridge.errors import Conflict, NotFound
from bridge.models import SipSettings, SipSettingsPut, TenantId

__all__ = ["PasswordKind", "SipSettingsRow", "SipSettingsService", "view"]

PasswordKind = Literal["auth_password", "inbound_password"]


def view(row: SipSettingsRow) -> SipSettings:
    v = row.values
    return SipSettings(
        tenant_id=row.tenant_id,
        enabled=v.enabled,
        domain=v.domain,
        proxy=v.proxy,
        allowed_sources=v.allowed_sources,
        auth_username=v.auth_username,
        auth_password_set=v.auth_password is not None,
        inbound_password_set=v.inbound_password is not None,
        max_age_hours=v.max_age_hours,
        notify_failures=v.notify_failures,
        inbound_digest=v.inbound_digest,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SipSettingsService:
    """Read, replace and remove a tenant's SIP settings; passwords are sealed, never shown."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box

    async def get(self, tenant_id: TenantId) -> SipSettings:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            row = await repo.get(conn, tenant_id)
        if row is None:
            raise NotFound("SIP is not set up for this tenant")
        return view(row)

    async def put(self, tenant_id: TenantId, body: SipSettingsPut) -> SipSettings:
        """Replace the settings. A password left out is kept; one sent as null is removed."""
        given = body.model_fields_set
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            if await repo.domain_taken(conn, body.domain, tenant_id):
                raise Conflict("another tenant uses this SIP domain")
            old = await repo.get(conn, tenant_id)
            passwords: dict[PasswordKind, bytes | None] = {}
            wanted: tuple[tuple[PasswordKind, str | None], ...] = (
                ("auth_password", body.auth_password),
                ("inbound_password", body.inbound_password),
            )
            for kind, new in wanted:
                if kind in given:
                    passwords[kind] = self._seal(tenant_id, kind, new)
                else:
                    passwords[kind] = self._reseal(tenant_id, kind, old)
            row = await repo.put(
                conn,
                tenant_id,
                SipSettingsValues(
                    enabled=body.enabled,
                    domain=body.domain,
                    proxy=body.proxy,
                    allowed_sources=body.allowed_sources,
                    auth_username=body.auth_username,
                    key_id=self._box.current_key_id,
                    auth_password=passwords["auth_password"],
                    inbound_password=passwords["inbound_password"],
                    max_age_hours=body.max_age_hours,
                    notify_failures=body.notify_failures,
                    inbound_digest=list(body.inbound_digest),
                ),
            )
        return view(row)

    def _seal(self, tenant_id: TenantId, kind: PasswordKind, plain: str | None) -> bytes | None:
        if plain is None:
            return None
        return self._box.seal(plain, sip_secret_context(tenant_id, kind)).blob

    def _reseal(
        self, tenant_id: TenantId, kind: PasswordKind, old: SipSettingsRow | None
    ) -> bytes | None:
        """The stored password, sealed again under the current key (the row has one key id)."""
        if old is None:
            return None
        v = old.values
        sealed = v.sealed(v.auth_password if kind == "auth_password" else v.inbound_password)
        if sealed is None:
            return None
        return self._seal(
            tenant_id, kind, self._box.open(sealed, sip_secret_context(tenant_id, kind))
        )

    def password(self, row: SipSettingsRow, kind: PasswordKind) -> str | None:
        """A stored password in the clear, for the SIP exchange that needs it."""
        v = row.values
        sealed = v.sealed(v.auth_password if kind == "auth_password" else v.inbound_password)
        if sealed is None:
            return None
        return self._box.open(sealed, sip_secret_context(row.tenant_id, kind))

    async def for_source(self, domain: str, address: str) -> SipSettingsRow | None:
        """The tenant a MESSAGE from the PBX is from: its domain is the From host and its
        allowed sources hold the sender's address."""
        async with self._db.connection() as conn:
            return await repo.for_source(conn, domain, address)

    async def delete(self, tenant_id: TenantId) -> None:
        """SIP off for the tenant; texts still waiting for a phone are given up (dead)."""
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            if not await repo.delete(conn, tenant_id):
                raise NotFound("SIP is not set up for this tenant")
            await sip_deliveries.give_up_tenant(conn, tenant_id, "SIP was turned off")

    async def retry_extension(self, tenant_id: TenantId, extension: str) -> int:
        """The extension's waiting texts are due now (its phone registered again, say)."""
        async with self._db.transaction() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            return await sip_deliveries.due_now(conn, tenant_id, extension)

    async def reseal_all(self) -> int:
        """Re-encrypt SIP passwords sealed under an older key; how many tenants changed."""
        changed = 0
        async with self._db.transaction() as conn:
            for row in await repo.all_sealed(conn):
                if row.values.key_id == self._box.current_key_id:
                    continue
                values = replace(
                    row.values,
                    key_id=self._box.current_key_id,
                    auth_password=self._reseal(row.tenant_id, "auth_password", row),
                    inbound_password=self._reseal(row.tenant_id, "inbound_password", row),
                )
                await repo.reseal(conn, row.tenant_id, values)
                changed += 1
        return changed
