"""Raw-socket SIP peers with hand-written SIP text, so tests check the RFC, not our parser."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from bridge.sip import Limits, SipEndpoint, Timers

# T1 = 20 ms: Timer F (64·T1) is 1.28 s, Timer J the same.
FAST = Timers(t1=0.02, t2=0.16, t4=0.1)

try:
    import uvloop
except ImportError:  # not installed on Windows
    uvloop = None


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test on asyncio's loop and on uvloop, the loop the daemon runs."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def crlf(text: str) -> bytes:
    """Hand-written SIP: one header per line, any indentation removed, CRLF line ends."""
    lines = [line.strip() for line in text.strip("\n").split("\n")]
    return "\r\n".join(lines).encode()


def header(raw: bytes, name: str) -> list[str]:
    """Values of a header in raw SIP bytes, by full name, case-insensitive."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    found = []
    for line in head.split("\r\n")[1:]:
        field, _, value = line.partition(":")
        if field.strip(" \t").lower() == name.lower():
            found.append(value.strip(" \t"))
    return found


def status_of(raw: bytes) -> int:
    match = re.match(rb"SIP/2\.0 ([0-9]{3}) ", raw)
    assert match is not None, raw[:80]
    return int(match.group(1))


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def reply(raw: bytes, status: int, reason: str, extra: str = "", to_tag: str = "pbx1") -> bytes:
    """A response to raw request bytes, written by hand: Via, From, To(+tag), Call-ID, CSeq."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in header(raw, "Via")]
    lines += [f"From: {header(raw, 'From')[0]}", f"To: {header(raw, 'To')[0]};tag={to_tag}"]
    lines += [f"Call-ID: {header(raw, 'Call-ID')[0]}", f"CSeq: {header(raw, 'CSeq')[0]}"]
    lines += [line.strip() for line in extra.split("\n") if line.strip()]
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(
    method: str = "MESSAGE",
    *,
    via: str,
    uri: str = "sip:101@bridge.example.com",
    branch: str | None = None,
    call_id: str | None = None,
    cseq: str | None = None,
    body: str = "Hello",
    extra: str = "",
    content_type: str | None = "text/plain;charset=UTF-8",
    max_forwards: str = "70",
    transport: str = "UDP",
) -> bytes:
    """A request as a phone would write it; `via` is the sent-by part, e.g. `127.0.0.1:5070`."""
    data = body.encode()
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {via};branch=" + (branch or "z9hG4bK" + secrets.token_hex(6)),
        f"Max-Forwards: {max_forwards}",
        'From: "Alice" <sip:201@pbx.example.com>;tag=a73kszlfl',
        "To: <sip:101@bridge.example.com>",
        f"Call-ID: {call_id or secrets.token_hex(8)}@pbx.example.com",
        f"CSeq: {cseq or f'1 {method}'}",
    ]
    if content_type and data:
        lines.append(f"Content-Type: {content_type}")
    lines += [line for line in extra.split("\n") if line.strip()]
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(line.strip() for line in lines) + "\r\n\r\n").encode() + data


class UdpPeer(asyncio.DatagramProtocol):
    """A raw UDP socket standing in for a phone or PBX."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.inbox.put_nowait((data, (str(addr[0]), int(addr[1]))))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, port: int, host: str = "127.0.0.1") -> None:
        assert self.transport is not None
        self.transport.sendto(data, (host, port))

    async def recv(self, within: float = 3.0) -> bytes:
        data, _ = await asyncio.wait_for(self.inbox.get(), within)
        return data

    async def recv_from(self, within: float = 3.0) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.inbox.get(), within)

    async def silent(self, seconds: float) -> None:
        """Assert nothing arrives for `seconds`."""
        try:
            data = await asyncio.wait_for(self.inbox.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected datagram: {data[0][:120]!r}")


async def read_sip(reader: asyncio.StreamReader, within: float = 3.0) -> bytes:
    """One message from a TCP stream, framed by its Content-Length (read with a regex)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)", head)
    length = int(match.group(1)) if match else 0
    return head + await asyncio.wait_for(reader.readexactly(length), within)


EndpointFactory = Callable[..., Awaitable[SipEndpoint]]


@pytest.fixture
async def udp_peer() -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    peer.transport = transport
    yield peer
    transport.close()


@pytest.fixture
async def make_endpoint() -> AsyncIterator[EndpointFactory]:
    started: list[SipEndpoint] = []

    async def make(**kwargs: Any) -> SipEndpoint:
        kwargs.setdefault("timers", FAST)
        kwargs.setdefault("limits", Limits())
        endpoint = await SipEndpoint.start("127.0.0.1", 0, **kwargs)
        started.append(endpoint)
        return endpoint

    yield make
    for endpoint in started:
        await endpoint.close()
