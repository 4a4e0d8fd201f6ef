"""Service: SMS configurations, their numbers, secrets and webhook URLs."""

from __future__ import annotations

import secrets

from bridge.crypto import SecretBox, StoredSecrets, config_secret_context
from bridge.db import outbound as outbound_repo
from bridge.db import sms_configs as repo
from bridge.db import statuses
from bridge.db import tenants as tenants_repo
from bridge.db.pool import Database
from bridge.db.sms_configs import ConfigRow, ConfigValues
from bridge.errors import Conflict, InvalidInput, NotFound
from bridge.ids import new_id
from bridge.models import (
    ApiKeyCredential,
    AuthTokenCredential,
    ConfigId,
    CredentialOut,
    Page,
    SmsConfig,
    SmsConfigCreate,
    SmsConfigPatch,
    TenantId,
    make_page,
)
from bridge.urls import PublicUrls

NUMBER_TAKEN = "a number is already used by another SMS configuration"
CONFIG_DELETED = "the SMS configuration was deleted before this text was sent"


def new_webhook_token() -> str:
    """192 random bits, URL-safe: unguessable, and short enough for the Twilio console."""
    return secrets.token_urlsafe(24)


class SmsConfigService:
    """Create, read, change and rotate SMS configurations."""

    def __init__(
        self, db: Database, box: SecretBox, urls: PublicUrls, grace_seconds: float
    ) -> None:
        self._db = db
        self._box = box
        self._urls = urls
        self._grace = grace_seconds

    def view(self, row: ConfigRow) -> SmsConfig:
        return SmsConfig(
            id=row.id,
            tenant_id=row.tenant_id,
            trunk_id=row.trunk_id,
            name=row.name,
            account_sid=row.account_sid,
            credential=CredentialOut(
                type=row.credential_type,
                api_key_sid=row.api_key_sid,
                auth_token_last4=row.auth_token_last4,
            ),
            sender_id=row.sender_id,
            messaging_service_sid=row.messaging_service_sid,
            numbers=row.numbers,
            allowed_countries=row.allowed_countries,
            enabled=row.enabled,
            auto_setup=row.auto_setup,
            webhook_url=self._urls.inbound(row.webhook_token),
            status_callback_url=self._urls.status_callback(row.webhook_token),
            previous_webhook_valid_until=row.previous_valid_until,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _seal(
        self, config_id: ConfigId, credential: AuthTokenCredential | ApiKeyCredential
    ) -> StoredSecrets:
        token = self._box.seal(
            credential.auth_token, config_secret_context(config_id, "auth_token")
        )
        key_secret = (
            self._box.seal(
                credential.api_key_secret, config_secret_context(config_id, "api_key_secret")
            )
            if isinstance(credential, ApiKeyCredential)
            else None
        )
        return StoredSecrets(
            token.key_id, token.blob, None if key_secret is None else key_secret.blob
        )

    async def default_country(self, tenant_id: TenantId) -> str:
        async with self._db.connection() as conn:
            return (await tenants_repo.require_tenant(conn, tenant_id)).default_country

    async def create(self, tenant_id: TenantId, body: SmsConfigCreate) -> SmsConfig:
        config_id = ConfigId(new_id("cfg"))
        credential = body.credential
        async with self._db.transaction() as conn:
            country = (await tenants_repo.require_tenant(conn, tenant_id)).default_country
            if await tenants_repo.get_trunk(conn, tenant_id, body.trunk_id) is None:
                raise InvalidInput.field("trunk_id", "no such trunk in this tenant")
            if await repo.trunk_has_config(conn, body.trunk_id):
                raise Conflict("this trunk already has an SMS configuration")
            if await repo.numbers_taken(conn, [n.number for n in body.numbers], None):
                raise Conflict(NUMBER_TAKEN)
            values = ConfigValues(
                name=body.name,
                account_sid=body.account_sid,
                credential_type=credential.type,
                api_key_sid=credential.api_key_sid
                if isinstance(credential, ApiKeyCredential)
                else None,
                auth_token_last4=credential.auth_token[-4:],
                secrets=self._seal(config_id, credential),
                sender_id=body.sender_id,
                messaging_service_sid=body.messaging_service_sid,
                allowed_countries=body.allowed_countries
                if body.allowed_countries is not None
                else [country],
                enabled=body.enabled,
                auto_setup=body.auto_setup,
            )
            await repo.insert(conn, config_id, tenant_id, body.trunk_id, values)
            await repo.replace_numbers(conn, config_id, tenant_id, body.numbers)
            await repo.insert_webhook_token(conn, config_id, new_webhook_token())
            row = await repo.get(conn, tenant_id, config_id)
        assert row is not None
        return self.view(row)

    async def get(self, tenant_id: TenantId, config_id: ConfigId) -> SmsConfig:
        async with self._db.connection() as conn:
            row = await repo.get(conn, tenant_id, config_id)
        if row is None:
            raise NotFound("SMS configuration not found")
        return self.view(row)

    async def list(self, tenant_id: TenantId, cursor: str | None, limit: int) -> Page[SmsConfig]:
        async with self._db.connection() as conn:
            await tenants_repo.require_tenant(conn, tenant_id)
            rows = await repo.list_page(conn, tenant_id, cursor or "", limit + 1)
        return make_page([self.view(r) for r in rows], limit, lambda c: c.id)

    async def update(
        self, tenant_id: TenantId, config_id: ConfigId, patch: SmsConfigPatch
    ) -> SmsConfig:
        async with self._db.transaction() as conn:
            row = await repo.get_for_update(conn, tenant_id, config_id)
            if row is None:
                raise NotFound("SMS configuration not found")
            values = self._patched(row, patch)
            await repo.update(conn, config_id, values)
            if patch.numbers is not None:
                if await repo.numbers_taken(conn, [n.number for n in patch.numbers], config_id):
                    raise Conflict(NUMBER_TAKEN)
                await repo.replace_numbers(conn, config_id, tenant_id, patch.numbers)
            updated = await repo.get(conn, tenant_id, config_id)
        assert updated is not None
        return self.view(updated)

    def _patched(self, row: ConfigRow, patch: SmsConfigPatch) -> ConfigValues:
        given = patch.model_fields_set
        credential = patch.credential
        if credential is None:
            cred_type, key_sid, last4, sealed = (
                row.credential_type,
                row.api_key_sid,
                row.auth_token_last4,
                row.secrets,
            )
        else:
            cred_type = credential.type
            key_sid = credential.api_key_sid if isinstance(credential, ApiKeyCredential) else None
            last4 = credential.auth_token[-4:]
            sealed = self._seal(row.id, credential)
        return ConfigValues(
            name=patch.name or row.name,
            account_sid=patch.account_sid or row.account_sid,
            credential_type=cred_type,
            api_key_sid=key_sid,
            auth_token_last4=last4,
            secrets=sealed,
            # Optional fields may be cleared with an explicit null.
            sender_id=patch.sender_id if "sender_id" in given else row.sender_id,
            messaging_service_sid=patch.messaging_service_sid
            if "messaging_service_sid" in given
            else row.messaging_service_sid,
            allowed_countries=patch.allowed_countries
            if patch.allowed_countries is not None
            else row.allowed_countries,
            enabled=row.enabled if patch.enabled is None else patch.enabled,
            auto_setup=row.auto_setup if patch.auto_setup is None else patch.auto_setup,
        )

    async def rotate_webhook(self, tenant_id: TenantId, config_id: ConfigId) -> SmsConfig:
        """Issue a new webhook token; the old one keeps working for the grace period."""
        async with self._db.transaction() as conn:
            if await repo.get_for_update(conn, tenant_id, config_id) is None:
                raise NotFound("SMS configuration not found")
            await repo.retire_webhook_token(conn, config_id, self._grace)
            await repo.insert_webhook_token(conn, config_id, new_webhook_token())
            row = await repo.get(conn, tenant_id, config_id)
        assert row is not None
        return self.view(row)

    async def delete(self, tenant_id: TenantId, config_id: ConfigId) -> None:
        """Texts still queued on it fail (and the PBX hears so) rather than wait forever."""
        async with self._db.transaction() as conn:
            queued = await outbound_repo.queued_for_config(conn, config_id)
            await statuses.advance(
                conn,
                [
                    statuses.StatusMove(message_id, "failed", None, CONFIG_DELETED)
                    for message_id in queued
                ],
            )
            if not await repo.delete(conn, tenant_id, config_id):
                raise NotFound("SMS configuration not found")

    async def reseal_all(self) -> int:
        """Re-encrypt every stored secret with the current key; returns how many changed."""
        changed = 0
        async with self._db.transaction() as conn:
            for config in await repo.all_sealed(conn):
                stored = config.secrets
                if stored.key_id == self._box.current_key_id:
                    continue
                token_ctx = config_secret_context(config.id, "auth_token")
                token = self._box.seal(
                    self._box.open(stored.auth_token_sealed(), token_ctx), token_ctx
                )
                old_secret = stored.api_key_secret_sealed()
                new_secret = None
                if old_secret is not None:
                    ctx = config_secret_context(config.id, "api_key_secret")
                    new_secret = self._box.seal(self._box.open(old_secret, ctx), ctx).blob
                await repo.reseal(
                    conn, config.id, StoredSecrets(token.key_id, token.blob, new_secret)
                )
                changed += 1
        return changed
