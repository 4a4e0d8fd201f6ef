"""UDP and TCP on one host:port: framing, connection reuse and limits (RFC 3261 §18)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from bridge.log import get_logger
from bridge.sip.errors import SipParseError, SipTransportError
from bridge.sip.headers import Via
from bridge.sip.message import SipMessage, SipRequest
from bridge.sip.parser import Ping, StreamFramer, parse_message
from bridge.sip.proxy import DEFAULT_PORT, TransportName
from bridge.sip.tuning import Limits

log = get_logger("bridge.sip.transport")

_BIND_ATTEMPTS = 20
_MAX_DATAGRAM = 65507


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: transport, remote IP and port."""

    transport: TransportName
    host: str
    port: int


@dataclass(slots=True)
class TransportStats:
    """Counters of what the transports dropped or refused."""

    udp_parse_errors: int = 0
    tcp_parse_errors: int = 0
    tcp_refused: int = 0
    tcp_overflows: int = 0


class Link(Protocol):
    """A path that messages for one peer are sent on."""

    @property
    def reliable(self) -> bool: ...

    @property
    def lost(self) -> asyncio.Future[None]: ...

    def send(self, data: bytes) -> None: ...


MessageSink = Callable[[SipMessage, Source, Link], None]


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return False


def stamp_via(request: SipRequest, via: Via, source: Source) -> Via:
    """Add received (RFC 3261 §18.2.1) and fill rport (RFC 3581 §4) in the top Via."""
    stamped = via
    if "rport" in via.params:
        stamped = via.with_param("rport", str(source.port)).with_param("received", source.host)
    elif not _same_ip(via.host, source.host):
        stamped = via.with_param("received", source.host)
    if stamped != via:
        request.replace_top_via(stamped)
    return stamped


def response_address(via: Via, source: Source) -> tuple[str, int]:
    """Where a UDP response goes (RFC 3261 §18.2.2): the source port only if rport asked."""
    return source.host, source.port if "rport" in via.params else via.port or DEFAULT_PORT


