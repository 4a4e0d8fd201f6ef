"""Resource ids: a type prefix and a time-ordered random part, so ids sort by creation."""

from __future__ import annotations

import secrets
import time
from datetime import datetime

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new id like ``ten_01jd8k3m2x…``: 48 bits of milliseconds then 80 random bits."""
    return f"{prefix}_{_encode((time.time_ns() // 1_000_000) << 80 | secrets.randbits(80))}"


def id_floor(prefix: str, at: datetime) -> str:
    """The smallest id created at ``at`` or later: ids sort by time, so "since" is a range."""
    return f"{prefix}_{_encode(int(at.timestamp() * 1000) << 80)}"
