"""Sending one signed webhook like Twilio: connection overrides, retries, URL credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import aiohttp
from yarl import URL

from .records import Attempt, JSONValue, Pairs, WebhookRecord
from .signing import compute_signature, signing_url, url_with_body_hash
from .state import FakeState

SignatureMode = Literal["valid", "invalid", "missing"]
USER_AGENT = "TwilioProxy/1.1"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Overrides:
    """Connection overrides from a webhook URL's fragment (`#ct=…&rt=…&tt=…&rc=…&rp=…`)."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_timeout: float = 15.0
    retries: int = 1
    policy: frozenset[str] = frozenset({"ct"})


def parse_overrides(url: str, read_timeout: float) -> Overrides:
    """Twilio's defaults (ct 5 s, rt/tt 15 s, rc 1, rp ct), adjusted by the URL fragment."""
    values = dict(parse_qsl(url.partition("#")[2]))

    def clamp(name: str, default: float, low: int, high: int) -> float:
        try:
            return min(max(int(values[name]), low), high) / 1000
        except (KeyError, ValueError):
            return default

    try:
        retries = min(max(int(values.get("rc", "1")), 0), 5)
    except ValueError:
        retries = 1
    policy = frozenset(p.strip() for p in values.get("rp", "ct").split(",") if p.strip())
    return Overrides(
        connect_timeout=clamp("ct", 5.0, 100, 10000),
        read_timeout=clamp("rt", min(read_timeout, 15.0), 100, 15000),
        total_timeout=clamp("tt", 15.0, 100, 15000),
        retries=retries,
        policy=policy,
    )


def request_target(url: str, json_body: bytes | None) -> str:
    """The URL actually requested: no credentials or fragment, plus bodySHA256 for JSON."""
    target = signing_url(url)
    return url_with_body_hash(target, json_body) if json_body is not None else target


def url_credentials(url: str) -> str | None:
    """Authorization header value for `user:pass@` credentials embedded in a webhook URL."""
    parts = urlsplit(url.partition("#")[0])
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def build_record(
    *,
    kind: Literal["status", "inbound", "fallback"],
    account_sid: str,
    message_sid: str,
    url: str,
    auth_token: str,
    params: Pairs,
    json_body: JSONValue = None,
    method: Literal["POST", "GET"] = "POST",
    signature: SignatureMode = "valid",
    sign_url: str | None = None,
    message_status: str | None = None,
) -> WebhookRecord:
    """Prepare and sign a webhook (not yet sent)."""
    raw_json = None if json_body is None else json.dumps(json_body)
    target = request_target(url, None if raw_json is None else raw_json.encode())
    if method == "GET":
        target += ("&" if "?" in target else "?") + urlencode(params)
    signed = target if sign_url is None else request_target(sign_url, None)
    signed_params: Pairs = params if method == "POST" and raw_json is None else []
    value = compute_signature(auth_token, signed, signed_params)
    if signature == "invalid":
        value = compute_signature(auth_token + "x", signed, signed_params)
    return WebhookRecord(
        kind=kind,
        account_sid=account_sid,
        message_sid=message_sid,
        url=url,
        signed_url=signed,
        signature="" if signature == "missing" else value,
        idempotency_token=f"{secrets.token_hex(16)}-{message_sid}",
        params=params,
        json_body=raw_json,
        method=method,
        message_status=message_status,
    )


class Sender:
    """Performs webhook requests over one shared client session."""

    def __init__(self, session: aiohttp.ClientSession, state: FakeState) -> None:
        self.session = session
        self.state = state

    async def send(self, record: WebhookRecord) -> None:
        """Send `record`, retrying per the URL's overrides; attempts are appended to it."""
        method = record.method
        overrides = parse_overrides(record.url, self.state.config.webhook_timeout)
        body: bytes | None = None
        headers = {"User-Agent": USER_AGENT, "I-Twilio-Idempotency-Token": record.idempotency_token}
        if record.signature:
            headers["X-Twilio-Signature"] = record.signature
        if method == "POST" and record.json_body is not None:
            body = record.json_body.encode()
            headers["Content-Type"] = "application/json"
        elif method == "POST":
            body = urlencode(record.params).encode()
            headers["Content-Type"] = FORM_TYPE
        target = request_target(record.url, body if record.json_body is not None else None)
        if method == "GET":
            target += ("&" if "?" in target else "?") + urlencode(record.params)
        credentials = url_credentials(record.url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + overrides.total_timeout
        retries = 0
        with_auth = False
        while True:
            auth = credentials if with_auth else None
            attempt, category = await self._attempt(
                method, target, headers, body, auth, overrides, deadline - loop.time()
            )
            record.attempts.append(attempt)
            # Twilio sends URL credentials only after a 401 challenge, and that is no retry.
            if attempt.status == 401 and credentials is not None and not with_auth:
                with_auth = True
                continue
            if category is None or retries >= overrides.retries or loop.time() >= deadline:
                return
            if category not in overrides.policy and "all" not in overrides.policy:
                return
            retries += 1

    async def _attempt(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        auth: str | None,
        overrides: Overrides,
        remaining: float,
    ) -> tuple[Attempt, str | None]:
        timeout = aiohttp.ClientTimeout(
            total=max(remaining, 0.05),
            sock_connect=overrides.connect_timeout,
            sock_read=overrides.read_timeout,
        )
        if auth is not None:
            headers = {**headers, "Authorization": auth}
        try:
            async with self.session.request(
                method,
                URL(target, encoded=True),
                data=body,
                headers=headers,
                timeout=timeout,
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
                content_type = response.headers.get("Content-Type")
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            return Attempt(
                None, None, "", error=f"connect: {exc!r}", authorized=auth is not None
            ), "ct"
        except (aiohttp.SocketTimeoutError, TimeoutError) as exc:
            return Attempt(
                None, None, "", error=f"read: {exc!r}", authorized=auth is not None
            ), "rt"
        except aiohttp.ClientError as exc:
            return Attempt(None, None, "", error=repr(exc), authorized=auth is not None), "other"
        category = "4xx" if 400 <= status < 500 else "5xx" if status >= 500 else None
        return Attempt(status, content_type, text, authorized=auth is not None), category
