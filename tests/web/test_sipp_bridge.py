"""The whole bridge (app factory, PostgreSQL, workers, the fake Twilio) against SIPp playing the
phone that answers MESSAGE and the PBX that sends it (design §10), over UDP and TCP.

SIPp is Debian's `sip-tester` (`make peers` installs it); without it every test skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from bridge.web.keys import RUNTIME
from tests.daemon import free_port
from tests.sipp import answer
from tests.waiting import eventually
from tests.web.bridge_env import SIP_SETTINGS, Env
from tests.web.test_outbound import US_MOBILE, message, wait_status

SIPP = shutil.which("sipp")
pytestmark = pytest.mark.skipif(
    SIPP is None, reason="sipp is not installed (Debian package sip-tester; `make peers`)"
)

DOMAIN = "acme.pbx.example.com"
TRANSPORTS = pytest.mark.parametrize(
    ("transport", "mode"), [("udp", "u1"), ("tcp", "t1")], ids=["udp", "tcp"]
)

# --- scenarios ---------------------------------------------------------------------------------


PHONE_ANSWERS_200 = f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="a phone that takes the text">
  <recv request="MESSAGE" />
  {answer("200 OK")}
</scenario>
"""

# Each of the bridge's attempts is a new transaction with a Call-ID of its own, so a new SIPp
# call: only a global variable remembers that the phone was away the first time.
PHONE_AWAY_THEN_BACK = f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="a phone that is away, then back">
  <Global variables="seen" />
  <recv request="MESSAGE" />
  <nop hide="true">
    <action>
      <add assign_to="seen" value="1" />
      <test assign_to="back" variable="seen" compare="greater_than" value="1" />
    </action>
  </nop>
  <nop hide="true" test="back" next="back" />
  {answer("480 Temporarily Unavailable", then="done")}
  <label id="back" />
  {answer("200 OK")}
  <label id="done" />
</scenario>
"""


def pbx_message(
    branch: str,
    retrans_ms: int = 500,
    *,
    cseq: int = 1,
    auth: str = "",
    expect: str = '<recv response="202" />',
) -> str:
    """A phone's text as the PBX relays it: From the extension at the tenant's domain, to the
    dialled number; `[text]` is the body given with `-key text`, `[size]` its length in bytes.

    SIPp ends every line, the body's last one too, with CRLF; a PBX's MESSAGE (Asterisk's
    MessageSend) carries the bare text. Content-Length says where the text ends: over UDP the
    CRLF after it is discarded (RFC 3261 §18.3), over TCP it is keep-alive CRLF (§7.5)."""
    return f"""
  <send retrans="{retrans_ms}"><![CDATA[
    MESSAGE sip:{US_MOBILE}@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch};rport
    From: "Front desk" <sip:101@{DOMAIN}>;tag=[pid]SIPp[call_number]
    To: <sip:{US_MOBILE}@{DOMAIN}>
    Call-ID: [call_id]
    CSeq: {cseq} MESSAGE
    Max-Forwards: 70{auth}
    Content-Type: text/plain;charset=UTF-8
    Content-Length: [size]

    [text]
  ]]></send>
  <recv response="100" optional="true" />
  {expect}
"""


def pbx_scenario(*sends: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<scenario name="a PBX relaying a text">'
        + "".join(sends)
        + "</scenario>\n"
    )


# The same bytes again, as a PBX sends when the 202 was lost: one branch for both.
SAME_BRANCH = "z9hG4bK-[pid]-[call_number]-again"
# The same Call-ID and CSeq in a new transaction (a PBX that gave up on the first and retried,
# or failed over): the transaction layer cannot match it, only the stored idempotency key.
RETRANSMISSIONS = pytest.mark.parametrize(
    "second_branch", [SAME_BRANCH, "[branch]"], ids=["same-branch", "new-branch"]
)


# --- SIPp as a process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Traced:
    """One SIP message in SIPp's `-trace_msg` log, as SIPp sent or received it."""

    direction: str
    transport: str
    start: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        [value] = self.headers[name.lower()]
        return value

    @property
    def status(self) -> int | None:
        match = re.match(r"SIP/2\.0 ([0-9]{3}) ", self.start)
        return int(match.group(1)) if match else None


