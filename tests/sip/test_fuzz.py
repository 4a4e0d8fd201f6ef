"""Mutated messages: the parser answers a message or SipParseError, never anything else."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sip import Limits, SipParseError, SipRequest, StreamFramer, parse_message
from tests.sip.test_parser import INTMETH, INVALID, WSINV

VALID = [
    WSINV,
    INTMETH,
    b"MESSAGE sip:101@pbx.example.com;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK2;received=2001:db8::2\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "+15551234567" <sip:+15551234567@acme.pbx.example.com>;tag=49583\r\n'
    b"To: <sip:101@acme.pbx.example.com>\r\n"
    b"Call-ID: asd88asd77a@10.0.0.5\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\n"
    b'Authorization: Digest username="101", realm="r", nonce="n", uri="sip:a@b", '
    b'response="00", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"\r\n'
    b"Content-Length: 13\r\n\r\n" + "Hello, 世界".encode(),
    b"SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP h:5060;branch=z9hG4bK1;rport=5060\r\n"
    b'f: <sip:a@b>;tag=1\r\nt: "B" <sip:b@c>;tag=2\r\ni: x@y\r\nCSeq: 2 MESSAGE\r\n'
    b'WWW-Authenticate: Digest realm="a", nonce="b", qop="auth", algorithm=MD5\r\nl: 0\r\n\r\n',
]
SEEDS = VALID + list(INVALID.values())
TOKENS = [b"\r\n", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"=", b"%", b"@",
          b"[", b"]", b"\x00", b"\xff", b"\xc3", b"0", b"9999999999999", b"l: 5\r\n", b"\r\n ",
          b"Via: SIP/2.0/UDP ", b"sip:", b";branch=z9hG4bK", b"\r\n\r\n"]  # fmt: skip
SMALL = Limits(max_message_bytes=4096, max_headers=40, max_line_bytes=1024)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + rng.randint(1, 40)]
        elif op == 4:
            buf[pos:] = rng.choice(SEEDS)[rng.randint(0, 60) :]
        else:
            buf[pos : pos + 1] = buf[pos : pos + 1].swapcase()
    return bytes(buf)


def check(data: bytes) -> None:
    """Parse as a datagram and as a stream; exercise every accessor of what parses."""
    for stream in (False, True):
        try:
            message = parse_message(data, stream=stream, limits=SMALL)
        except SipParseError:
            continue
        message.vias()
        _ = (message.top_via, message.call_id, message.cseq, message.from_, message.to)
        _ = (message.content_type, message.max_forwards, message.from_tag, message.to_tag)
        again = parse_message(message.to_bytes(), stream=True)
        assert type(again) is type(message)
        if isinstance(message, SipRequest):
            assert isinstance(again, SipRequest) and again.method == message.method
    framer = StreamFramer(SMALL)
    for start in range(0, len(data), 97):
        framer.feed(data[start : start + 97])


def pick(rng: random.Random) -> bytes:
    # Mostly valid seeds, so that many mutants still parse and reach the accessors.
    return rng.choice(VALID if rng.random() < 0.8 else SEEDS)


def test_thousands_of_random_mutations() -> None:
    rng = random.Random(3428)
    for _ in range(6000):
        check(mutate(rng, pick(rng)))


@settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(noise=st.randoms(use_true_random=False))
def test_hypothesis_mutations(noise: random.Random) -> None:
    check(mutate(noise, pick(noise)))


@settings(max_examples=1000, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    check(b"MESSAGE sip:a@b SIP/2.0\r\n" + data)
    check(data)
