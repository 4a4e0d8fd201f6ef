"""Fetching URLs that tenants give us without letting them reach the operator's network."""

from __future__ import annotations

import ipaddress
import socket

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
