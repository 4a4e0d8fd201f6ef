"""Header fields: names, parameters, quoted strings, and the structured values the UA reads."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from bridge.sip.errors import SipParseError

TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_PARAM_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")
QUOTED = re.compile(r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"')
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_WORD = re.compile(r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+")
_CALL_ID = re.compile(rf"{_WORD.pattern}(?:@{_WORD.pattern})?")
_CSEQ = re.compile(r"([0-9]{1,10})[ \t]+(" + TOKEN.pattern + r")")
_VIA = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([0-9A-Za-z.]+)[ \t]*/[ \t]*("
    + TOKEN.pattern
    + r")[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(;.*)?",
    re.DOTALL,
)
_MEDIA = re.compile(rf"({TOKEN.pattern})[ \t]*/[ \t]*({TOKEN.pattern})[ \t]*(;.*)?", re.DOTALL)

_COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
    "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via",
    "o": "event", "r": "refer-to", "b": "referred-by", "u": "allow-events", "a": "accept-contact",
    "j": "reject-contact", "d": "request-disposition", "x": "session-expires", "y": "identity",
    "n": "identity-info",
}  # fmt: skip
_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info",
        "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires",
        "From", "Identity", "Identity-Info", "In-Reply-To", "Max-Forwards", "MIME-Version",
        "Min-Expires", "Organization", "Priority", "Proxy-Authenticate", "Proxy-Authorization",
        "Proxy-Require", "Record-Route", "Refer-To", "Referred-By", "Reject-Contact",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq", "Server",
        "Session-Expires", "Subject", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}  # fmt: skip


def canonical_name(name: str) -> str:
    """The full, conventionally spelled header name for a received (maybe compact) name."""
    lower = name.lower()
    lower = _COMPACT.get(lower, lower)
    return _CANONICAL.get(lower, name)


class Headers:
    """Ordered header fields with case-insensitive names; compact names are expanded."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        for name, value in fields:
            self.add(name, value)

    @staticmethod
    def _entry(name: str, value: str) -> tuple[str, str, str]:
        full = canonical_name(name)
        return full.lower(), full, value

    def add(self, name: str, value: str) -> None:
        self._fields.append(self._entry(name, value))

    def prepend(self, name: str, value: str) -> None:
        self._fields.insert(0, self._entry(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of this name with one field, where the first one stood."""
        entry = self._entry(name, value)
        index = next((i for i, f in enumerate(self._fields) if f[0] == entry[0]), None)
        self.remove(name)
        self._fields.insert(len(self._fields) if index is None else index, entry)

    def set_all(self, name: str, values: Iterable[str]) -> None:
        """Replace every field of this name with `values`, where the first one stood."""
        key = canonical_name(name).lower()
        index = next((i for i, f in enumerate(self._fields) if f[0] == key), len(self._fields))
        kept = [f for f in self._fields[:index] if f[0] != key]
        after = [f for f in self._fields[index:] if f[0] != key]
        self._fields = kept + [self._entry(name, value) for value in values] + after

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [f for f in self._fields if f[0] != key]

    def get(self, name: str) -> str | None:
        key = canonical_name(name).lower()
        return next((f[2] for f in self._fields if f[0] == key), None)

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name).lower()
        return [f[2] for f in self._fields if f[0] == key]

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = list(self._fields)
        return clone

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f[1], f[2]) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"


def split_outside_quotes(text: str, separator: str, *, angles: bool = True) -> list[str]:
    """Split on a separator that is not inside a quoted string (or <...> when `angles`)."""
    parts: list[str] = []
    start = 0
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            match = QUOTED.match(text, i)
            if match is None:
                raise SipParseError("unterminated quoted string")
            i = match.end()
            continue
        if angles and ch == "<":
            depth += 1
        elif angles and ch == ">":
            depth -= 1
            if depth < 0:
                raise SipParseError("unbalanced '>'")
        elif ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if depth:
        raise SipParseError("unbalanced '<'")
    parts.append(text[start:])
    return parts


def unquote(text: str) -> str:
    """The content of a quoted-string with its backslash escapes undone."""
    if QUOTED.fullmatch(text) is None:
        raise SipParseError("not a quoted string")
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.DOTALL)


def quote(text: str) -> str:
    """A quoted-string for text (no control characters allowed)."""
    if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", text):
        raise ValueError("control characters cannot be quoted in a SIP header")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Params(Mapping[str, str | None]):
    """Ordered `;name=value` parameters; names are case-insensitive, a flag's value is None."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items = tuple((name.lower(), value) for name, value in items)

    def __getitem__(self, key: str) -> str | None:
        lower = key.lower()
        for name, value in self._items:
            if name == lower:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Params({self._items!r})"

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self._items)

    def with_(self, name: str, value: str | None) -> Params:
        """A copy with `name` set (in place if present, else appended)."""
        lower = name.lower()
        if lower in self:
            return Params((n, value if n == lower else v) for n, v in self._items)
        return Params((*self._items, (lower, value)))

    def without(self, name: str) -> Params:
        lower = name.lower()
        return Params((n, v) for n, v in self._items if n != lower)


NO_PARAMS = Params()


def parse_params(text: str) -> Params:
    """Parse `;a=b;c` header parameters (LWS allowed around ';' and '=')."""
    text = text.strip(" \t")
    if not text:
        return Params()
    if not text.startswith(";"):
        raise SipParseError("parameters must start with ';'")
    items: list[tuple[str, str | None]] = []
    for part in split_outside_quotes(text[1:], ";", angles=False):
        name, eq, value = part.partition("=")
        name = name.strip(" \t")
        if TOKEN.fullmatch(name) is None:
            raise SipParseError("bad parameter name")
        if not eq:
            items.append((name, None))
            continue
        value = value.strip(" \t")
        if _PARAM_VALUE.fullmatch(value) is None and QUOTED.fullmatch(value) is None:
            raise SipParseError("bad parameter value")
        items.append((name, value))
    params = Params(items)
    if len(params._items) != len(set(params)):
        raise SipParseError("repeated parameter")
    return params


def check_host(host: str) -> str:
    """Validate a host (hostname, IPv4 or bracketed IPv6) and return it unchanged."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise SipParseError("bad IPv6 reference")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise SipParseError("bad IPv6 address") from exc
    elif _HOSTNAME.fullmatch(host) is None or ".." in host:
        raise SipParseError("bad host")
    return host


def parse_port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise SipParseError("bad port")
    return int(text)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via entry: transport, sent-by and parameters (branch, received, rport...)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = NO_PARAMS

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _VIA.fullmatch(text.strip(" \t"))
        if match is None:
            raise SipParseError("bad Via")
        protocol, version, transport, host, port, params = match.groups()
        if protocol.upper() != "SIP" or version != "2.0":
            raise SipParseError("bad Via protocol")
        return cls(
            transport.upper(),
            check_host(host),
            None if port is None else parse_port(port),
            parse_params(params or ""),
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None) -> Via:
        return Via(self.transport, self.host, self.port, self.params.with_(name, value))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{self.params}"


def parse_vias(values: Iterable[str]) -> list[Via]:
    """All Via entries of the given field values, comma lists split, in order."""
    return [Via.parse(part) for value in values for part in split_outside_quotes(value, ",")]


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header: sequence number and method."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        match = _CSEQ.fullmatch(text.strip(" \t"))
        if match is None or int(match.group(1)) >= 2**31:
            raise SipParseError("bad CSeq")
        return cls(int(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class ContentType:
    """A media type such as `text/plain;charset=UTF-8` (type and subtype lower-cased)."""

    type: str
    subtype: str
    params: Params = NO_PARAMS

    @classmethod
    def parse(cls, text: str) -> ContentType:
        match = _MEDIA.fullmatch(text.strip(" \t"))
        if match is None:
            raise SipParseError("bad media type")
        kind, subtype, params = match.groups()
        return cls(kind.lower(), subtype.lower(), parse_params(params or ""))

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def charset(self) -> str | None:
        value = self.params.get("charset")
        if value is None:
            return None
        return unquote(value) if value.startswith('"') else value

    def __str__(self) -> str:
        return f"{self.mime}{self.params}"


def parse_call_id(text: str) -> str:
    value = text.strip(" \t")
    if _CALL_ID.fullmatch(value) is None:
        raise SipParseError("bad Call-ID")
    return value


def parse_small_int(text: str, *, maximum: int, what: str) -> int:
    """A decimal header value such as Max-Forwards or Content-Length, range-checked."""
    value = text.strip(" \t")
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > maximum:
        raise SipParseError(f"bad {what}")
    return int(value)
