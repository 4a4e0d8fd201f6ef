"""Service: who a Twilio webhook is for (its token), whether Twilio sent it (its signature), and
— when the signature fails — which URL Twilio signed instead, so the operator knows what to fix."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import product
from urllib.parse import urlsplit

from bridge.crypto import SecretBox
from bridge.db import sms_configs as configs_repo
from bridge.db.pool import Database
from bridge.db.sms_configs import WebhookConfig
from bridge.db.webhook_counts import Outcome, RefusalLog, SignatureFailure
from bridge.errors import BadSignature, NotFound
from bridge.log import get_logger
from bridge.models import ConfigId, SignatureCause
from bridge.twilio.credentials import signing_token
from bridge.twilio.signature import validate_request, which_url_signed
from bridge.twilio.webhooks import Params

__all__ = ["RequestSeen", "WebhookAuth", "WebhookConfig"]

log = get_logger(__name__)

CONFIG_CACHE_SECONDS = 1.0
CONFIG_CACHE_SIZE = 10_000
# A failing signature is diagnosed (a few dozen HMACs) at most this often per configuration:
# forged webhooks must not buy work.
DIAGNOSE_EVERY_SECONDS = 1.0


class UnknownToken(NotFound):
    """No configuration has this webhook token (or its grace period is over)."""

    code = "unknown_token"


@dataclass(frozen=True)
class RequestSeen:
    """How the webhook reached the listener: what a proxy in front may have changed."""

    path: str
    host: str | None = None
    forwarded_proto: str | None = None
    forwarded_host: str | None = None
    forwarded_port: str | None = None
    forwarded_prefix: str | None = None


def signed_url_candidates(expected: str, seen: RequestSeen, prefix: str) -> list[str]:
    """URLs Twilio may have been given instead of ``expected``: the other scheme, the Host a
    proxy passed, other ports, the path with or without the public prefix (validation
    already accepts both forms of a default port)."""
    parts = urlsplit(expected)
    schemes = _unique(
        [
            parts.scheme,
            "https" if parts.scheme == "http" else "http",
            (seen.forwarded_proto or "").lower(),
        ]
    )
    hosts = _unique([parts.hostname or "", _host_of(seen.host), _host_of(seen.forwarded_host)])
    ports = _unique(
        [
            "" if parts.port is None else str(parts.port),
            _port_of(seen.host),
            seen.forwarded_port or "",
            "",
            "80",
            "443",
            "8080",
            "8443",
        ]
    )
    paths = _unique(
        [
            seen.path,
            seen.path.removeprefix(prefix) if prefix and seen.path.startswith(prefix) else "",
            (seen.forwarded_prefix or "").rstrip("/") + seen.path if seen.forwarded_prefix else "",
        ]
    )
    found = []
    for scheme, host, port, path in product(schemes, hosts, ports, paths):
        if scheme not in ("http", "https") or not host or not path.startswith("/"):
            continue
        netloc = f"[{host}]" if ":" in host else host
        url = f"{scheme}://{netloc}{':' + port if port else ''}{path}"
        if url != expected:
            found.append(url)
    return found


def cause_of(signed: str, expected: str) -> SignatureCause:
    """The first part of the URL that differs: scheme, host, port, then path."""
    a, b = urlsplit(signed), urlsplit(expected)
    if a.scheme != b.scheme:
        return "scheme_mismatch"
    if a.hostname != b.hostname:
        return "host_mismatch"
    if (a.port or _DEFAULT_PORTS[a.scheme]) != (b.port or _DEFAULT_PORTS[b.scheme]):
        return "port_mismatch"
    return "path_mismatch"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v is not None))


def _host_of(header: str | None) -> str:
    if not header:
        return ""
    host = header.split(",")[0].strip()
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    return host.rpartition(":")[0].lower() if host.count(":") == 1 else host.lower()


def _port_of(header: str | None) -> str:
    if not header:
        return ""
    host = header.split(",")[0].strip()
    tail = host.rpartition("]")[2] if host.startswith("[") else host
    port = tail.rpartition(":")[2] if ":" in tail else ""
    return port if port.isdigit() else ""


class WebhookAuth:
    """Resolves webhook tokens (remembered for a second) and checks Twilio's signatures."""

    def __init__(self, db: Database, box: SecretBox, refusals: RefusalLog, prefix: str) -> None:
        self._db = db
        self._box = box
        self._refusals = refusals
        self._prefix = prefix
        self._cache: dict[str, tuple[float, WebhookConfig | None]] = {}
        self._diagnosed: dict[ConfigId, float] = {}

    def forget(self) -> None:
        """Configuration changed through this process: its next webhooks read it anew."""
        self._cache.clear()

    async def config_for(self, token: str) -> WebhookConfig:
        """The token's configuration, remembered for a second: Twilio sends in bursts. A
        change made through this process applies at once (`forget`); one made through another
        process, or a rotation's grace ending, within that second."""
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
        seen: RequestSeen,
    ) -> None:
        """Twilio signs with the account's auth token, also when we send with an API key."""
        token = signing_token(self._box, config.id, config.secrets)
        if validate_request(
            url=url,
            params=params,
            raw_body=raw_body,
            content_type=content_type,
            signature=signature,
            auth_tokens=(token,),
        ):
            return
        cause = "not diagnosed (the last failure was under a second ago)"
        if self._may_diagnose(config.id):
            candidates = signed_url_candidates(url, seen, self._prefix)
            signed = which_url_signed(
                candidates,
                params=params,
                raw_body=raw_body,
                content_type=content_type,
                signature=signature,
                auth_token=token,
            )
            failure = _failure(config.id, kind, url, signed)
            cause = failure.cause
            self._refusals.failure(failure)
        if kind == "inbound":
            self._refusals.count(config.id, "bad_signature")
        log.warning("webhook.bad_signature", kind=kind, config_id=config.id, cause=cause)
        raise BadSignature()

    def refused(self, config_id: ConfigId, kind: str, outcome: Outcome) -> None:
        """A webhook for this configuration refused after its token was known."""
        if kind == "inbound":
            self._refusals.count(config_id, outcome)

    def _may_diagnose(self, config_id: ConfigId) -> bool:
        now = time.monotonic()
        if now - self._diagnosed.get(config_id, -DIAGNOSE_EVERY_SECONDS) < DIAGNOSE_EVERY_SECONDS:
            return False
        if len(self._diagnosed) >= CONFIG_CACHE_SIZE:
            self._diagnosed.clear()
        self._diagnosed[config_id] = now
        return True


def _failure(config_id: ConfigId, kind: str, expected: str, signed: str | None) -> SignatureFailure:
    at = datetime.now(UTC)
    if signed is None:
        return SignatureFailure(
            config_id,
            at,
            kind,
            "wrong_auth_token",
            "no variant of the webhook URL matches: the auth token was changed in Twilio, or an "
            "API-key configuration lacks the account's auth token",
        )
    return SignatureFailure(
        config_id,
        at,
        kind,
        cause_of(signed, expected),
        f"Twilio signed {signed}; BRIDGE_PUBLIC_BASE_URL gives {expected}",
    )