class UdpLink:
    """The endpoint's UDP socket, aimed at one remote address."""

    reliable = False

    def __init__(self, layer: TransportLayer, host: str, port: int) -> None:
        self._layer = layer
        self.address = (host, port)

    @property
    def lost(self) -> asyncio.Future[None]:
        return self._layer.closed

    def send(self, data: bytes) -> None:
        self._layer.sendto(data, self.address)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self._layer = layer

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._layer.datagram(data, str(addr[0]), int(addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp.error", error=str(exc))


class TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened, framing messages by Content-Length."""

    reliable = True

    def __init__(self, layer: TransportLayer) -> None:
        self._layer = layer
        self._framer = StreamFramer(layer.limits)
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self.peer = ("", 0)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's does not subclass asyncio.Transport, so no isinstance.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        if not self._layer.admit(self):
            self._transport.abort()
            return
        self._touch()
        self._schedule_idle(self._layer.limits.tcp_idle_timeout)

    def data_received(self, data: bytes) -> None:
        self._touch()
        messages, error = self._framer.feed(data)
        source = Source("tcp", *self.peer)
        for message in messages:
            if isinstance(message, Ping):
                self._write(b"\r\n")
            else:
                self._layer.deliver(message, source, self)
        if error is not None:
            self._layer.stats.tcp_parse_errors += 1
            log.debug("sip.parse_error", transport="tcp", host=self.peer[0], reason=str(error))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._layer.forget(self)
        if not self.lost.done():
            self.lost.set_result(None)
        log.debug("sip.tcp.closed", host=self.peer[0], port=self.peer[1])

    def send(self, data: bytes) -> None:
        if not self._write(data):
            raise SipTransportError(f"TCP connection to {self.peer[0]}:{self.peer[1]} is closed")

    def _write(self, data: bytes) -> bool:
        if self._transport is None or self._transport.is_closing():
            return False
        self._touch()
        self._transport.write(data)
        if self._transport.get_write_buffer_size() > self._layer.limits.max_tcp_write_buffer:
            # A peer that does not read would otherwise make us buffer without bound.
            self._layer.stats.tcp_overflows += 1
            self.abort()
            return False
        return True

    def _touch(self) -> None:
        self._last_activity = asyncio.get_running_loop().time()

    def _schedule_idle(self, delay: float) -> None:
        self._idle = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        timeout = self._layer.limits.tcp_idle_timeout
        quiet = asyncio.get_running_loop().time() - self._last_activity
        if quiet >= timeout:
            self.close()
        else:
            self._schedule_idle(timeout - quiet)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def _bound(family: int, kind: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class TransportLayer:
    """The endpoint's sockets: one UDP socket and one TCP listener on the same port."""

    def __init__(self, sink: MessageSink, limits: Limits) -> None:
        self.limits = limits
        self.stats = TransportStats()
        self._sink = sink
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[tuple[str, int], list[TcpConnection]] = {}
        self._per_host: Counter[str] = Counter()
        self._connecting: dict[tuple[str, int], asyncio.Task[TcpConnection]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.host = ""
        self.port = 0
        self.family = socket.AF_INET

    async def open(self, host: str, port: int) -> None:
        """Bind UDP, then TCP on the port UDP got; with port 0, retry until both fit."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SipTransportError(f"cannot resolve the SIP listen host {host!r}: {exc}") from exc
        self.family, address = infos[0][0], str(infos[0][4][0])
        # Sockets are bound here, not by the loop, so a failed bind closes a socket we own
        # (uvloop leaks its half-made transport when it fails to bind).
        for _ in range(_BIND_ATTEMPTS if port == 0 else 1):
            try:
                udp_sock = _bound(self.family, socket.SOCK_DGRAM, address, port)
            except OSError as exc:
                raise SipTransportError(f"cannot listen on UDP {address}:{port}: {exc}") from exc
            bound = int(udp_sock.getsockname()[1])
            try:
                tcp_sock = _bound(self.family, socket.SOCK_STREAM, address, bound)
            except OSError as exc:
                udp_sock.close()
                if exc.errno == errno.EADDRINUSE and port == 0:
                    continue
                raise SipTransportError(f"cannot listen on TCP {address}:{bound}: {exc}") from exc
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp_sock)
            server = await loop.create_server(lambda: TcpConnection(self), sock=tcp_sock)
            self._udp, self._server = udp, server
            self.host, self.port = address, bound
            return
        raise SipTransportError(f"no port on {address} was free for both UDP and TCP")

    def datagram(self, data: bytes, host: str, port: int) -> None:
        if not data.strip(b"\r\n\x00 "):
            return  # a NAT keepalive
        try:
            message = parse_message(data, limits=self.limits)
        except SipParseError as exc:
            self.stats.udp_parse_errors += 1
            log.debug("sip.parse_error", transport="udp", host=host, port=port, reason=str(exc))
            return
        self.deliver(message, Source("udp", host, port), UdpLink(self, host, port))

    def deliver(self, message: SipMessage, source: Source, link: Link) -> None:
        self._sink(message, source, link)

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if self._udp is None or self._udp.is_closing():
            raise SipTransportError("the SIP endpoint is closed")
        if len(data) > _MAX_DATAGRAM:
            raise SipTransportError(f"{len(data)} bytes do not fit in a UDP datagram; use TCP")
        self._udp.sendto(data, address)

    def udp_link(self, host: str, port: int) -> UdpLink:
        return UdpLink(self, host, port)

    def admit(self, connection: TcpConnection) -> bool:
        host = connection.peer[0]
        total = sum(self._per_host.values())
        if (
            self.closed.done()
            or total >= self.limits.max_tcp_connections
            or self._per_host[host] >= self.limits.max_tcp_connections_per_host
        ):
            self.stats.tcp_refused += 1
            log.debug("sip.tcp.refused", host=host, connections=total)
            return False
        self._connections.setdefault(connection.peer, []).append(connection)
        self._per_host[host] += 1
        return True

    def forget(self, connection: TcpConnection) -> None:
        same_peer = self._connections.get(connection.peer, [])
        if connection in same_peer:
            same_peer.remove(connection)
            self._per_host[connection.peer[0]] -= 1
            if not self._per_host[connection.peer[0]]:
                del self._per_host[connection.peer[0]]
            if not same_peer:
                del self._connections[connection.peer]

    async def tcp_link(self, host: str, port: int) -> TcpConnection:
        """An open connection to host:port, reused if there is one, else connected now."""
        if self.closed.done():
            raise SipTransportError("the SIP endpoint is closed")
        key = (host, port)
        for connection in self._connections.get(key, []):
            if connection.usable:
                return connection
        task = self._connecting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(host, port))
            self._connecting[key] = task
            task.add_done_callback(lambda done: self._connected(key, done))
        # Shielded: several senders share one connect, and one giving up cancels nothing.
        return await asyncio.shield(task)

    def _connected(self, key: tuple[str, int], task: asyncio.Task[TcpConnection]) -> None:
        self._connecting.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported

    async def _connect(self, host: str, port: int) -> TcpConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.limits.tcp_connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: TcpConnection(self), host, port, family=self.family
                )
        except (OSError, TimeoutError) as exc:
            raise SipTransportError(f"cannot connect to {host}:{port} over TCP: {exc!r}") from exc
        if not connection.usable:
            raise SipTransportError(f"too many TCP connections to open one to {host}:{port}")
        return connection

    async def close(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()
        connecting = list(self._connecting.values())
        for task in connecting:
            task.cancel()
        for connections in list(self._connections.values()):
            for connection in list(connections):
                connection.abort()
        await asyncio.gather(*connecting, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Let the transports' connection_lost callbacks run before the caller moves on.
        await asyncio.sleep(0)
