"""TCP: stream framing, connection reuse, limits, and UDP+TCP on one port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bridge.sip import Destination, Limits, SipRequest, SipResponse, Source, build_response
from tests.sip.conftest import (
    EndpointFactory,
    UdpPeer,
    header,
    read_sip,
    reply,
    request,
    status_of,
)


@contextlib.asynccontextmanager
async def connect(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_by_peer(reader: asyncio.StreamReader, within: float = 2.0) -> bool:
    try:
        rest = await asyncio.wait_for(reader.read(65536), within)
    except ConnectionResetError:
        return True
    return rest == b""


async def accept_all(req: SipRequest, source: Source) -> SipResponse:
    return build_response(req, 202, headers=[("X-Source", f"{source.transport}:{source.port}")])


def tcp_request(call_id: str, body: str = "Hello") -> bytes:
    # Sent-by names a port nobody listens on: over TCP the answer uses the same connection.
    return request(via="127.0.0.1:9;rport", transport="TCP", call_id=call_id, body=body)


async def test_two_messages_in_one_segment(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint(handler=accept_all)
    async with connect(endpoint.port) as (reader, writer):
        writer.write(tcp_request("one") + tcp_request("two"))
        first, second = await read_sip(reader), await read_sip(reader)
        local_port = writer.get_extra_info("sockname")[1]
    assert {status_of(first), status_of(second)} == {202}
    calls = sorted(header(first, "Call-ID") + header(second, "Call-ID"))
    assert calls == ["one@pbx.example.com", "two@pbx.example.com"]
    assert header(first, "X-Source") == [f"tcp:{local_port}"]


async def test_one_message_split_over_many_segments(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint(handler=accept_all)
    data = tcp_request("split", body="ü" * 300)
    async with connect(endpoint.port) as (reader, writer):
        for start in range(0, len(data), 7):
            writer.write(data[start : start + 7])
            await writer.drain()
            await asyncio.sleep(0)
        response = await read_sip(reader)
    assert status_of(response) == 202


async def test_oversized_content_length_closes_the_connection(
    make_endpoint: EndpointFactory,
) -> None:
    endpoint = await make_endpoint(handler=accept_all)
    async with connect(endpoint.port) as (reader, writer):
        head = tcp_request("big").split(b"Content-Length")[0]
        writer.write(head + b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
        assert await closed_by_peer(reader)
    assert endpoint.transport_stats.tcp_parse_errors == 1


async def test_missing_content_length_closes_the_connection(
    make_endpoint: EndpointFactory,
) -> None:
    endpoint = await make_endpoint(handler=accept_all)
    async with connect(endpoint.port) as (reader, writer):
        head = tcp_request("nolength").split(b"Content-Length")[0]
        writer.write(head + b"\r\nHello")
        assert await closed_by_peer(reader)


async def test_double_crlf_ping_gets_a_crlf_pong(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint(handler=accept_all)
    async with connect(endpoint.port) as (reader, writer):
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        writer.write(tcp_request("after-ping"))
        assert status_of(await read_sip(reader)) == 202


async def test_idle_connections_are_closed(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint(limits=Limits(tcp_idle_timeout=0.2))
    async with connect(endpoint.port) as (reader, _):
        assert await closed_by_peer(reader, within=2)


async def test_connections_per_host_are_limited(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint(
        handler=accept_all, limits=Limits(max_tcp_connections_per_host=1)
    )
    async with connect(endpoint.port) as (reader, writer):
        async with connect(endpoint.port) as (second, _):
            assert await closed_by_peer(second)
        writer.write(tcp_request("first-still-works"))
        assert status_of(await read_sip(reader)) == 202
    assert endpoint.transport_stats.tcp_refused == 1


async def test_udp_and_tcp_share_the_port_the_os_picked(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    assert endpoint.port != 0
    udp_peer.send(request("OPTIONS", via=f"127.0.0.1:{udp_peer.port}"), endpoint.port)
    assert status_of(await udp_peer.recv()) == 200
    async with connect(endpoint.port) as (reader, writer):
        writer.write(request("OPTIONS", via="127.0.0.1:9", transport="TCP"))
        assert status_of(await read_sip(reader)) == 200


class PbxSink:
    """A raw TCP server standing in for the PBX: answers each request with `status`."""

    def __init__(self, status: int = 200, close_instead: bool = False) -> None:
        self.status = status
        self.close_instead = close_instead
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                raw = await read_sip(reader, within=5)
                self.requests.append(raw)
                if self.close_instead:
                    break
                writer.write(reply(raw, self.status, "OK"))
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def pbx(sink: PbxSink) -> AsyncIterator[int]:
    server = await asyncio.start_server(sink.serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_outgoing_tcp_reuses_one_connection(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint()
    sink = PbxSink()
    async with pbx(sink) as port:
        destination = Destination("127.0.0.1", port, "tcp")
        outcomes = await asyncio.gather(
            *(
                endpoint.send_message(
                    "sip:101@pbx.example.com",
                    from_="sip:+15551234567@pbx.example.com",
                    to="sip:101@pbx.example.com",
                    body=b"x" * 3000,  # over TCP a long text goes whole
                    destination=destination,
                )
                for _ in range(3)
            )
        )
        await endpoint.close()
    assert [o.status for o in outcomes] == [200, 200, 200]
    assert sink.connections == 1
    assert header(sink.requests[0], "Via")[0].startswith(f"SIP/2.0/TCP 127.0.0.1:{endpoint.port};")


async def test_connection_lost_before_the_answer_is_a_transport_error(
    make_endpoint: EndpointFactory,
) -> None:
    endpoint = await make_endpoint()
    async with pbx(PbxSink(close_instead=True)) as port:
        outcome = await endpoint.send_message(
            "sip:101@pbx.example.com",
            from_="sip:a@b",
            to="sip:101@pbx.example.com",
            body=b"hi",
            destination=Destination("127.0.0.1", port, "tcp"),
        )
    assert outcome.kind == "transport_error"
    assert "closed" in outcome.reason


async def test_refused_connection_is_a_transport_error(make_endpoint: EndpointFactory) -> None:
    endpoint = await make_endpoint()
    outcome = await endpoint.send_message(
        "sip:101@pbx.example.com",
        from_="sip:a@b",
        to="sip:101@pbx.example.com",
        body=b"hi",
        destination=Destination("127.0.0.1", 1, "tcp"),
    )
    assert outcome.kind == "transport_error"
    assert str(outcome).startswith("SIP transport error: cannot connect to 127.0.0.1:1")
