"""Service: who a Twilio webhook is for (its token) and whether Twilio sent it (its signature)."""

from __future__ import annotations

import time

from bridge.crypto import SecretBox
from bridge.db import sms_configs as configs_repo
from bridge.db.pool import Database
from bridge.db.sms_configs import WebhookConfig
from bridge.errors import BadSignature, NotFound
from bridge.log import get_logger
from bridge.twilio.credentials import signing_token
from bridge.twilio.signature import validate_request
from bridge.twilio.webhooks import Params

__all__ = ["WebhookAuth", "WebhookConfig"]

log = get_logger(__name__)

CONFIG_CACHE_SECONDS = 1.0
CONFIG_CACHE_SIZE = 10_000


class UnknownToken(NotFound):
    """No configuration has this webhook token (or its grace period is over)."""

    code = "unknown_token"


class WebhookAuth:
    """Resolves webhook tokens (remembered for a second) and checks Twilio's signatures."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self._cache: dict[str, tuple[float, WebhookConfig | None]] = {}

    async def config_for(self, token: str) -> WebhookConfig:
        """The token's configuration, remembered for a second: Twilio sends in bursts, and a
        change (disable, rotation grace ending) may take that second to be seen."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            config = cached[1]
        else:
            async with self._db.connection() as conn:
                config = await configs_repo.webhook_config(conn, token)
            if len(self._cache) >= CONFIG_CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = (now + CONFIG_CACHE_SECONDS, config)
        if config is None:
            raise UnknownToken()
        return config

    def verify(
        self,
        config: WebhookConfig,
        *,
        kind: str,
        url: str,
        params: Params,
        raw_body: bytes,
        content_type: str,
        signature: str | None,
    ) -> None:
        """Twilio signs with the account's auth token, also when we send with an API key."""
        token = signing_token(self._box, config.id, config.secrets)
        if not validate_request(
            url=url,
            params=params,
            raw_body=raw_body,
            content_type=content_type,
            signature=signature,
            auth_tokens=(token,),
        ):
            log.warning("webhook.bad_signature", kind=kind, config_id=config.id)
            raise BadSignature()
