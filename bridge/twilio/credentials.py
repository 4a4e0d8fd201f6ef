"""A configuration's Twilio credentials, opened from their sealed form when a request needs them."""

from __future__ import annotations

from bridge.crypto import SecretBox, StoredSecrets, config_secret_context
from bridge.twilio.client import Credentials


def rest_credentials(
    box: SecretBox,
    config_id: str,
    account_sid: str,
    api_key_sid: str | None,
    secrets: StoredSecrets,
) -> Credentials:
    """HTTP Basic for Twilio's REST API: the API key if there is one, else the auth token."""
    key_secret = secrets.api_key_secret_sealed()
    if api_key_sid and key_secret is not None:
        password = box.open(key_secret, config_secret_context(config_id, "api_key_secret"))
        return Credentials(account_sid, api_key_sid, password)
    return Credentials(account_sid, account_sid, signing_token(box, config_id, secrets))


def signing_token(box: SecretBox, config_id: str, secrets: StoredSecrets) -> str:
    """The account's auth token: Twilio signs webhooks with it, also for API-key configurations."""
    return box.open(secrets.auth_token_sealed(), config_secret_context(config_id, "auth_token"))