TRACE_ENTRY = re.compile(
    rb"^-+ \d{4}-\d\d-\d\d [0-9:.]+\n(\w+) message (sent|received)[^\n]*\n\n", re.MULTILINE
)


def parse_trace(raw: bytes) -> list[Traced]:
    marks = list(TRACE_ENTRY.finditer(raw))
    found = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        chunk = raw[mark.end() : following.start() if following else len(raw)]
        head, _, rest = chunk.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers.get("content-length", ["0"])[0])
        found.append(
            Traced(mark.group(2).decode(), mark.group(1).decode(), lines[0], headers, rest[:length])
        )
    return found


def bound(port: int, transport: str) -> bool:
    """Whether a socket holds the loopback port: read from /proc, as probing it would race."""
    table = Path("/proc/net/udp" if transport == "udp" else "/proc/net/tcp")
    local = f"0100007F:{port:04X}"
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and (transport == "udp" or fields[3] == "0A"):
            return True
    return False


class Sipp:
    """One SIPp run of a scenario; whatever the test does, the process ends with the block."""

    def __init__(
        self, tmp_path: Path, scenario: str, mode: str, port: int, *args: str, calls: int = 1
    ) -> None:
        self.port = port
        self.transport = "udp" if mode.startswith("u") else "tcp"
        self._scenario = tmp_path / f"sipp-{port}.xml"
        self._scenario.write_text(scenario)
        self._trace = tmp_path / f"sipp-{port}-messages.log"
        assert SIPP is not None
        self._argv = [
            SIPP,
            "-sf",
            str(self._scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            mode,
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_msg",
            "-message_file",
            str(self._trace),
            *args,
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._output: asyncio.Task[tuple[bytes, bytes]] | None = None

    async def __aenter__(self) -> Sipp:
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        # Drained from the start: SIPp's screen must never fill the pipe and stall it.
        self._output = asyncio.create_task(self._process.communicate())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._process is not None and self._output is not None
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await asyncio.wait_for(self._output, 5)

    async def listening(self) -> None:
        """Until SIPp holds its port; a text sent before would count as an attempt."""
        assert self._process is not None
        async with asyncio.timeout(5):
            while not bound(self.port, self.transport):
                if self._process.returncode is not None:
                    raise AssertionError(f"sipp exited first:\n{await self.output()}")
                await asyncio.sleep(0.02)

    async def output(self) -> str:
        assert self._output is not None
        out, _ = await asyncio.wait_for(asyncio.shield(self._output), 25)
        return out.decode(errors="replace")

    async def finished(self) -> list[Traced]:
        """SIPp's messages, once it ran all its calls; fails with its screen unless all passed."""
        out = await self.output()
        assert self._process is not None
        assert self._process.returncode == 0, out[-3000:]
        return parse_trace(self._trace.read_bytes())


def requests(trace: list[Traced], direction: str) -> list[Traced]:
    return [t for t in trace if t.status is None and t.direction == direction]


def answers(trace: list[Traced], direction: str) -> list[Traced]:
    return [t for t in trace if t.status is not None and t.direction == direction]


def distinct(messages: list[Traced]) -> list[Traced]:
    """One per transaction: a UDP retransmission is the same Call-ID, CSeq and branch."""
    seen: dict[tuple[str, str, str], Traced] = {}
    for m in messages:
        seen.setdefault((m.header("Call-ID"), m.header("CSeq"), m.header("Via")), m)
    return list(seen.values())


# --- the bridge --------------------------------------------------------------------------------


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return dict(SIP_SETTINGS)


def sip_port(env: Env) -> int:
    assert env.api.client.app is not None
    port: int | None = env.api.client.app[RUNTIME].sip_port
    assert port is not None
    return port


async def sip_on(env: Env, proxy: str, **settings: Any) -> None:
    body = {"domain": DOMAIN, "proxy": proxy, "allowed_sources": ["127.0.0.1/32"], **settings}
    reply = await env.api.put(f"/tenants/{env.tenant_id}/sip", body)
    assert reply.status == 200, reply.body


async def sip_deliveries(env: Env, message_id: str) -> list[dict[str, Any]]:
    found = await message(env, message_id)
    return [d for d in found["deliveries"] if d["channel"] == "sip"]


async def only_message_id(env: Env) -> str:
    [stored] = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]
    return str(stored["id"])


# --- SIPp as the phone (UAS) -------------------------------------------------------------------


@TRANSPORTS
async def test_an_inbound_text_reaches_sipp_as_a_message(
    env: Env, tmp_path: Path, transport: str, mode: str
) -> None:
    port = free_port()
    async with Sipp(tmp_path, PHONE_ANSWERS_200, mode, port) as sipp:
        await sipp.listening()
        await sip_on(env, f"sip:127.0.0.1:{port};transport={transport}")
        result = await env.text_in("Are you open on Saturday? ☀️")
        assert result.webhook.answer.status == 200
        trace = await sipp.finished()
    message_id = await only_message_id(env)
    [got] = distinct(requests(trace, "received"))
    assert got.transport == transport.upper()
    assert got.start == f"MESSAGE sip:101@{DOMAIN} SIP/2.0"
    assert got.header("Via").startswith(f"SIP/2.0/{transport.upper()} 127.0.0.1:{sip_port(env)};")
    assert got.header("From").startswith(f'"{US_MOBILE}" <sip:{US_MOBILE}@{DOMAIN}>;tag=')
    assert got.header("To") == f"<sip:101@{DOMAIN}>"
    assert got.header("X-Bridge-DID") == env.number
    assert got.header("X-Bridge-Message-Id") == message_id
    assert got.body.decode() == "Are you open on Saturday? ☀️"

    async def delivered() -> bool:
        states = await sip_deliveries(env, message_id)
        return [(d["extension"], d["status"], d["attempts"]) for d in states] == [
            ("101", "delivered", 1)
        ]

    await eventually(delivered)


@TRANSPORTS
async def test_a_phone_that_answers_480_gets_the_text_on_the_retry(
    env: Env, tmp_path: Path, transport: str, mode: str
) -> None:
    port = free_port()
    async with Sipp(tmp_path, PHONE_AWAY_THEN_BACK, mode, port, calls=2) as sipp:
        await sipp.listening()
        await sip_on(env, f"sip:127.0.0.1:{port};transport={transport}")
        await env.text_in("back yet?")
        trace = await sipp.finished()
    message_id = await only_message_id(env)
    tries = distinct(requests(trace, "received"))
    assert [t.body for t in tries] == [b"back yet?", b"back yet?"]
    assert [t.header("X-Bridge-Message-Id") for t in tries] == [message_id] * 2
    # A new transaction for the retry, not a retransmission of the refused one.
    assert tries[0].header("Call-ID") != tries[1].header("Call-ID")
    assert [a.status for a in distinct(answers(trace, "sent"))] == [480, 200]

    async def delivered() -> bool:
        [state] = await sip_deliveries(env, message_id)
        return (state["status"], state["attempts"]) == ("delivered", 2)

    await eventually(delivered)


# --- SIPp as the PBX (UAC) ---------------------------------------------------------------------


async def run_pbx(
    env: Env, tmp_path: Path, scenario: str, mode: str, text: str, *args: str, **sip: Any
) -> list[Traced]:
    await sip_on(env, "sip:127.0.0.1:9;transport=udp", **sip)
    async with Sipp(
        tmp_path,
        scenario,
        mode,
        free_port(),
        *("-key", "text", text, "-key", "size", str(len(text.encode()))),
        *args,
        f"127.0.0.1:{sip_port(env)}",
    ) as sipp:
        return await sipp.finished()


async def sends_of(env: Env, text: str) -> list[dict[str, Any]]:
    return [m for m in await env.fake_messages() if m["body"] == text]


@TRANSPORTS
async def test_sipp_as_the_pbx_sends_a_phones_text_through_twilio(
    env: Env, tmp_path: Path, transport: str, mode: str
) -> None:
    text = f"Hi from the desk phone over {transport}"
    trace = await run_pbx(env, tmp_path, pbx_scenario(pbx_message("[branch]")), mode, text)
    [sent] = distinct(requests(trace, "sent"))
    assert sent.transport == transport.upper()
    [accepted] = [a for a in answers(trace, "received") if a.status != 100]
    assert accepted.start == "SIP/2.0 202 Accepted"
    assert accepted.header("Call-ID") == sent.header("Call-ID")
    message_id = accepted.header("X-Bridge-Message-Id")
    found = await wait_status(env, message_id, "queued", "sent", "delivered")
    assert (found["from"], found["to"], found["body"]) == (env.number, US_MOBILE, text)
    assert found["routing"]["origin"] == "sip"
    await env.wait_fake_messages(1)
    assert len(await sends_of(env, text)) == 1


@TRANSPORTS
@RETRANSMISSIONS
async def test_a_retransmitted_message_is_sent_to_twilio_once(
    env: Env, tmp_path: Path, transport: str, mode: str, second_branch: str
) -> None:
    text = "only once, please"
    scenario = pbx_scenario(pbx_message(SAME_BRANCH), pbx_message(second_branch))
    # SIPp meets a repeated response by repeating what it sent after the first one (right for
    # an INVITE's 200 and its ACK): here that is the copy, which the bridge answers again, and
    # so on. The scenario sends its copy itself; SIPp's own retransmissions stay off.
    trace = await run_pbx(env, tmp_path, scenario, mode, text, "-nr")
    sent = requests(trace, "sent")
    assert len({(m.header("Call-ID"), m.header("CSeq")) for m in sent}) == 1
    assert len({m.header("Via") for m in sent}) == (1 if second_branch == SAME_BRANCH else 2)
    accepted = [a for a in answers(trace, "received") if a.status != 100]
    assert [a.status for a in accepted] == [202, 202]
    [message_id] = {a.header("X-Bridge-Message-Id") for a in accepted}
    await wait_status(env, message_id, "queued", "sent", "delivered")
    await env.wait_fake_messages(1)
    # A second send would follow the first within the sender's poll: give it that long.
    await asyncio.sleep(0.6)
    assert len(await sends_of(env, text)) == 1
    assert await only_message_id(env) == message_id


async def test_sipps_own_udp_retransmissions_while_the_bridge_commits_send_once(
    env: Env, tmp_path: Path
) -> None:
    """SIPp retransmits on its timer until the 202 comes; with a 1 ms first interval the commit
    is still running when the copies arrive, so they meet the live server transaction."""
    text = "retransmitted by the timer"
    scenario = pbx_scenario(pbx_message("[branch]", retrans_ms=1))
    trace = await run_pbx(env, tmp_path, scenario, "u1", text)
    sent = requests(trace, "sent")
    assert len(sent) >= 2, "the 202 beat SIPp's first retransmission: nothing was tested"
    assert len(distinct(sent)) == 1
    accepted = [a for a in answers(trace, "received") if a.status != 100]
    assert {a.status for a in accepted} == {202}
    [message_id] = {a.header("X-Bridge-Message-Id") for a in accepted}
    await wait_status(env, message_id, "queued", "sent", "delivered")
    await env.wait_fake_messages(1)
    await asyncio.sleep(0.6)
    assert len(await sends_of(env, text)) == 1


# The PBX proves itself: SIPp answers the first challenge it reads, and knows only MD5.
PBX_WITH_DIGEST = pbx_scenario(
    pbx_message("[branch]", expect='<recv response="407" auth="true" />'),
    pbx_message(
        "[branch]",
        cseq=2,
        auth="\n    [authentication username=pbx password=pbx-inbound-secret]",
    ),
)


@TRANSPORTS
async def test_a_pbx_that_knows_only_md5_authenticates_when_md5_is_offered_first(
    env: Env, tmp_path: Path, transport: str, mode: str
) -> None:
    text = f"authenticated over {transport}"
    trace = await run_pbx(
        env,
        tmp_path,
        PBX_WITH_DIGEST,
        mode,
        text,
        # SIPp's digest uri defaults to remote_ip:port; RFC 3261 §22.4 wants the Request-URI.
        "-auth_uri",
        f"{US_MOBILE}@127.0.0.1:{sip_port(env)}",
        inbound_password="pbx-inbound-secret",
        inbound_digest=["MD5", "SHA-256"],
    )
    [challenge] = [a for a in answers(trace, "received") if a.status == 407]
    offered = challenge.headers["proxy-authenticate"]
    assert [v.split("algorithm=")[1].split(",")[0] for v in offered] == ["MD5", "SHA-256"]
    [accepted] = [a for a in answers(trace, "received") if a.status == 202]
    message_id = accepted.header("X-Bridge-Message-Id")
    found = await wait_status(env, message_id, "queued", "sent", "delivered")
    assert found["body"] == text
    await env.wait_fake_messages(1)
    assert len(await sends_of(env, text)) == 1
