"""Service: check a configuration's credentials against Twilio, as the portal's "Test" button."""

from __future__ import annotations

from bridge.crypto import SecretBox
from bridge.db import sms_configs as repo
from bridge.db.pool import Database
from bridge.errors import NotFound
from bridge.models import ConfigId, CredentialsCheck, TenantId, TwilioAccount
from bridge.twilio.client import Credentials, TwilioClient
from bridge.twilio.credentials import rest_credentials


class CredentialCheck:
    """An account fetch for an auth token or a Main key; a one-item list for a Standard key."""

    def __init__(self, db: Database, box: SecretBox, twilio: TwilioClient) -> None:
        self._db = db
        self._box = box
        self._twilio = twilio

    async def credentials(self, tenant_id: TenantId, config_id: ConfigId) -> Credentials:
        async with self._db.connection() as conn:
            row = await repo.get(conn, tenant_id, config_id)
        if row is None:
            raise NotFound("SMS configuration not found")
        return rest_credentials(self._box, row.id, row.account_sid, row.api_key_sid, row.secrets)

    async def validate(self, tenant_id: TenantId, config_id: ConfigId) -> CredentialsCheck:
        creds = await self.credentials(tenant_id, config_id)
        account = await self._twilio.check_credentials(creds)
        if account is None:
            return CredentialsCheck(ok=True, checked_with="messages_list", account=None)
        return CredentialsCheck(
            ok=True,
            checked_with="account",
            account=TwilioAccount(
                sid=account.sid,
                status=account.status,
                type=account.type,
                friendly_name=account.friendly_name,
            ),
        )
