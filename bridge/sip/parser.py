"""Parsing SIP messages from datagrams and TCP streams, within strict limits (RFC 3261 §7, §18.3).

Any byte string either parses or raises SipParseError: the parser is exposed to whatever a
network peer sends, and is fuzzed to keep that true.
"""

from __future__ import annotations

import re
from typing import Final

from bridge.sip.errors import SipParseError
from bridge.sip.headers import (
    TOKEN,
    ContentType,
    CSeq,
    Headers,
    parse_call_id,
    parse_small_int,
    parse_vias,
)
from bridge.sip.message import SipMessage, SipRequest, SipResponse
from bridge.sip.tuning import DEFAULT_LIMITS, Limits
from bridge.sip.uri import NameAddr, check_uri

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION = re.compile(r"SIP/[0-9]{1,3}\.[0-9]{1,3}")
_STATUS = re.compile(r"[1-6][0-9][0-9]")
_SINGLE_VALUED = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type")


class Ping:
    """A double-CRLF keepalive seen on a stream (RFC 5626 §3.5.1); answer with one CRLF."""

    __slots__ = ()


PING: Final = Ping()


def parse_message(
    data: bytes, *, stream: bool = False, limits: Limits = DEFAULT_LIMITS
) -> SipMessage:
    """Parse one whole message; `stream` requires Content-Length and no trailing bytes."""
    if len(data) > limits.max_message_bytes:
        raise SipParseError("message too large")
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    data = data.lstrip(b"\r\n")
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise SipParseError("no empty line after the headers")
    start, headers = parse_head(data[:end], limits)
    body = data[end + 4 :]
    length = content_length(headers, limits)
    if length is None:
        if stream:
            raise SipParseError("Content-Length is required on a stream transport")
    elif len(body) < length:
        raise SipParseError("body shorter than Content-Length")
    elif stream and len(body) > length:
        raise SipParseError("bytes after the body")
    else:
        body = body[:length]
    return build_message(start, headers, body, limits)


def parse_head(head: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, Headers]:
    """The start line and header fields of a header section (without its final CRLFCRLF)."""
    raw_lines = head.split(b"\r\n")
    if any(len(line) > limits.max_line_bytes for line in raw_lines):
        raise SipParseError("line too long")
    if len(raw_lines) > limits.max_headers * 4:
        raise SipParseError("too many header lines")
    try:
        lines = [line.decode("utf-8") for line in raw_lines]
    except UnicodeDecodeError as exc:
        raise SipParseError("header section is not UTF-8") from exc
    start = lines[0]
    fields: list[list[str]] = []
    for line in lines:
        if _CONTROL.search(line):
            raise SipParseError("control character in the header section")
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("header continuation without a header")
            fields[-1][1] += " " + line.strip(" \t")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or TOKEN.fullmatch(name) is None:
            raise SipParseError("bad header line")
        fields.append([name, value])
        if len(fields) > limits.max_headers:
            raise SipParseError("too many headers")
    return start, Headers((name, value.strip(" \t")) for name, value in fields)


def content_length(headers: Headers, limits: Limits = DEFAULT_LIMITS) -> int | None:
    values = {
        parse_small_int(v, maximum=limits.max_message_bytes, what="Content-Length")
        for v in headers.get_all("Content-Length")
    }
    if len(values) > 1:
        raise SipParseError("conflicting Content-Length values")
    return values.pop() if values else None


def build_message(
    start: str, headers: Headers, body: bytes, limits: Limits = DEFAULT_LIMITS
) -> SipMessage:
    """A request or response from a parsed start line, headers and body, validated."""
    message: SipMessage
    if start.startswith("SIP/"):
        version, _, rest = start.partition(" ")
        status, _, reason = rest.partition(" ")
        if _VERSION.fullmatch(version) is None or _STATUS.fullmatch(status) is None:
            raise SipParseError("bad status line")
        message = SipResponse(int(status), reason, headers, body, version)
    else:
        parts = start.split(" ")
        if len(parts) != 3 or TOKEN.fullmatch(parts[0]) is None:
            raise SipParseError("bad request line")
        if _VERSION.fullmatch(parts[2]) is None:
            raise SipParseError("bad SIP version")
        message = SipRequest(parts[0], check_uri(parts[1]), headers, body, parts[2])
    _validate(headers, limits)
    return message


def _validate(headers: Headers, limits: Limits) -> None:
    """Check the syntax of the headers the UA reads, so later accessors cannot fail."""
    for name in _SINGLE_VALUED:
        if headers.count(name) > 1:
            raise SipParseError(f"more than one {name}")
    if len(parse_vias(headers.get_all("Via"))) > limits.max_vias:
        raise SipParseError("too many Via entries")
    for name in ("From", "To"):
        value = headers.get(name)
        if value is not None:
            NameAddr.parse(value)
    value = headers.get("Call-ID")
    if value is not None:
        parse_call_id(value)
    value = headers.get("CSeq")
    if value is not None:
        CSeq.parse(value)
    value = headers.get("Max-Forwards")
    if value is not None:
        parse_small_int(value, maximum=255, what="Max-Forwards")
    value = headers.get("Content-Type")
    if value is not None:
        ContentType.parse(value)


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._searched = 0
        self._head: tuple[str, Headers, int, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[list[SipMessage | Ping], SipParseError | None]:
        """Messages completed by `data`, and the error that ends the stream if there is one."""
        self._buffer += data
        out: list[SipMessage | Ping] = []
        try:
            while self._next(out):
                pass
            if len(self._buffer) > self._limits.max_message_bytes:
                raise SipParseError("message too large")
        except SipParseError as exc:
            return out, exc
        return out, None

    def _next(self, out: list[SipMessage | Ping]) -> bool:
        buffer = self._buffer
        if self._head is None:
            if buffer[:2] == b"\r\n":
                if buffer[:4] == b"\r\n\r\n":
                    out.append(PING)
                    del buffer[:4]
                    return True
                if b"\r\n\r\n".startswith(bytes(buffer[:4])):
                    return False
                del buffer[:2]
                return True
            end = buffer.find(b"\r\n\r\n", max(0, self._searched - 3))
            if end < 0:
                self._searched = len(buffer)
                return False
            self._searched = 0
            start, headers = parse_head(bytes(buffer[:end]), self._limits)
            length = content_length(headers, self._limits)
            if length is None:
                raise SipParseError("Content-Length is required on a stream transport")
            if end + 4 + length > self._limits.max_message_bytes:
                raise SipParseError("message too large")
            self._head = (start, headers, end + 4, length)
        start, headers, body_start, length = self._head
        if len(buffer) < body_start + length:
            return False
        body = bytes(buffer[body_start : body_start + length])
        del buffer[: body_start + length]
        self._head = None
        out.append(build_message(start, headers, body, self._limits))
        return True
