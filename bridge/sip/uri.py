"""SIP URIs (RFC 3261 §19.1, §25.1) and name-addr / addr-spec header values (§20.10)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import quote as percent_quote

from bridge.sip.errors import SipParseError
from bridge.sip.headers import (
    NO_PARAMS,
    QUOTED,
    TOKEN,
    Params,
    check_host,
    parse_params,
    parse_port,
    quote,
    unquote,
)

_SCHEME_URI = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\x00-\x20\x7f<>\"]+")
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PCHARS = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
_HCHARS = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|%[0-9A-Fa-f]{2})*")
_HOSTPORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]+)(?::([0-9]{1,5}))?")
_USER_SAFE = "-_.!~*'()&=+$,;?/"


def _percent_decode(text: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(text[i].encode("ascii"))
            i += 1
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("user part is not UTF-8") from exc


def _uri_params(parts: list[str]) -> Params:
    items: list[tuple[str, str | None]] = []
    for part in parts:
        name, eq, value = part.partition("=")
        if _PCHARS.fullmatch(name) is None or (eq and _PCHARS.fullmatch(value) is None):
            raise SipParseError("bad URI parameter")
        items.append((name, value if eq else None))
    params = Params(items)
    if len(params) != len(set(params)):
        raise SipParseError("repeated URI parameter")
    return params


def _uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not eq or _PCHARS.fullmatch(name) is None or _HCHARS.fullmatch(value) is None:
            raise SipParseError("bad URI header")
        headers.append((name, value))
    return tuple(headers)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A `sip:` or `sips:` URI; `user` is percent-decoded, `host` keeps IPv6 brackets."""

    host: str
    user: str | None = None
    port: int | None = None
    params: Params = NO_PARAMS
    headers: tuple[tuple[str, str], ...] = ()
    secure: bool = False

    @classmethod
    def parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.partition(":")
        if not colon or scheme.lower() not in ("sip", "sips"):
            raise SipParseError("not a sip: or sips: URI")
        # '?' and ';' may appear in the user part, '@' nowhere but after it.
        userinfo, at, hostpart = rest.partition("@")
        if not at:
            userinfo, hostpart = "", rest
        hostpart, question, header_text = hostpart.partition("?")
        user = None
        if at:
            if ":" in userinfo:
                raise SipParseError("passwords in SIP URIs are not accepted")
            if _USER.fullmatch(userinfo) is None:
                raise SipParseError("bad user part")
            user = _percent_decode(userinfo)
        hostport, *param_parts = hostpart.split(";")
        match = _HOSTPORT.fullmatch(hostport)
        if match is None:
            raise SipParseError("bad host or port")
        host = check_host(match.group(1))
        port = None if match.group(2) is None else parse_port(match.group(2))
        params = _uri_params(param_parts)
        headers = _uri_headers(header_text) if question else ()
        return cls(host, user, port, params, headers, scheme.lower() == "sips")

    @property
    def scheme(self) -> str:
        return "sips" if self.secure else "sip"

    @property
    def address(self) -> str:
        """The host as a socket address wants it: IPv6 without brackets."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return None if value is None else value.lower()

    def with_user(self, user: str | None) -> SipUri:
        return replace(self, user=user)

    def __str__(self) -> str:
        text = f"{self.scheme}:"
        if self.user is not None:
            text += percent_quote(self.user, safe=_USER_SAFE) + "@"
        text += self.host if self.port is None else f"{self.host}:{self.port}"
        text += str(self.params)
        if self.headers:
            text += "?" + "&".join(f"{n}={v}" for n, v in self.headers)
        return text


def check_uri(text: str) -> str:
    """Validate any absolute URI (sip:, sips:, tel:, ...) and return it unchanged."""
    if _SCHEME_URI.fullmatch(text) is None:
        raise SipParseError("bad URI")
    if text[:4].lower() == "sip:" or text[:5].lower() == "sips:":
        SipUri.parse(text)
    return text


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact style value: optional display name, a URI, header parameters."""

    uri: str
    display_name: str | None = None
    params: Params = NO_PARAMS

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip(" \t")
        display: str | None = None
        if text.startswith('"') or "<" in text:
            opening = text.find("<")
            if text.startswith('"'):
                end = _quoted_end(text)
                display = unquote(text[:end])
                if text[end:].lstrip(" \t")[:1] != "<":
                    raise SipParseError("display name not followed by <URI>")
                opening = text.index("<", end)
            else:
                words = [w for w in re.split(r"[ \t]+", text[:opening]) if w]
                if any(TOKEN.fullmatch(word) is None for word in words):
                    raise SipParseError("display name must be tokens or a quoted string")
                display = " ".join(words) or None
            closing = text.find(">", opening)
            if closing < 0:
                raise SipParseError("missing '>'")
            uri, rest = text[opening + 1 : closing], text[closing + 1 :]
        else:
            uri, semi, rest = text.partition(";")
            uri, rest = uri.rstrip(" \t"), semi + rest
            if "," in uri or "?" in uri:
                raise SipParseError("an addr-spec with ',' or '?' needs <...>")
        return cls(check_uri(uri), display, parse_params(rest))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display_name, self.params.with_("tag", tag))

    def sip_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    def __str__(self) -> str:
        display = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{display}<{self.uri}>{self.params}"


def _quoted_end(text: str) -> int:
    """Index just past the quoted string that opens `text`."""
    match = QUOTED.match(text)
    if match is None:
        raise SipParseError("unterminated quoted string")
    return match.end()
