"""Valid request bodies, with fresh values where uniqueness matters."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

_numbers = itertools.count(1000)


def hex32() -> str:
    return secrets.token_hex(16)


def account_sid() -> str:
    return "AC" + hex32()


def number() -> str:
    """A US test-range number no other test has used in this run."""
    return f"+1555{next(_numbers):07d}"


def sms_config(trunk_id: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "trunk_id": trunk_id,
        "name": "Main Twilio",
        "account_sid": account_sid(),
        "credential": {"type": "auth_token", "auth_token": hex32()},
        "numbers": [{"number": number(), "type": "long_code", "mms": True}],
        "allowed_countries": ["US", "CA"],
    }
    body.update(over)
    return body


def api_key_credential() -> dict[str, str]:
    return {
        "type": "api_key",
        "api_key_sid": "SK" + hex32(),
        "api_key_secret": secrets.token_urlsafe(24),
        "auth_token": hex32(),
    }
