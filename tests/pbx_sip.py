"""A SIP PBX stand-in for tests: it receives the bridge's MESSAGEs (UDP and TCP on one port)
and answers them as scripted, and it sends MESSAGEs as a phone would. Raw sockets and
hand-written SIP text, read with regular expressions: the tests check the bridge against the
RFCs, not against its own parser."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

CRLF = "\r\n"


@dataclass
class Received:
    """A request the PBX got from the bridge."""

    raw: bytes
    transport: str

    @property
    def head(self) -> str:
        return self.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")

    @property
    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def method(self) -> str:
        return self.head.split(" ", 1)[0]

    @property
    def uri(self) -> str:
        return self.head.split(" ", 2)[1]

    def header(self, name: str) -> str | None:
        found = headers(self.raw, name)
        return found[0] if found else None


def headers(raw: bytes, name: str) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    pattern = re.compile(rf"{re.escape(name)}[ \t]*:[ \t]*(.*?)[ \t]*", re.IGNORECASE)
    return [m[1] for line in head.split("\r\n") if (m := pattern.fullmatch(line))]


def status_of(raw: bytes) -> int:
    match = re.match(rb"SIP/2\.0 ([0-9]{3}) ", raw)
    assert match is not None, raw[:80]
    return int(match.group(1))


def response_to(raw: bytes, status: int, reason: str, extra: list[str] | None = None) -> bytes:
    """A response copying Via, From, To (tagged), Call-ID and CSeq, as RFC 3261 §8.2.6 says."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in headers(raw, "Via")]
    lines.append(f"From: {headers(raw, 'From')[0]}")
    to = headers(raw, "To")[0]
    lines.append(f"To: {to}" + ("" if ";tag=" in to else f";tag={secrets.token_hex(4)}"))
    lines.append(f"Call-ID: {headers(raw, 'Call-ID')[0]}")
    lines.append(f"CSeq: {headers(raw, 'CSeq')[0]}")
    lines += extra or []
    lines.append("Content-Length: 0")
    return (CRLF.join(lines) + CRLF + CRLF).encode()


def digest_params(value: str) -> dict[str, str]:
    return {k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


def digest_response(
    algorithm: str, user: str, realm: str, password: str, method: str, uri: str, p: dict[str, str]
) -> str:
    """RFC 7616 §3.4.1 with qop=auth, by hand with hashlib."""
    h = hashlib.md5 if algorithm.upper().startswith("MD5") else hashlib.sha256

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = hx(f"{user}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    return hx(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")


# What the PBX answers: a status and reason, and any extra header lines.
Answer = tuple[int, str, list[str]]
Script = Callable[[Received], Answer]


def always(status: int = 200, reason: str = "OK") -> Script:
    return lambda _received: (status, reason, [])


@dataclass
class Pbx:
    """Listens on UDP and TCP at one port of 127.0.0.1; answers as ``script`` says."""

    script: Script = field(default_factory=always)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            # The OS picks a UDP port; its TCP twin may be taken, then another pair is tried.
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            self.port = udp.getsockname()[1]
            try:
                self._tcp = await asyncio.start_server(self._stream, "127.0.0.1", self.port)
            except OSError:
                udp.close()
                continue
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
            return
        raise OSError("no free UDP and TCP port pair")

    async def close(self) -> None:
        self._udp.close()
        self._tcp.close()
        await self._tcp.wait_closed()

    @property
    def proxy_udp(self) -> str:
        return f"sip:127.0.0.1:{self.port};transport=udp"

    @property
    def proxy_tcp(self) -> str:
        return f"sip:127.0.0.1:{self.port};transport=tcp"

    def messages(self) -> list[Received]:
        """The distinct MESSAGEs (retransmissions of a branch counted once), in order."""
        seen: set[str] = set()
        found = []
        for item in self.received:
            key = (item.header("Via") or "") + (item.header("CSeq") or "")
            if item.method == "MESSAGE" and key not in seen:
                seen.add(key)
                found.append(item)
        return found

    async def wait_messages(self, count: int, within: float = 10.0) -> list[Received]:
        async with asyncio.timeout(within):
            while len(self.messages()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages()

    def answer(self, raw: bytes, transport: str) -> bytes | None:
        if not raw.startswith(b"MESSAGE ") and not raw.startswith(b"OPTIONS "):
            return None
        item = Received(raw, transport)
        self.received.append(item)
        self.arrived.set()
        status, reason, extra = self.script(item)
        return response_to(raw, status, reason, extra)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int((headers(head, "Content-Length") or ["0"])[0])
                raw = head + await reader.readexactly(length)
                answer = self.answer(raw, "tcp")
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, pbx: Pbx) -> None:
        self._pbx = pbx
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = self._pbx.answer(data, "udp")
        if answer is not None and self._transport is not None:
            self._transport.sendto(answer, addr)


def phone_message(
    *,
    bridge_port: int,
    local_port: int,
    extension: str = "101",
    domain: str = "acme.pbx.example.com",
    to: str = "+15557654321",
    body: str = "Hello from the desk phone",
    content_type: str = "text/plain;charset=UTF-8",
    call_id: str | None = None,
    cseq: int = 1,
    extra: list[str] | None = None,
    transport: str = "UDP",
) -> bytes:
    """A MESSAGE as a PBX relays a phone's text to the bridge (RFC 3428 §4)."""
    data = body.encode("utf-8")
    lines = [
        f"MESSAGE sip:{to}@127.0.0.1:{bridge_port} SIP/2.0",
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f'From: "Front desk" <sip:{extension}@{domain}>;tag={secrets.token_hex(4)}',
        f"To: <sip:{to}@{domain}>",
        f"Call-ID: {call_id or secrets.token_hex(10)}@{domain}",
        f"CSeq: {cseq} MESSAGE",
        f"Content-Type: {content_type}",
        *(extra or []),
        f"Content-Length: {len(data)}",
    ]
    return (CRLF.join(lines) + CRLF + CRLF).encode() + data


class Phone:
    """Sends MESSAGEs to the bridge over UDP and reads the final answer (retransmitting as a
    UAC does over UDP, RFC 3261 §17.1.2, so a slow commit is not mistaken for a loss)."""

    def __init__(self, bridge_port: int) -> None:
        self.bridge_port = bridge_port
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    async def send(self, raw: bytes, within: float = 10.0) -> bytes:
        """The first final response to ``raw``."""
        loop = asyncio.get_running_loop()
        interval = 0.5
        async with asyncio.timeout(within):
            while True:
                await loop.sock_sendto(self._sock, raw, ("127.0.0.1", self.bridge_port))
                try:
                    async with asyncio.timeout(interval):
                        while True:
                            data = await loop.sock_recv(self._sock, 65535)
                            if status_of(data) >= 200:
                                return data
                except TimeoutError:
                    interval = min(interval * 2, 4.0)
