"""Fetching URLs that tenants give us without letting them reach the operator's network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver


def is_public(address: str) -> bool:
    """Globally routable: not loopback, private, link-local (cloud metadata), multicast…"""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_global


class PublicOnlyResolver(ThreadedResolver):
    """Drops non-public addresses at connect time, for every hop of a redirect too, so a name
    that resolves (or re-resolves) to an internal address is never connected to."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await super().resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public


REDIRECTS = (301, 302, 303, 307, 308)


class FetchTooLarge(Exception):
    """The body is over the limit: no retry will make it smaller."""


class FetchFailed(Exception):
    """The URL could not be fetched (an HTTP status other than 200, or too many redirects)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Fetched:
    content_type: str | None
    data: bytes


async def fetch_bounded(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    limits: aiohttp.ClientTimeout,
    max_redirects: int = 3,
    check: Callable[[str], None] = lambda _url: None,
    headers: Callable[[int, str], Mapping[str, str]] = lambda _hop, _url: {},
) -> Fetched:
    """GET with redirects followed by hand, so that ``check`` sees every hop and ``headers``
    decides per hop what it carries (credentials on the first only, say); the body is read
    up to ``max_bytes`` within the time ``limits``. aiohttp's errors pass through."""
    for hop in range(max_redirects + 1):
        check(url)
        async with session.get(
            url, headers=headers(hop, url), timeout=limits, allow_redirects=False
        ) as response:
            if response.status in REDIRECTS and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise FetchFailed(f"answered HTTP {response.status}", response.status)
            if (response.content_length or 0) > max_bytes:
                raise FetchTooLarge(f"{response.content_length} bytes")
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise FetchTooLarge(f"more than {max_bytes} bytes")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            return Fetched(content_type or None, bytes(data))
    raise FetchFailed("too many redirects")
