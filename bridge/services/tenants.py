"""Service: tenants, tenant tokens, delivery targets, trunks, and who a bearer token is."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from bridge.crypto import SecretBox, delivery_secret_context, hash_token, new_token
from bridge.db import tenants as repo
from bridge.db.pool import Database
from bridge.errors import InUse, NotFound, TenantNotFound
from bridge.ids import new_id
from bridge.models import (
    DeliveryTarget,
    DeliveryTargetPut,
    IssuedToken,
    Page,
    Tenant,
    TenantCreate,
    TenantId,
    TenantPatch,
    TenantToken,
    TokenCreate,
    TokenId,
    Trunk,
    TrunkCreate,
    TrunkId,
    TrunkPatch,
    make_page,
)

TENANT_TOKEN_PREFIX = "sbt"


@dataclass(frozen=True)
class Admin:
    """The system administrator: every tenant."""


@dataclass(frozen=True)
class TenantPrincipal:
    """A tenant token's holder: one tenant only."""

    tenant_id: TenantId


Principal = Admin | TenantPrincipal


class TenantService:
    """Tenants and everything that hangs directly off a tenant."""

    def __init__(self, db: Database, box: SecretBox, admin_token: str) -> None:
        self._db = db
        self._box = box
        self._admin_token = admin_token.encode("utf-8")

    async def authenticate(self, token: str) -> Principal | None:
        """Admin token by constant-time comparison; tenant tokens by their hash."""
        if hmac.compare_digest(token.encode("utf-8"), self._admin_token):
            return Admin()
        if not token.startswith(f"{TENANT_TOKEN_PREFIX}_"):
            return None
        async with self._db.connection() as conn:
            tenant_id = await repo.tenant_for_token(conn, hash_token(token))
        return None if tenant_id is None else TenantPrincipal(tenant_id)

    async def create(self, body: TenantCreate) -> Tenant:
        async with self._db.transaction() as conn:
            return await repo.insert_tenant(conn, TenantId(new_id("ten")), body)

    async def get(self, tenant_id: TenantId) -> Tenant:
        async with self._db.connection() as conn:
            return await repo.require_tenant(conn, tenant_id)

    async def list(self, cursor: str | None, limit: int) -> Page[Tenant]:
        async with self._db.connection() as conn:
            items = await repo.list_tenants(conn, cursor or "", limit + 1)
        return make_page(items, limit, lambda t: t.id)

    async def update(self, tenant_id: TenantId, patch: TenantPatch) -> Tenant:
        async with self._db.transaction() as conn:
            tenant = await repo.update_tenant(conn, tenant_id, patch)
        if tenant is None:
            raise TenantNotFound()
        return tenant

    async def delete(self, tenant_id: TenantId) -> None:
        async with self._db.transaction() as conn:
            if not await repo.delete_tenant(conn, tenant_id):
                raise TenantNotFound()

    async def issue_token(self, tenant_id: TenantId, body: TokenCreate) -> IssuedToken:
        token = new_token(TENANT_TOKEN_PREFIX)
        async with self._db.transaction() as conn:
            await repo.require_tenant(conn, tenant_id)
            stored = await repo.insert_token(
                conn, TokenId(new_id("tok")), tenant_id, hash_token(token), body.label
            )
        return IssuedToken(**stored.model_dump(), token=token)

    async def list_tokens(self, tenant_id: TenantId) -> Page[TenantToken]:
        async with self._db.connection() as conn:
            await repo.require_tenant(conn, tenant_id)
            return Page(items=await repo.list_tokens(conn, tenant_id))

    async def revoke_token(self, tenant_id: TenantId, token_id: TokenId) -> None:
        async with self._db.transaction() as conn:
            if not await repo.revoke_token(conn, tenant_id, token_id):
                raise NotFound("token not found")

    async def put_delivery_target(
        self, tenant_id: TenantId, body: DeliveryTargetPut
    ) -> DeliveryTarget:
        sealed = self._box.seal(body.secret, delivery_secret_context(tenant_id))
        async with self._db.transaction() as conn:
            await repo.require_tenant(conn, tenant_id)
            row = await repo.put_delivery_target(conn, tenant_id, body.url, sealed)
        return DeliveryTarget(url=row.url, secret_set=True, updated_at=row.updated_at)

    async def get_delivery_target(self, tenant_id: TenantId) -> DeliveryTarget:
        async with self._db.connection() as conn:
            await repo.require_tenant(conn, tenant_id)
            row = await repo.get_delivery_target(conn, tenant_id)
        if row is None:
            raise NotFound("no delivery target is set for this tenant")
        return DeliveryTarget(url=row.url, secret_set=True, updated_at=row.updated_at)

    async def reseal_delivery_secrets(self) -> int:
        """Re-encrypt delivery secrets sealed under an older key; returns how many changed."""
        changed = 0
        async with self._db.transaction() as conn:
            for target in await repo.all_delivery_targets(conn):
                if target.secret.key_id == self._box.current_key_id:
                    continue
                context = delivery_secret_context(target.tenant_id)
                plain = self._box.open(target.secret, context)
                await repo.reseal_delivery_secret(
                    conn, target.tenant_id, self._box.seal(plain, context)
                )
                changed += 1
        return changed

    async def create_trunk(self, tenant_id: TenantId, body: TrunkCreate) -> Trunk:
        async with self._db.transaction() as conn:
            await repo.require_tenant(conn, tenant_id)
            return await repo.insert_trunk(conn, TrunkId(new_id("trk")), tenant_id, body.name)

    async def get_trunk(self, tenant_id: TenantId, trunk_id: TrunkId) -> Trunk:
        async with self._db.connection() as conn:
            trunk = await repo.get_trunk(conn, tenant_id, trunk_id)
        if trunk is None:
            raise NotFound("trunk not found")
        return trunk

    async def list_trunks(self, tenant_id: TenantId, cursor: str | None, limit: int) -> Page[Trunk]:
        async with self._db.connection() as conn:
            await repo.require_tenant(conn, tenant_id)
            items = await repo.list_trunks(conn, tenant_id, cursor or "", limit + 1)
        return make_page(items, limit, lambda t: t.id)

    async def update_trunk(
        self, tenant_id: TenantId, trunk_id: TrunkId, patch: TrunkPatch
    ) -> Trunk:
        if patch.name is None:
            return await self.get_trunk(tenant_id, trunk_id)
        async with self._db.transaction() as conn:
            trunk = await repo.rename_trunk(conn, tenant_id, trunk_id, patch.name)
        if trunk is None:
            raise NotFound("trunk not found")
        return trunk

    async def delete_trunk(self, tenant_id: TenantId, trunk_id: TrunkId) -> None:
        async with self._db.transaction() as conn:
            if await repo.get_trunk(conn, tenant_id, trunk_id) is None:
                raise NotFound("trunk not found")
            if await repo.trunk_in_outbound_rules(conn, tenant_id, trunk_id):
                raise InUse("the trunk is named by an outbound rule; change the rules first")
            await repo.delete_trunk(conn, tenant_id, trunk_id)
