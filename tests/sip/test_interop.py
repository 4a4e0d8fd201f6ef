"""Interop with third-party SIP tools; each test skips when its binary is not installed.

Debian packages: `sip-tester` (sipp) and `sipsak`.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from bridge.sip import (
    Destination,
    DigestAuthenticator,
    SipEndpoint,
    SipRequest,
    SipResponse,
    Source,
    Timers,
    build_response,
)
from tests.sipp import answer

SIPP = shutil.which("sipp")
SIPSAK = shutil.which("sipsak")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp is not installed (sip-tester)")
needs_sipsak = pytest.mark.skipif(SIPSAK is None, reason="sipsak is not installed")
# Real-time timers: third-party tools retransmit on the RFC's schedule.
TIMERS = Timers(t1=0.1, t2=1.0, t4=1.0)

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="MESSAGE to the bridge, answering its challenge">
  <send retrans="500"><![CDATA[
    MESSAGE sip:+15557654321@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
    From: <sip:201@[local_ip]>;tag=[call_number]
    To: <sip:+15557654321@[remote_ip]>
    Call-ID: [call_id]
    CSeq: 1 MESSAGE
    Max-Forwards: 70
    Content-Type: text/plain;charset=UTF-8
    Content-Length: [len]

    Hello from SIPp
  ]]></send>
  <recv response="401" auth="true" />
  <send retrans="500"><![CDATA[
    MESSAGE sip:+15557654321@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
    From: <sip:201@[local_ip]>;tag=[call_number]
    To: <sip:+15557654321@[remote_ip]>
    Call-ID: [call_id]
    CSeq: 2 MESSAGE
    Max-Forwards: 70
    [authentication username=201 password=pbx-pw]
    Content-Type: text/plain;charset=UTF-8
    Content-Length: [len]

    Hello from SIPp
  ]]></send>
  <recv response="202" />
</scenario>
"""

# SIPp's verifyauth checks an MD5 digest against the nonce it made up here.
CHALLENGE = (
    'WWW-Authenticate: Digest realm="phone", nonce="[pid]n[call_number]", algorithm=MD5, qop="auth"'
)

UAS = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a phone that challenges, then checks the digest itself">
  <recv request="MESSAGE" />
  {answer("401 Unauthorized", headers=(CHALLENGE,))}
  <recv request="MESSAGE">
    <action><verifyauth assign_to="authvalid" username="bridge" password="phone-pw" /></action>
  </recv>
  <nop hide="true" test="authvalid" next="good" />
  {answer("403 Bad Digest", then="done")}
  <label id="good" />
  {answer("200 OK")}
  <label id="done" />
</scenario>
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run(*args: str, within: float = 10.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@needs_sipp
@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_uac_sends_message_and_answers_our_challenge(
    tmp_path: Path, transport: str
) -> None:
    # SIPp 3.6 reads only the first challenge and knows only MD5, so MD5 is offered first.
    auth = DigestAuthenticator(b"interop-test-secret-0123456789", algorithms=("MD5", "SHA-256"))
    bodies: list[bytes] = []

    async def handler(request: SipRequest, source: Source) -> SipResponse:
        verdict = auth.verify(request, realm="bridge.example", password="pbx-pw", username="201")
        if not verdict.ok:
            return auth.challenge(request, "bridge.example")
        bodies.append(request.body)
        return build_response(request, 202)

    endpoint = await SipEndpoint.start("127.0.0.1", 0, handler=handler, timers=TIMERS)
    scenario = tmp_path / "uac.xml"
    scenario.write_text(UAC)
    try:
        code, out = await run(
            str(SIPP),
            "-sf",
            str(scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-t",
            transport,
            "-m",
            "2",
            "-timeout",
            "8s",
            "-timeout_error",
            # SIPp's digest uri defaults to remote_ip:port; RFC 3261 §22.4 wants the Request-URI.
            "-auth_uri",
            f"+15557654321@127.0.0.1:{endpoint.port}",
            f"127.0.0.1:{endpoint.port}",
        )
    finally:
        await endpoint.close()
    assert code == 0, out[-2000:]
    assert [b.rstrip(b"\r\n") for b in bodies] == [b"Hello from SIPp"] * 2


@needs_sipp
@pytest.mark.parametrize(("transport", "sipp_transport"), [("udp", "u1"), ("tcp", "t1")])
@pytest.mark.parametrize(("password", "status"), [("phone-pw", 200), ("wrong", 403)])
async def test_sipp_uas_checks_the_digest_of_our_message(
    tmp_path: Path, transport: str, sipp_transport: str, password: str, status: int
) -> None:
    port = free_port()
    scenario = tmp_path / "uas.xml"
    scenario.write_text(UAS)
    sipp = asyncio.create_task(
        run(
            str(SIPP),
            "-sf",
            str(scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            sipp_transport,
            "-m",
            "1",
            "-timeout",
            "8s",
            "-timeout_error",
        )
    )
    endpoint = await SipEndpoint.start("127.0.0.1", 0, timers=TIMERS)
    try:
        for _ in range(50):  # SIPp needs a moment before it listens
            outcome = await endpoint.send_message(
                f"sip:101@127.0.0.1:{port}",
                from_="sip:+15551234567@bridge.example",
                to="sip:101@phone.example",
                body="Grüße from the bridge".encode(),
                destination=Destination("127.0.0.1", port, transport),
                credentials=("bridge", password),
            )
            if outcome.kind != "transport_error":
                break
            await asyncio.sleep(0.1)
    finally:
        await endpoint.close()
    code, out = await sipp
    assert outcome.status == status, (outcome, out[-1500:])
    assert code == 0, out[-2000:]


@needs_sipsak
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipsak_options_ping(transport: str) -> None:
    # sipsak sends from another port than its Via names: the answer only arrives via rport.
    endpoint = await SipEndpoint.start("127.0.0.1", 0, timers=TIMERS)
    try:
        code, out = await run(
            str(SIPSAK), "-s", f"sip:101@127.0.0.1:{endpoint.port}", "-E", transport, "-vv"
        )
    finally:
        await endpoint.close()
    assert code == 0, out
    assert "SIP/2.0 200 OK" in out and "Allow: OPTIONS" in out
