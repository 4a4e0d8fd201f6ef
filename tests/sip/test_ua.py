"""What the user agent answers by itself, handler failures, and a clean close."""

from __future__ import annotations

import asyncio

import pytest

from bridge.sip import (
    Destination,
    SipEndpoint,
    SipRequest,
    SipResponse,
    SipTransportError,
    Source,
    build_response,
    warning_value,
)
from tests.sip.conftest import FAST, EndpointFactory, UdpPeer, header, request, status_of


async def accept(req: SipRequest, source: Source) -> SipResponse:
    return build_response(req, 202)


async def ask(peer: UdpPeer, endpoint: SipEndpoint, data: bytes) -> bytes:
    peer.send(data, endpoint.port)
    return await peer.recv()


async def test_options_is_answered_with_allow(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint(handler=accept)
    response = await ask(udp_peer, endpoint, request("OPTIONS", via=f"127.0.0.1:{udp_peer.port}"))
    assert status_of(response) == 200
    assert header(response, "Allow") == ["MESSAGE, OPTIONS"]
    assert ";tag=" in header(response, "To")[0]


@pytest.mark.parametrize("method", ["INVITE", "SUBSCRIBE", "REGISTER", "FOO"])
async def test_unwanted_methods_get_405_with_allow(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer, method: str
) -> None:
    endpoint = await make_endpoint(handler=accept)
    response = await ask(udp_peer, endpoint, request(method, via=f"127.0.0.1:{udp_peer.port}"))
    assert status_of(response) == 405
    assert header(response, "Allow") == ["MESSAGE, OPTIONS"]


async def test_ack_is_ignored(make_endpoint: EndpointFactory, udp_peer: UdpPeer) -> None:
    endpoint = await make_endpoint(handler=accept)
    udp_peer.send(request("ACK", via=f"127.0.0.1:{udp_peer.port}"), endpoint.port)
    await udp_peer.silent(0.1)


async def test_without_a_handler_message_is_405(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    response = await ask(udp_peer, endpoint, request(via=f"127.0.0.1:{udp_peer.port}"))
    assert status_of(response) == 405
    assert header(response, "Allow") == ["OPTIONS"]


async def test_max_forwards_zero(make_endpoint: EndpointFactory, udp_peer: UdpPeer) -> None:
    endpoint = await make_endpoint(handler=accept)
    via = f"127.0.0.1:{udp_peer.port}"
    assert status_of(await ask(udp_peer, endpoint, request(via=via, max_forwards="0"))) == 483
    options = request("OPTIONS", via=via, max_forwards="0")
    assert status_of(await ask(udp_peer, endpoint, options)) == 200


@pytest.mark.parametrize("missing", ["From", "To", "Call-ID", "CSeq"])
async def test_missing_mandatory_headers_get_400(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer, missing: str
) -> None:
    endpoint = await make_endpoint(handler=accept)
    lines = request(via=f"127.0.0.1:{udp_peer.port}").split(b"\r\n")
    data = b"\r\n".join(line for line in lines if not line.startswith(missing.encode() + b":"))
    response = await ask(udp_peer, endpoint, data)
    assert response.startswith(f"SIP/2.0 400 Missing {missing}\r\n".encode())


async def test_cseq_method_mismatch_and_unknown_version(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint(handler=accept)
    via = f"127.0.0.1:{udp_peer.port}"
    mismatch = await ask(udp_peer, endpoint, request(via=via, cseq="1 INVITE"))
    assert mismatch.startswith(b"SIP/2.0 400 CSeq method does not match the request\r\n")
    future = request("OPTIONS", via=via).replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1)
    assert status_of(await ask(udp_peer, endpoint, future)) == 505


async def test_non_sip_request_uri_gets_416(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint(handler=accept)
    data = request(via=f"127.0.0.1:{udp_peer.port}", uri="tel:+15551234567")
    assert status_of(await ask(udp_peer, endpoint, data)) == 416


async def test_handler_sees_request_and_source_and_can_refuse_with_warning(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    seen: list[tuple[SipRequest, Source]] = []

    async def refuse(req: SipRequest, source: Source) -> SipResponse:
        seen.append((req, source))
        warning = warning_value("bridge.example.com", "no_route")
        return build_response(req, 404, headers=[("Warning", warning)])

    endpoint = await make_endpoint(handler=refuse)
    response = await ask(
        udp_peer, endpoint, request(via=f"127.0.0.1:{udp_peer.port}", body="héllo")
    )
    assert status_of(response) == 404
    assert header(response, "Warning") == ['399 bridge.example.com "no_route"']
    req, source = seen[0]
    assert req.body == "héllo".encode()
    assert source == Source("udp", "127.0.0.1", udp_peer.port)
    content_type = req.content_type
    assert content_type is not None and content_type.charset == "UTF-8"


async def test_a_raising_handler_gives_500_and_the_endpoint_lives_on(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    calls = 0

    async def flaky(req: SipRequest, source: Source) -> SipResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")
        return build_response(req, 202)

    endpoint = await make_endpoint(handler=flaky)
    via = f"127.0.0.1:{udp_peer.port}"
    assert status_of(await ask(udp_peer, endpoint, request(via=via))) == 500
    assert status_of(await ask(udp_peer, endpoint, request(via=via))) == 202
    assert endpoint.stats.handler_errors == 1


async def test_a_handler_returning_a_provisional_is_a_500(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    async def wrong(req: SipRequest, source: Source) -> SipResponse:
        return build_response(req, 180)

    endpoint = await make_endpoint(handler=wrong)
    assert (
        status_of(await ask(udp_peer, endpoint, request(via=f"127.0.0.1:{udp_peer.port}"))) == 500
    )


async def test_a_stuck_handler_times_out_with_500(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    async def stuck(req: SipRequest, source: Source) -> SipResponse:
        await asyncio.sleep(60)
        return build_response(req, 202)

    endpoint = await make_endpoint(handler=stuck, handler_timeout=0.1)
    response = await ask(udp_peer, endpoint, request(via=f"127.0.0.1:{udp_peer.port}"))
    assert status_of(response) == 500
    assert header(response, "Retry-After") == ["5"]


async def test_cancel_of_a_pending_message_and_of_nothing(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    release = asyncio.Event()

    async def slow(req: SipRequest, source: Source) -> SipResponse:
        await release.wait()
        return build_response(req, 202)

    endpoint = await make_endpoint(handler=slow)
    via = f"127.0.0.1:{udp_peer.port}"
    udp_peer.send(request(via=via, branch="z9hG4bKpending", call_id="c1"), endpoint.port)
    cancel = request("CANCEL", via=via, branch="z9hG4bKpending", call_id="c1", body="")
    assert status_of(await ask(udp_peer, endpoint, cancel)) == 200
    other = request("CANCEL", via=via, branch="z9hG4bKnothing", body="")
    assert status_of(await ask(udp_peer, endpoint, other)) == 481
    release.set()
    assert status_of(await udp_peer.recv()) == 202  # CANCEL does not stop a MESSAGE


async def test_rfc2543_peer_without_magic_cookie_is_matched_by_call_id_and_cseq(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    calls = 0

    async def count(req: SipRequest, source: Source) -> SipResponse:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return build_response(req, 202)

    endpoint = await make_endpoint(handler=count)
    old = request(via=f"127.0.0.1:{udp_peer.port}", branch="1", call_id="old")
    udp_peer.send(old, endpoint.port)
    udp_peer.send(old, endpoint.port)
    first = await udp_peer.recv()
    udp_peer.send(old, endpoint.port)
    assert await udp_peer.recv() == first
    assert calls == 1
    newer = request(via=f"127.0.0.1:{udp_peer.port}", branch="1", call_id="old", cseq="2 MESSAGE")
    assert status_of(await ask(udp_peer, endpoint, newer)) == 202
    assert calls == 2


async def test_extra_headers_cannot_override_the_endpoints_own() -> None:
    endpoint = await SipEndpoint.start("127.0.0.1", 0, timers=FAST)
    try:
        with pytest.raises(ValueError, match="extra_headers"):
            await endpoint.send_message(
                "sip:a@b",
                from_="sip:c@d",
                to="sip:a@b",
                body=b"",
                destination=Destination("127.0.0.1", 9),
                extra_headers=[("Via", "SIP/2.0/UDP evil")],
            )
        with pytest.raises(ValueError, match="INVITE"):
            await endpoint.send_request(
                "INVITE", "sip:a@b", from_="sip:c@d", to="sip:a@b", destination=Destination("h", 9)
            )
    finally:
        await endpoint.close()


async def test_explicit_port_in_use_is_a_typed_error() -> None:
    first = await SipEndpoint.start("127.0.0.1", 0, timers=FAST)
    try:
        with pytest.raises(SipTransportError, match="cannot listen"):
            await SipEndpoint.start("127.0.0.1", first.port, timers=FAST)
    finally:
        await first.close()


async def test_close_cancels_everything_it_started(udp_peer: UdpPeer) -> None:
    before = asyncio.all_tasks()
    entered = asyncio.Event()

    async def slow(req: SipRequest, source: Source) -> SipResponse:
        entered.set()
        await asyncio.sleep(60)
        return build_response(req, 202)

    endpoint = await SipEndpoint.start("127.0.0.1", 0, handler=slow, timers=FAST)
    udp_peer.send(request(via=f"127.0.0.1:{udp_peer.port}"), endpoint.port)
    await entered.wait()
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    sending = asyncio.create_task(
        endpoint.send_message(
            "sip:101@pbx.example.com",
            from_="sip:a@b",
            to="sip:101@pbx.example.com",
            body=b"into the void",
            destination=Destination("127.0.0.1", udp_peer.port),
        )
    )
    await udp_peer.recv()
    await endpoint.close()
    outcome = await asyncio.wait_for(sending, 1)
    assert outcome.kind == "transport_error"
    assert await asyncio.wait_for(reader.read(), 1) == b""
    writer.close()
    await endpoint.close()  # idempotent
    assert asyncio.all_tasks() == before
    assert endpoint.live_transactions == (0, 0)
    after = await endpoint.send_message(
        "sip:a@b", from_="sip:c@d", to="sip:a@b", body=b"", destination=Destination("127.0.0.1", 9)
    )
    assert after.kind == "transport_error"
