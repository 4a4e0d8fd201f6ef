"""Digest over the wire: a raw PBX challenges our MESSAGE and checks the answer with hashlib."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from bridge.sip import (
    Destination,
    DigestAuthenticator,
    SipRequest,
    SipResponse,
    Source,
    build_response,
)
from tests.sip.conftest import EndpointFactory, UdpPeer, header, reply, request, status_of

USERNAME, PASSWORD, REALM = "bridge", "pbx-s3cret", "acme.pbx.example.com"


def auth_params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value)
    }


def expected_response(params: dict[str, str], method: str, password: str) -> str:
    """RFC 7616 §3.4.1 computed here from first principles, not by the code under test."""
    name = {"MD5": "md5", "SHA-256": "sha256"}[params["algorithm"]]

    def h(text: str) -> str:
        return hashlib.new(name, text.encode()).hexdigest()

    ha1 = h(f"{params['username']}:{params['realm']}:{password}")
    ha2 = h(f"{method}:{params['uri']}")
    return h(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}")


@pytest.mark.parametrize(
    ("status", "challenge_header", "answer_header", "offered", "chosen"),
    [
        (401, "WWW-Authenticate", "Authorization", ["MD5"], "MD5"),
        (401, "WWW-Authenticate", "Authorization", ["SHA-256"], "SHA-256"),
        (407, "Proxy-Authenticate", "Proxy-Authorization", ["MD5", "SHA-256"], "SHA-256"),
    ],
)
async def test_challenge_is_answered_once(
    make_endpoint: EndpointFactory,
    udp_peer: UdpPeer,
    status: int,
    challenge_header: str,
    answer_header: str,
    offered: list[str],
    chosen: str,
) -> None:
    endpoint = await make_endpoint()
    task = asyncio.create_task(
        endpoint.send_message(
            "sip:101@acme.pbx.example.com",
            from_="sip:+15551234567@acme.pbx.example.com",
            to="sip:101@acme.pbx.example.com",
            body=b"hello",
            destination=Destination("127.0.0.1", udp_peer.port),
            credentials=(USERNAME, PASSWORD),
        )
    )
    first = await udp_peer.recv()
    challenges = "\n".join(
        f'{challenge_header}: Digest realm="{REALM}", nonce="n-{a}", algorithm={a}, qop="auth",'
        ' opaque="op"'
        for a in offered
    )
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    udp_peer.send(reply(first, status, reason, challenges), endpoint.port)
    second = await udp_peer.recv()
    while second == first:  # a retransmission that crossed our challenge
        second = await udp_peer.recv()
    assert header(second, "Call-ID") == header(first, "Call-ID")
    assert header(second, "CSeq") == ["2 MESSAGE"]
    assert header(second, "From") == header(first, "From")
    branch = re.compile(r"branch=(\w+)")
    first_branch = branch.search(header(first, "Via")[0])
    second_branch = branch.search(header(second, "Via")[0])
    assert first_branch and second_branch and first_branch.group(1) != second_branch.group(1)
    [value] = header(second, answer_header)
    params = auth_params(value)
    assert params["algorithm"] == chosen
    assert params["nonce"] == f"n-{chosen}"
    assert params["username"] == USERNAME and params["realm"] == REALM
    assert params["uri"] == "sip:101@acme.pbx.example.com"
    assert (params["qop"], params["nc"], params["opaque"]) == ("auth", "00000001", "op")
    assert params["response"] == expected_response(params, "MESSAGE", PASSWORD)
    udp_peer.send(reply(second, 200, "OK"), endpoint.port)
    outcome = await task
    assert outcome.ok


async def test_a_second_challenge_is_returned_not_answered(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    task = asyncio.create_task(
        endpoint.send_message(
            "sip:101@acme.pbx.example.com",
            from_="sip:a@acme.pbx.example.com",
            to="sip:101@acme.pbx.example.com",
            body=b"hello",
            destination=Destination("127.0.0.1", udp_peer.port),
            credentials=(USERNAME, "wrong"),
        )
    )
    challenge = f'WWW-Authenticate: Digest realm="{REALM}", nonce="x", qop="auth"'
    seen: set[str] = set()
    while not task.done():
        try:
            raw = await udp_peer.recv(within=0.5)
        except TimeoutError:
            break
        seen.add(header(raw, "CSeq")[0])
        udp_peer.send(reply(raw, 401, "Unauthorized", challenge), endpoint.port)
    outcome = await task
    assert outcome.status == 401
    assert seen == {"1 MESSAGE", "2 MESSAGE"}


async def test_without_credentials_the_challenge_is_the_outcome(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    endpoint = await make_endpoint()
    task = asyncio.create_task(
        endpoint.send_message(
            "sip:101@acme.pbx.example.com",
            from_="sip:a@acme.pbx.example.com",
            to="sip:101@acme.pbx.example.com",
            body=b"hello",
            destination=Destination("127.0.0.1", udp_peer.port),
        )
    )
    raw = await udp_peer.recv()
    udp_peer.send(reply(raw, 407, "Proxy Authentication Required"), endpoint.port)
    assert (await task).status == 407


async def test_inbound_digest_with_a_hand_computed_answer(
    make_endpoint: EndpointFactory, udp_peer: UdpPeer
) -> None:
    """The PBX side done by hand: challenge from the endpoint's handler, answer with hashlib."""
    auth = DigestAuthenticator(b"bridge-process-secret-0123456789")

    async def handler(req: SipRequest, source: Source) -> SipResponse:
        verdict = auth.verify(req, realm=REALM, password=PASSWORD, username="201")
        if verdict.ok:
            return build_response(req, 202)
        return auth.challenge(req, REALM, stale=verdict.status == "stale")

    endpoint = await make_endpoint(handler=handler)
    via = f"127.0.0.1:{udp_peer.port};rport"
    uri = "sip:+15557654321@bridge.example.com"
    challenge = await ask_and_get(udp_peer, endpoint.port, request(via=via, uri=uri, call_id="in1"))
    assert status_of(challenge) == 401
    offered = header(challenge, "WWW-Authenticate")
    assert [auth_params(v)["algorithm"] for v in offered] == ["SHA-256", "MD5"]
    for password, expected in ((PASSWORD, 202), ("guess", 401)):
        params = auth_params(offered[0])
        params.update(username="201", uri=uri, nc="00000001", cnonce="c0ffee", qop="auth")
        digest = expected_response(params, "MESSAGE", password)
        authorization = (
            f'Authorization: Digest username="201", realm="{REALM}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{digest}", algorithm=SHA-256, qop=auth, nc=00000001, '
            'cnonce="c0ffee"'
        )
        again = request(via=via, uri=uri, call_id="in1", cseq="2 MESSAGE", extra=authorization)
        assert status_of(await ask_and_get(udp_peer, endpoint.port, again)) == expected


async def ask_and_get(peer: UdpPeer, port: int, data: bytes) -> bytes:
    peer.send(data, port)
    return await peer.recv()
