"""Where to send: the `proxy` setting of a tenant (design §10) and name resolution."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

from bridge.sip.errors import SipParseError, SipTransportError
from bridge.sip.uri import SipUri

TransportName = Literal["udp", "tcp"]
DEFAULT_PORT = 5060


@dataclass(frozen=True, slots=True)
class Destination:
    """A next hop: host (name or IP, IPv6 without brackets), port and transport."""

    host: str
    port: int
    transport: TransportName = "udp"

    @property
    def is_resolved(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_proxy(text: str) -> Destination:
    """Parse `sip:10.0.0.5:5060;transport=udp` style settings (default port 5060, udp).

    Only sip: URIs over UDP or TCP are accepted; TLS (sips:) and other transports are refused.
    """
    uri = SipUri.parse(text.strip())
    if uri.secure:
        raise SipParseError("sips: (TLS) proxies are not supported")
    if uri.user is not None:
        raise SipParseError("a proxy URI names a host, not a user")
    transport = uri.transport or "udp"
    if transport not in ("udp", "tcp"):
        raise SipParseError(f"transport={transport} is not supported (udp or tcp)")
    unknown = set(uri.params) - {"transport", "lr"}
    if unknown or uri.headers:
        raise SipParseError("a proxy URI takes no parameters but transport and lr")
    return Destination(
        uri.address, uri.port or DEFAULT_PORT, "udp" if transport == "udp" else "tcp"
    )


async def resolve(destination: Destination, *, family: int = socket.AF_UNSPEC) -> Destination:
    """The destination with its host resolved to an IP address by the event loop's resolver.

    Plain A/AAAA lookup of the host name: no RFC 3263 SRV or NAPTR records are consulted, so a
    PBX is configured with the host (and port) that actually listens. `family` restricts the
    answer to the address family the sending socket can reach.
    """
    if destination.is_resolved:
        return destination
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_DGRAM if destination.transport == "udp" else socket.SOCK_STREAM
    try:
        infos = await loop.getaddrinfo(destination.host, destination.port, family=family, type=kind)
    except OSError as exc:
        raise SipTransportError(f"cannot resolve {destination.host}: {exc}") from exc
    if not infos:
        raise SipTransportError(f"cannot resolve {destination.host}")
    address = str(infos[0][4][0])
    return Destination(address, destination.port, destination.transport)
