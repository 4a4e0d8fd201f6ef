"""UDP: transaction timers against a raw-socket peer, response routing, drops and overload."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Coroutine
from typing import Any

from bridge.sip import (
    Destination,
    Handler,
    Limits,
    Outcome,
    SipEndpoint,
    SipRequest,
    SipResponse,
    Source,
    build_response,
)
from tests.sip.conftest import (
    FAST,
    EndpointFactory,
    UdpPeer,
    header,
    reply,
    request,
    status_of,
)


def blocked_handler(
    release: asyncio.Event, calls: list[tuple[SipRequest, Source]], status: int = 202
) -> Handler:
    async def handler(req: SipRequest, source: Source) -> SipResponse:
        calls.append((req, source))
        await release.wait()
        return build_response(req, status)

    return handler


async def test_server_absorbs_retransmissions_then_repeats_its_final(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    release = asyncio.Event()
    calls: list[tuple[SipRequest, Source]] = []
    endpoint = await make_endpoint(handler=blocked_handler(release, calls))
    data = request(via=f"127.0.0.1:{udp_peer.port};rport")
    for _ in range(3):  # the phone retransmits while the database commits
        udp_peer.send(data, endpoint.port)
        await asyncio.sleep(0.02)
    await udp_peer.silent(0.05)  # no 100 before the client's Timer E reached T2
    release.set()
    first = await udp_peer.recv()
    assert status_of(first) == 202
    udp_peer.send(data, endpoint.port)
    assert await udp_peer.recv() == first  # byte for byte the same final response
    assert len(calls) == 1
    assert endpoint.stats.retransmissions_absorbed == 3
    # Timer J (64·T1) ends the transaction: state is bounded in time.
    await asyncio.sleep(FAST.j + 0.1)
    assert endpoint.live_transactions == (0, 0)
    udp_peer.send(data, endpoint.port)
    await udp_peer.recv()
    assert len(calls) == 2


async def test_retransmission_after_t2_is_answered_100_trying(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    release = asyncio.Event()
    endpoint = await make_endpoint(handler=blocked_handler(release, []))
    data = request(via=f"127.0.0.1:{udp_peer.port};rport")
    udp_peer.send(data, endpoint.port)
    await asyncio.sleep(FAST.t2 + 0.05)
    udp_peer.send(data, endpoint.port)
    assert status_of(await udp_peer.recv()) == 100
    udp_peer.send(data, endpoint.port)
    assert status_of(await udp_peer.recv()) == 100  # Proceeding: the last provisional again
    release.set()
    assert status_of(await udp_peer.recv()) == 202


async def test_rport_sends_the_answer_to_the_source_port_and_stamps_via(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    seen: list[tuple[SipRequest, Source]] = []

    async def handler(req: SipRequest, source: Source) -> SipResponse:
        seen.append((req, source))
        return build_response(req, 202)

    endpoint = await make_endpoint(handler=handler)
    # A phone behind NAT: its Via names a private address and port.
    udp_peer.send(request(via="192.0.2.10:5999;rport"), endpoint.port)
    response = await udp_peer.recv()
    assert status_of(response) == 202
    via = header(response, "Via")[0]
    assert f"rport={udp_peer.port}" in via and "received=127.0.0.1" in via
    req, source = seen[0]
    assert source == Source("udp", "127.0.0.1", udp_peer.port)
    top = req.top_via
    assert top is not None and top.params["rport"] == str(udp_peer.port)


async def test_without_rport_the_answer_goes_to_the_via_port(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    loop = asyncio.get_running_loop()
    transport, listener = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0))
    listener.transport = transport
    try:
        udp_peer.send(request("OPTIONS", via=f"127.0.0.1:{listener.port}"), endpoint.port)
        response = await listener.recv()
        assert status_of(response) == 200
        assert "received" not in header(response, "Via")[0]  # sent-by matched the source
        await udp_peer.silent(0.05)
    finally:
        transport.close()


async def answer_after(peer: UdpPeer, copies: int) -> tuple[list[bytes], list[float]]:
    loop = asyncio.get_running_loop()
    got, times = [], []
    for _ in range(copies):
        got.append(await peer.recv())
        times.append(loop.time())
    return got, times


def message_to(endpoint: SipEndpoint, peer: UdpPeer) -> Coroutine[Any, Any, Outcome]:
    return endpoint.send_message(
        f"sip:101@127.0.0.1:{peer.port}",
        from_="sip:+15551234567@acme.example.com",
        to="sip:101@acme.example.com",
        body=b"hello",
        destination=Destination("127.0.0.1", peer.port, "udp"),
    )


async def test_client_retransmits_with_doubling_timer_e_until_answered(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    task = asyncio.create_task(message_to(endpoint, udp_peer))
    copies, times = await answer_after(udp_peer, 4)
    assert len(set(copies)) == 1  # retransmissions are the same bytes
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, expected in zip(gaps, (0.02, 0.04, 0.08), strict=True):
        assert expected * 0.7 <= gap <= expected + 0.06, gaps
    udp_peer.send(reply(copies[0], 200, "OK"), endpoint.port)
    outcome = await task
    assert outcome.ok and str(outcome) == "SIP 200 OK"
    udp_peer.send(reply(copies[0], 200, "OK"), endpoint.port)  # within Timer K: absorbed
    await asyncio.sleep(0.02)
    assert endpoint.stats.stray_responses == 0
    await udp_peer.silent(0.2)  # and no more retransmissions
    assert endpoint.live_transactions == (0, 0)


async def test_provisional_response_holds_timer_e_at_t2(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    task = asyncio.create_task(message_to(endpoint, udp_peer))
    first = await udp_peer.recv()
    udp_peer.send(reply(first, 100, "Trying"), endpoint.port)
    _, times = await answer_after(udp_peer, 4)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(FAST.t2 * 0.8 <= gap <= FAST.t2 + 0.06 for gap in gaps[1:]), gaps
    udp_peer.send(reply(first, 480, "Temporarily Unavailable"), endpoint.port)
    outcome = await task
    assert (outcome.kind, outcome.status) == ("response", 480)
    assert str(outcome) == "SIP 480 Temporarily Unavailable"


async def test_timer_f_gives_a_timeout_outcome(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await message_to(endpoint, udp_peer)
    elapsed = loop.time() - started
    assert outcome.kind == "timeout" and outcome.status is None and not outcome.ok
    assert FAST.f <= elapsed <= FAST.f + 0.3
    sent = udp_peer.inbox.qsize()
    assert 9 <= sent <= 12, sent  # 0, T1, 3T1, 7T1, then every T2 until 64·T1


async def test_garbage_is_dropped_silently_and_counted(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    udp_peer.send(b"\x16\x03\x01 not sip at all\r\n\r\n", endpoint.port)
    udp_peer.send(b"\r\n\r\n", endpoint.port)  # a keepalive, not an error
    udp_peer.send(request(via="127.0.0.1:1;rport").replace(b"CSeq: 1", b"CSeq: x"), endpoint.port)
    await udp_peer.silent(0.1)
    assert endpoint.transport_stats.udp_parse_errors == 2
    udp_peer.send(request("OPTIONS", via=f"127.0.0.1:{udp_peer.port}"), endpoint.port)
    assert status_of(await udp_peer.recv()) == 200


async def test_stray_responses_are_counted_and_ignored(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    stray = reply(request(via="127.0.0.1:1;rport"), 200, "OK")
    udp_peer.send(stray, endpoint.port)
    await asyncio.sleep(0.05)
    assert endpoint.stats.stray_responses == 1


async def test_overload_answers_503_with_retry_after(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    release = asyncio.Event()
    endpoint = await make_endpoint(
        handler=blocked_handler(release, []), limits=Limits(max_server_transactions=2)
    )
    for _ in range(3):
        udp_peer.send(request(via=f"127.0.0.1:{udp_peer.port};rport"), endpoint.port)
    response = await udp_peer.recv()
    assert status_of(response) == 503
    assert header(response, "Retry-After") == ["5"]
    assert endpoint.stats.overloaded == 1
    release.set()
    assert {status_of(await udp_peer.recv()) for _ in range(2)} == {202}


async def test_request_line_and_headers_of_an_outgoing_message(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint(advertise=("203.0.113.7", 5062), user_agent="bridge-test/1")
    task = asyncio.create_task(
        endpoint.send_message(
            "sip:101@acme.example.com",
            from_='"+15551234567" <sip:+15551234567@acme.example.com>',
            to="<sip:101@acme.example.com>",
            body="Grüße 👋".encode(),
            destination=Destination("127.0.0.1", udp_peer.port),
            extra_headers=[("X-Bridge-Message-Id", "msg_1"), ("X-Bridge-DID", "+15557654321")],
        )
    )
    raw = await udp_peer.recv()
    assert raw.startswith(b"MESSAGE sip:101@acme.example.com SIP/2.0\r\n")
    [via] = header(raw, "Via")
    assert re.fullmatch(r"SIP/2\.0/UDP 203\.0\.113\.7:5062;rport;branch=z9hG4bK\w+", via), via
    assert header(raw, "Max-Forwards") == ["70"]
    assert re.fullmatch(
        r'"\+15551234567" <sip:\+15551234567@acme\.example\.com>;tag=\w+', header(raw, "From")[0]
    )
    assert header(raw, "To") == ["<sip:101@acme.example.com>"]
    assert header(raw, "CSeq") == ["1 MESSAGE"]
    assert re.fullmatch(r"\w+@203\.0\.113\.7", header(raw, "Call-ID")[0])
    assert header(raw, "Content-Type") == ["text/plain;charset=UTF-8"]
    assert header(raw, "User-Agent") == ["bridge-test/1"]
    assert header(raw, "X-Bridge-Message-Id") == ["msg_1"]
    assert header(raw, "Content-Length") == [str(len("Grüße 👋".encode()))]
    assert header(raw, "Contact") == []
    assert raw.endswith("\r\n\r\nGrüße 👋".encode())
    udp_peer.send(reply(raw, 202, "Accepted"), endpoint.port)
    assert (await task).status == 202


async def test_too_large_for_a_datagram_is_a_transport_error(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    outcome = await endpoint.send_message(
        "sip:101@127.0.0.1",
        from_="sip:a@b",
        to="sip:101@b",
        body=b"x" * 70000,
        destination=Destination("127.0.0.1", udp_peer.port),
    )
    assert outcome.kind == "transport_error" and "use TCP" in outcome.reason


async def test_wildcard_bind_puts_a_routable_address_in_via(udp_peer: UdpPeer) -> None:
    endpoint = await SipEndpoint.start("0.0.0.0", 0, timers=FAST)
    try:
        task = asyncio.create_task(message_to(endpoint, udp_peer))
        raw = await udp_peer.recv()
        assert header(raw, "Via")[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{endpoint.port};")
        udp_peer.send(reply(raw, 200, "OK"), endpoint.port)
        assert (await task).ok
    finally:
        await endpoint.close()
