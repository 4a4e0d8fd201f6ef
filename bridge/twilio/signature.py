"""Twilio webhook signatures (X-Twilio-Signature): computing and verifying them.

The URL is always taken as the caller built it (public base + raw path + raw query) and is
never decoded, re-encoded or re-sorted here: Twilio signs the exact string it requested.

Which bytes are signed:
- form POST: the URL, then every received parameter (none whitelisted), names sorted, each
  name's distinct values sorted; params are (name, value) pairs with duplicates kept, or a
  Mapping such as a dict or an aiohttp MultiDictProxy;
- GET (empty content type): the URL alone, its query already carrying the params, so the
  caller passes no params;
- any URL carrying ``bodySHA256`` (Twilio adds it to JSON POSTs): the URL alone, and the raw
  body must hash to that value; any other body without it never validates.
Both port forms of the URL are accepted (default port added when absent, any port removed),
as Twilio's own helper does, because Twilio has not signed ports consistently.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias

# A MultiDict or MultiDictProxy is a Mapping whose items() yields every (name, value) pair.
Params: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]

BODY_HASH_PARAM = "bodySHA256"

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# No content type is what a GET (params already in the query string) looks like.
_FORM_MEDIA_TYPES = frozenset({"", "application/x-www-form-urlencoded"})


def _signing_suffix(params: Params) -> str:
    pairs: Iterable[tuple[str, str]] = params.items() if isinstance(params, Mapping) else params
    values_by_name: dict[str, set[str]] = {}
    for name, value in pairs:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("parameter names and values must be strings")
        values_by_name.setdefault(name, set()).add(value)
    # Code-point order equals UTF-8 byte order, which is what Twilio sorts by.
    return "".join(
        name + value for name in sorted(values_by_name) for value in sorted(values_by_name[name])
    )


def _sign(key: bytes, url: bytes, suffix: bytes) -> bytes:
    mac = hmac.new(key, url, hashlib.sha1)
    mac.update(suffix)
    return base64.b64encode(mac.digest())


def _port_variants(url: str) -> tuple[str, str] | None:
    """The URL as given and its other port form; None unless it is an absolute http(s) URL."""
    scheme, separator, rest = url.partition("://")
    default_port = _DEFAULT_PORTS.get(scheme.lower())
    if not separator or default_port is None:
        return None
    authority_end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter, 0, authority_end)
        if index != -1:
            authority_end = index
    authority, tail = rest[:authority_end], rest[authority_end:]
    prefix = url[: len(url) - len(rest)]
    # Look for the port after any userinfo and after an IPv6 literal's closing bracket.
    host_start = authority.rfind("@") + 1
    colon = authority.rfind(":", host_start)
    if colon == -1 or colon < authority.rfind("]"):
        return url, f"{prefix}{authority}:{default_port}{tail}"
    port = authority[colon + 1 :]
    if not (port.isascii() and port.isdigit()):
        return None
    return url, f"{prefix}{authority[:colon]}{tail}"


def _body_hash_param(url: str) -> str | None:
    if BODY_HASH_PARAM not in url:
        return None
    # Twilio appends the name literally, so the raw query is matched without decoding it.
    query = url.partition("#")[0].partition("?")[2]
    for field in query.split("&"):
        name, _, value = field.partition("=")
        if name == BODY_HASH_PARAM:
            return value
    return None


def compute_signature(url: str, params: Params, auth_token: str) -> str:
    """The X-Twilio-Signature Twilio would send for a form request to exactly this URL."""
    suffix = _signing_suffix(params)
    return _sign(auth_token.encode(), url.encode(), suffix.encode()).decode("ascii")


def validate_request(
    *,
    url: str,
    params: Params,
    raw_body: bytes,
    content_type: str,
    signature: str | None,
    auth_tokens: Sequence[str],
) -> bool:
    """Whether a webhook request carries a valid X-Twilio-Signature for any of the tokens."""
    if not signature or not signature.isascii():
        return False
    variants = _port_variants(url)
    if variants is None:
        return False

    expected_hash = _body_hash_param(url)
    try:
        if expected_hash is not None:
            # The hash is checked whatever the declared content type, so that a signed JSON URL
            # can never be replayed with another body relabelled as a form.
            if not expected_hash.isascii() or not hmac.compare_digest(
                hashlib.sha256(raw_body).hexdigest(), expected_hash
            ):
                return False
            suffix = b""
        elif content_type.partition(";")[0].strip().lower() in _FORM_MEDIA_TYPES:
            suffix = _signing_suffix(params).encode()
        else:
            # Any other body is only covered by a hash in the signed URL; without one it would be
            # unauthenticated.
            return False
        encoded_variants = [variant.encode() for variant in variants]
    except (TypeError, ValueError):
        return False

    expected = signature.encode("ascii")
    # A bare string is a Sequence[str] too; its characters must never become keys.
    tokens = (auth_tokens,) if isinstance(auth_tokens, str) else auth_tokens
    for token in tokens:
        # Anyone could forge a signature made with an empty key.
        if not token:
            continue
        try:
            key = token.encode()
        except UnicodeError:
            continue
        for variant in encoded_variants:
            if hmac.compare_digest(_sign(key, variant, suffix), expected):
                return True
    return False


def which_url_signed(
    candidates: Sequence[str],
    *,
    params: Params,
    raw_body: bytes,
    content_type: str,
    signature: str | None,
    auth_token: str,
) -> str | None:
    """The first of ``candidates`` that this signature is valid for: when a webhook fails the
    check, which URL Twilio really signed tells the operator what to fix."""
    for url in candidates:
        if validate_request(
            url=url,
            params=params,
            raw_body=raw_body,
            content_type=content_type,
            signature=signature,
            auth_tokens=(auth_token,),
        ):
            return url
    return None
