"""SIP requests and responses (RFC 3261 §7), their serialization, and building responses."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge.sip.errors import SipParseError
from bridge.sip.headers import (
    TOKEN,
    ContentType,
    CSeq,
    Headers,
    Via,
    parse_call_id,
    parse_small_int,
    parse_vias,
    quote,
    split_outside_quotes,
)
from bridge.sip.uri import NameAddr

SIP_VERSION = "SIP/2.0"
BRANCH_COOKIE = "z9hG4bK"
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 488: "Not Acceptable Here",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


def reason_phrase(status: int) -> str:
    """The RFC 3261 reason phrase for a status code."""
    return REASONS.get(status, REASONS.get(status // 100 * 100, "Unknown"))


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(12)


class _Message:
    """Accessors shared by requests and responses; malformed values raise SipParseError."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def vias(self) -> list[Via]:
        return parse_vias(self.headers.get_all("Via"))

    @property
    def top_via(self) -> Via | None:
        first = self.headers.get("Via")
        return None if first is None else Via.parse(split_outside_quotes(first, ",")[0])

    @property
    def branch(self) -> str | None:
        via = self.top_via
        return None if via is None else via.branch

    @property
    def call_id(self) -> str | None:
        value = self.headers.get("Call-ID")
        return None if value is None else parse_call_id(value)

    @property
    def cseq(self) -> CSeq | None:
        value = self.headers.get("CSeq")
        return None if value is None else CSeq.parse(value)

    @property
    def from_(self) -> NameAddr | None:
        value = self.headers.get("From")
        return None if value is None else NameAddr.parse(value)

    @property
    def to(self) -> NameAddr | None:
        value = self.headers.get("To")
        return None if value is None else NameAddr.parse(value)

    @property
    def from_tag(self) -> str | None:
        addr = self.from_
        return None if addr is None else addr.tag

    @property
    def to_tag(self) -> str | None:
        addr = self.to
        return None if addr is None else addr.tag

    @property
    def content_type(self) -> ContentType | None:
        value = self.headers.get("Content-Type")
        return None if value is None else ContentType.parse(value)

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_small_int(value, maximum=255, what="Max-Forwards")

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the first Via entry (e.g. to add received/rport), keeping the others."""
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("no Via")
        first = split_outside_quotes(values[0], ",")
        first[0] = str(via)
        values[0] = ",".join(first)
        self.headers.set_all("Via", values)

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name.lower() == "content-length":
                continue
            if TOKEN.fullmatch(name) is None or _UNSAFE_VALUE.search(value):
                raise ValueError(f"header {name!r} cannot be serialized safely")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(slots=True)
class SipRequest(_Message):
    """A SIP request; `uri` is the Request-URI text."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    def to_bytes(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {self.version}")


@dataclass(slots=True)
class SipResponse(_Message):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def is_final(self) -> bool:
        return self.status >= 200

    def to_bytes(self) -> bytes:
        if _UNSAFE_VALUE.search(self.reason) or not 100 <= self.status <= 699:
            raise ValueError("bad status line")
        return self._serialize(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def build_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    to_tag: str | None = None,
) -> SipResponse:
    """A response to `request` as RFC 3261 §8.2.6 says: Via, From, To(+tag), Call-ID, CSeq."""
    out = Headers()
    for value in request.headers.get_all("Via"):
        out.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = request.headers.get(name)
        if copied is not None:
            out.add(name, copied)
    to_value = request.headers.get("To")
    if status > 100 and to_value is not None and request.to_tag is None:
        out.set("To", f"{to_value};tag={to_tag or new_tag()}")
    for name, value in headers:
        out.add(name, value)
    return SipResponse(status, reason or reason_phrase(status), out, body)


def warning_value(host: str, text: str, code: int = 399) -> str:
    """A Warning header value, e.g. `399 bridge.example.com "no_route"` (RFC 3261 §20.43)."""
    return f"{code} {host} {quote(text)}"
