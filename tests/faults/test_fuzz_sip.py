"""Thousands of mangled SIP MESSAGEs, garbage datagrams, broken TCP streams and a flood from
one source at the bridge's SIP port: SIP errors or silence, never a 5xx, never a crash, never a
stored row; the valid MESSAGEs sent among them are each sent through Twilio exactly once."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter

import aiohttp
import asyncpg

from bridge.config import Settings
from bridge.fake_twilio import running_fake_twilio
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.conftest import ADMIN_TOKEN
from tests.faults.harness import provision, report, running_bridge
from tests.pbx_sip import Phone, phone_message, status_of
from tests.sink import running_sink
from tests.waiting import eventually

MUTATED = 4000
VALID = 60
GARBAGE = 500
STREAMS = 60
DOMAIN = "fuzz.pbx.example.com"


def mutate(rng: random.Random, raw: bytes) -> bytes:
    """One of the ways a MESSAGE goes wrong on the wire, or is made to."""
    data = bytearray(raw)
    choice = rng.randrange(12)
    if choice == 0:  # flipped bytes anywhere
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 1:  # cut short
        return bytes(data[: rng.randrange(1, len(data))])
    return mutate_lines(rng, raw, choice)


def mutate_lines(rng: random.Random, raw: bytes, choice: int) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if choice == 2:  # a header line dropped
        del lines[rng.randrange(1, len(lines))]
    elif choice == 3:  # a header line repeated
        lines.insert(rng.randrange(1, len(lines)), rng.choice(lines[1:]))
    elif choice == 4:  # Content-Length that lies
        lines = [
            b"Content-Length: " + str(rng.choice([0, 1, 10**9, -5, len(body) + 7])).encode()
            if line.lower().startswith(b"content-length")
            else line
            for line in lines
        ]
    elif choice == 5:  # a huge header
        lines.insert(2, b"X-Junk: " + b"A" * rng.choice([5_000, 70_000]))
    elif choice == 6:  # NUL, CR and non-UTF-8 bytes in the start line or a header
        at = rng.randrange(len(lines))
        lines[at] = lines[at] + rng.choice([b"\x00", b"\r", b"\xff\xfe", b"\x80abc"])
    elif choice == 7:  # another method, or none
        lines[0] = rng.choice([b"INVITE", b"BYE", b"", b"MESSAGE", b"REGISTER"]) + lines[0][7:]
    elif choice == 8:  # CSeq and Max-Forwards out of range
        lines = [
            rng.choice([b"CSeq: 99999999999 MESSAGE", b"CSeq: 1 INVITE", b"Max-Forwards: 0"])
            if line.startswith((b"CSeq", b"Max-Forwards"))
            else line
            for line in lines
        ]
    elif choice == 9:  # content types it must refuse
        lines = [
            b"Content-Type: " + rng.choice([b"image/png", b"text/html", b"message/cpim", b";;"])
            if line.startswith(b"Content-Type")
            else line
            for line in lines
        ]
    elif choice == 10:  # a From that is no URI
        lines = [
            rng.choice([b"From: <>", b"From: garbage", b'From: "x" <sip:@>;tag=1'])
            if line.startswith(b"From")
            else line
            for line in lines
        ]
    else:  # a huge body
        body = b"x" * rng.choice([1601, 20_000, 65_000])
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_mangled_sip_is_refused_and_stores_nothing(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    rng = random.Random(3428)
    account, token = factories.account_sid(), factories.hex32()
    async with (
        running_fake_twilio(accounts=[(account, token)]) as fake,
        running_sink(factories.hex32()) as sink,
        running_bridge(
            settings,
            runtime_secrets,
            twilio_api_base=fake.base_url,
            sip_listen="127.0.0.1:0",
        ) as bridge,
    ):
        tenant = await provision(bridge.api, sink, account_sid=account, auth_token=token)
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as session:
            sip = {
                "domain": DOMAIN,
                "proxy": "sip:127.0.0.1:9;transport=udp",
                "allowed_sources": ["127.0.0.1"],
            }
            async with session.put(f"{bridge.api}/tenants/{tenant.id}/sip", json=sip) as r:
                assert r.status == 200, await r.text()
            async with session.get(f"{bridge.internal}/metrics") as r:
                assert r.status == 200
        port = bridge.sip_port
        assert port is not None
        phone = Phone(port)
        raw_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw_socket.bind(("127.0.0.1", 0))
        raw_socket.setblocking(False)
        loop = asyncio.get_running_loop()
        answers: Counter[int] = Counter()

        async def collect() -> None:
            while True:
                data = await loop.sock_recv(raw_socket, 65535)
                try:
                    answers[status_of(data)] += 1
                except AssertionError:
                    answers[0] += 1

        collector = asyncio.create_task(collect())

        def template() -> bytes:
            """Refused even when intact: extension "nobody" does not exist, so any mutation
            that still parses is refused too, and nothing may reach Twilio or the database.
            Each has its own branch and Call-ID: a new transaction, not a retransmission."""
            return phone_message(
                bridge_port=port,
                local_port=raw_socket.getsockname()[1],
                extension="nobody",
                domain=DOMAIN,
                to=factories.number(),
            )

        valid_sent: list[int] = []
        try:
            for i in range(MUTATED):
                # A datagram holds at most 65,507 bytes; longer ones are cut, as a network would.
                raw_socket.sendto(mutate(rng, template())[:65_000], ("127.0.0.1", port))
                if i % 50 == 0:
                    await asyncio.sleep(0.01)
                if i % (MUTATED // VALID) == 0 and len(valid_sent) < VALID:
                    ok = phone_message(
                        bridge_port=port,
                        local_port=phone.port,
                        extension=tenant.extensions[0],
                        domain=DOMAIN,
                        to=factories.number(),
                        body=f"valid {len(valid_sent)}",
                    )
                    valid_sent.append(status_of(await phone.send(ok, within=20)))
            for _ in range(GARBAGE):
                raw_socket.sendto(rng.randbytes(rng.randint(1, 1400)), ("127.0.0.1", port))
            for _ in range(STREAMS):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(mutate(rng, template()) + rng.randbytes(rng.randint(0, 300)))
                await writer.drain()
                writer.close()
                await asyncio.gather(writer.wait_closed(), return_exceptions=True)
            await asyncio.sleep(2.0)
            # Still serving: one more valid MESSAGE goes through.
            last = phone_message(
                bridge_port=port,
                local_port=phone.port,
                extension=tenant.extensions[0],
                domain=DOMAIN,
                to=factories.number(),
                body="the last one",
            )
            valid_sent.append(status_of(await phone.send(last, within=20)))
        finally:
            collector.cancel()
            phone.close()
            raw_socket.close()

        async def all_created() -> bool:
            return len([m for m in fake.state.messages.values() if m.direction != "inbound"]) >= (
                len(valid_sent)
            )

        await eventually(all_created, within=30)
        conn = await asyncpg.connect(bridge.dsn)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM messages")
        finally:
            await conn.close()
        created = Counter(m.body for m in fake.state.messages.values() if m.direction != "inbound")
        report(
            "SIP fuzz",
            sent={
                "mutated": MUTATED,
                "garbage": GARBAGE,
                "tcp streams": STREAMS,
                "valid": len(valid_sent),
            },
            answered={str(k): v for k, v in sorted(answers.items())},
            stored={"messages": stored, "twilio creates": sum(created.values())},
        )
        assert valid_sent == [202] * len(valid_sent)
        assert not [s for s in answers if s >= 500 and s != 503], answers
        assert all(400 <= s < 500 or s in (200, 503) for s in answers), answers
        assert stored == len(valid_sent)
        assert sorted(created.values()) == [1] * len(valid_sent)
