"""X-Twilio-Signature as Twilio produces it, written independently of the bridge's validator."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

BODY_HASH_PARAM = "bodySHA256"


def signing_url(url: str) -> str:
    """Return `url` as Twilio signs it: without `user:pass@` and `#fragment`, otherwise verbatim."""
    url = url.split("#", 1)[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for stop in ("/", "?"):
        index = rest.find(stop)
        if index != -1:
            cut = min(cut, index)
    authority, tail = rest[:cut], rest[cut:]
    return f"{scheme}://{authority.rpartition('@')[2]}{tail}"


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Sign `url` plus the form params (names sorted, each name's distinct values sorted)."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    # Python's str ordering is code-point ordering, which equals UTF-8 byte ordering.
    payload = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def body_sha256(body: bytes) -> str:
    """Lowercase hex SHA-256 of a raw request body."""
    return hashlib.sha256(body).hexdigest()


def url_with_body_hash(url: str, body: bytes) -> str:
    """Append `bodySHA256=<hash>` to the query of `url`, as Twilio does for JSON bodies."""
    base, hash_sign, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}{BODY_HASH_PARAM}={body_sha256(body)}{hash_sign}{fragment}"
