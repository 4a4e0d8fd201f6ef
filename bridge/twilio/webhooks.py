"""Reading Twilio's webhook parameters (inbound messages and status callbacks)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from bridge.errors import MalformedRequest

Params = Sequence[tuple[str, str]]

REQUIRED_INBOUND = ("MessageSid", "From", "To")
# Twilio's own opt-out handling (twilio.md §7.1): these keywords change consent, and still reach
# the webhook.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
_MEDIA_URL = re.compile(r"MediaUrl(\d+)")


class MissingParameter(MalformedRequest):
    """A required webhook parameter is missing."""

    code = "missing_parameter"


def first(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value
    return None


def require(params: Params, names: Sequence[str]) -> None:
    missing = [name for name in names if not first(params, name)]
    if missing:
        raise MissingParameter(f"missing {', '.join(missing)}")


def opt_change(body: str, opt_out_type: str | None) -> tuple[Literal["out", "in"], str] | None:
    """``("out"|"in", keyword)`` when the text (or Twilio's OptOutType) changes consent."""
    if opt_out_type:
        kind = opt_out_type.strip().upper()
        if kind == "STOP":
            return "out", body.strip().upper() or kind
        if kind == "START":
            return "in", body.strip().upper() or kind
        return None
    keyword = body.strip().upper()
    if keyword in OPT_OUT_KEYWORDS:
        return "out", keyword
    if keyword in OPT_IN_KEYWORDS:
        return "in", keyword
    return None


def media_items(params: Params) -> list[tuple[str, str | None]]:
    """``(MediaUrlN, MediaContentTypeN)`` in N order."""
    urls: dict[int, str] = {}
    types: dict[str, str] = {}
    for key, value in params:
        match = _MEDIA_URL.fullmatch(key)
        if match:
            urls.setdefault(int(match[1]), value)
        elif key.startswith("MediaContentType"):
            types.setdefault(key.removeprefix("MediaContentType"), value)
    return [(urls[n], types.get(str(n))) for n in sorted(urls)]


def error_code(params: Params) -> int | None:
    raw = first(params, "ErrorCode")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())
