"""`make demo`: a tenant admin's first day with the bridge, end to end, on loopback.

It starts three processes on free loopback ports: the daemon (`sms-bridge serve` on its
embedded PostgreSQL, in a temporary data directory), the fake Twilio (`sms-bridge
fake-twilio`) and a PBX stand-in (`python -m tests.sink`). Then, through the internal API as
an administrator would, it creates a tenant, a trunk and an SMS configuration (printing the
webhook URL to paste into the Twilio console), checks the credentials, points the tenant's
events at the PBX, and sets up extensions and rules. The fake Twilio then sends a signed
inbound text, and the PBX sink shows it reaching extension 101; 101 replies through the API,
the fake Twilio shows the send, its status callbacks come back, and the message ends
`delivered`. A webhook signed for the wrong URL is refused and the diagnosis says why. Last,
texts on the phones (design §10): SIP is turned on with SIPp as the front desk phone behind the
PBX, a customer's text reaches it as a MESSAGE, and its reply (SIPp sending the MESSAGE the PBX
would relay) reaches the fake Twilio; without SIPp (Debian package sip-tester) that step says so
and is skipped. Every process is stopped at the end, also on a failure or Ctrl-C.

    python -m tests.demo [--keep-data DIR]

Only the runtime dependencies are needed. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.daemon import free_port, udp_free
from tests.sipp import answer

# Fixed, made-up values: the demo runs against a fake Twilio, and the test checks that none of
# them ever shows up in the output.
ADMIN_TOKEN = "demo-admin-token-7c1e5a93d2b84f60"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "00112233445566778899aabbccddeeff"
SINK_SECRET = "demo-sink-secret-4b9d0e27a61f"
SECRETS = (ADMIN_TOKEN, AUTH_TOKEN, SINK_SECRET)
HIDDEN = "(secret not shown)"

MAIN_NUMBER = "+15551230001"
CUSTOMER = "+15557654321"
INBOUND_TEXT = "Hi! Are you open on Saturday?"
REPLY_TEXT = "Yes, 9am to 1pm. See you then!"

PBX_DOMAIN = "acme.pbx.example.com"
FRONT_DESK_URI = f"sip:front-desk@{PBX_DOMAIN}"
PHONE_TEXT = "Can I bring my dog to the appointment?"
PHONE_REPLY = "Of course, dogs are welcome!"

ROOT = Path(__file__).resolve().parents[1]
# SIPp (Debian package sip-tester) plays the phones behind the PBX; without it that step skips.
SIPP = shutil.which("sipp")
API = "/api/v1"
WIDTH = 92
READY_WITHIN = 120.0
STEP_WITHIN = 30.0
# The daemon may spend its shutdown_timeout on in-flight requests, then stops PostgreSQL.
DAEMON_STOP_WITHIN = 30.0
OTHER_STOP_WITHIN = 5.0

Json = Any
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")

# The front desk phone: answers each MESSAGE 200 and logs what it would show, one line each.
PHONE_SCENARIO = f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="the front desk phone">
  <recv request="MESSAGE">
    <action>
      <ereg regexp="^MESSAGE [^ ]+" search_in="msg" check_it="false" assign_to="line" />
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="false" assign_to="from" />
      <ereg regexp=".*" search_in="hdr" header="X-Bridge-DID:" check_it="false" assign_to="did" />
      <ereg regexp=".*" search_in="body" check_it="false" assign_to="text" />
      <log message="[$line]" />
      <log message="From:[$from]" />
      <log message="X-Bridge-DID:[$did]" />
      <log message="text: [$text]" />
    </action>
  </recv>
  {answer("200 OK")}
</scenario>
"""

# Its reply, as the PBX relays it to the bridge: From the extension, to the number dialled.
# The body ends where the CDATA does: SIPp would otherwise send a line break after it.
REPLY_SCENARIO = f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="the front desk phone replies through the PBX">
  <send retrans="500"><![CDATA[
    MESSAGE sip:{CUSTOMER}@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
    Max-Forwards: 70
    From: "Front desk" <sip:101@{PBX_DOMAIN}>;tag=[pid]SIPpTag[call_number]
    To: <sip:{CUSTOMER}@{PBX_DOMAIN}>
    Call-ID: [call_id]
    CSeq: 1 MESSAGE
    Content-Type: text/plain;charset=UTF-8
    Content-Length: [len]

    {PHONE_REPLY}]]></send>
  <recv response="100" optional="true" />
  <recv response="202">
    <action>
      <ereg regexp="^SIP/2.0 [^\r\n]+" search_in="msg" check_it="false" assign_to="status" />
      <ereg regexp=".*" search_in="hdr" header="X-Bridge-Message-Id:" check_it="false"
            assign_to="id" />
      <log message="[$status]" />
      <log message="X-Bridge-Message-Id:[$id]" />
    </action>
  </recv>
</scenario>
"""


class DemoError(Exception):
    """A step did not go as it should; the message is the one line the user sees."""


def redact(text: str) -> str:
    for secret in SECRETS:
        text = text.replace(secret, HIDDEN)
    return text


def say(text: str = "") -> None:
    # Every line passes through here, so a secret cannot reach the output by accident.
    print(redact(text), flush=True)


def masked(value: Json) -> Json:
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and value in SECRETS:
        return HIDDEN
    return value


def compact(value: Json) -> str:
    return json.dumps(masked(value), ensure_ascii=False)


def json_lines(value: Json, width: int) -> list[str]:
    """One line if it fits, else one member per line, members that do not fit broken alike."""
    whole = compact(value)
    if len(whole) <= width or not isinstance(value, dict | list) or not value:
        return [whole]
    if isinstance(value, dict):
        parts = [(f"{json.dumps(k)}: ", v) for k, v in value.items()]
        opening, closing = "{", "}"
    else:
        parts = [("", v) for v in value]
        opening, closing = "[", "]"
    lines: list[str] = []
    for key, member in parts:
        inner = json_lines(member, width - 1 - len(key))
        lines.append(f" {key}{inner[0]}")
        lines += [" " * (1 + len(key)) + line for line in inner[1:]]
        lines[-1] += ","
    lines[0] = opening + lines[0][1:]
    lines[-1] = lines[-1][:-1] + closing
    return lines


def step(number: int, title: str) -> None:
    say()
    say(f"{number:>2}. {title}")


def show_request(method: str, target: str, body: Json | None) -> None:
    head = f"   → {method} {target}"
    if body is None:
        say(head)
        return
    whole = compact(body)
    if len(head) + 1 + len(whole) <= WIDTH:
        say(f"{head} {whole}")
        return
    say(head)
    for line in json_lines(body, WIDTH - 5):
        say(f"     {line}")


def answer(status: int, text: str) -> None:
    say(f"   ← {status} {text}")


def note(text: str) -> None:
    say(f"     {text}")


# --- child processes ---------------------------------------------------------------------------


class Child:
    """One child process in its own session, so a Ctrl-C reaches only the demo, which then stops
    the children in order instead of letting them race each other down."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log: Path,
        env: dict[str, str],
        *,
        program: str = sys.executable,
    ) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.env = env
        self.program = program
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *, capture: bool = False, cwd: Path = ROOT) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                self.program,
                *self.args,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if capture else log,
                stderr=log,
                start_new_session=True,
                cwd=cwd,
            )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def check_alive(self) -> None:
        code = self.exited()
        if code is not None:
            raise DemoError(f"the {self.name} exited early with code {code}")

    async def stop(self, within: float) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def kill_if_running(self) -> None:
        """Last resort after the event loop is gone (a second Ctrl-C, a crash)."""
        if self.process is None:
            return
        pid = self.process.pid
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # already reaped
        if done == 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def stop_stray_postgres(data_dir: Path, within: float = 10.0) -> None:
    """Stop the embedded server if the daemon could not (it was killed).

    The server deliberately outlives a killed daemon, so that a restart can join it; the demo
    has no restart, so it must not leave one behind.
    """
    pgdata = data_dir / "postgres"
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        # A stale file may name a pid that now belongs to someone else.
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return
    if str(pgdata.resolve()).encode() not in command:
        return
    # SIGINT is PostgreSQL's fast shutdown; SIGQUIT its immediate one.
    for signum in (signal.SIGINT, signal.SIGQUIT):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class LineWatch:
    """Collects a child's stdout lines; the demo prints them when its story reaches them."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.lines: list[str] = []
        self._shown = 0
        self._changed = asyncio.Event()

    async def read(self, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def until(self, wanted: Callable[[str], bool], what: str) -> list[str]:
        """Lines not shown yet, up to the first that is `wanted`."""
        try:
            async with asyncio.timeout(STEP_WITHIN):
                while True:
                    for index in range(self._shown, len(self.lines)):
                        if wanted(self.lines[index]):
                            new = self.lines[self._shown : index + 1]
                            self._shown = index + 1
                            return new
                    self.child.check_alive()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise DemoError(f"the {self.child.name} did not show {what}") from None


def free_sip_ports(count: int, taken: list[int]) -> list[int]:
    """Ports free for TCP and UDP alike, none of them ``taken``."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports and port not in taken and udp_free(port):
            ports.append(port)
    return ports


def free_ports(count: int) -> list[int]:
    # Each probe closes its socket before the next, so the kernel may hand out a port twice.
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# --- the story -----------------------------------------------------------------------------------


class Demo:
    def __init__(self, base: Path, children: list[Child]) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.children = children
        self.internal_port, self.public_port, self.fake_port, self.sink_port = free_ports(4)
        # The bridge listens for SIP on UDP and TCP; the phone (SIPp) on UDP.
        self.sip_port, self.phone_port = free_sip_ports(2, taken=self.ports())
        self.internal = f"http://127.0.0.1:{self.internal_port}"
        self.public = f"http://127.0.0.1:{self.public_port}"
        self.fake = f"http://127.0.0.1:{self.fake_port}"
        self.sink_url = f"http://127.0.0.1:{self.sink_port}/events"
        self.http: aiohttp.ClientSession | None = None
        # Paths name ids the way the README's curl examples do, to keep the lines short.
        self.aliases: dict[str, str] = {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.daemon = Child(
            "daemon",
            ["-m", "bridge", "serve"],
            base / "daemon.log",
            {
                **env,
                "BRIDGE_DATA_DIR": str(self.data_dir),
                "BRIDGE_PUBLIC_LISTEN": f"127.0.0.1:{self.public_port}",
                "BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{self.internal_port}",
                "BRIDGE_PUBLIC_BASE_URL": self.public,
                "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
                "BRIDGE_TWILIO_API_BASE": self.fake,
                "BRIDGE_TWILIO_MESSAGING_API_BASE": self.fake,
                "BRIDGE_LOG_FORMAT": "json",
                "BRIDGE_SIP_LISTEN": f"127.0.0.1:{self.sip_port}",
            },
        )
        self.fake_twilio = Child(
            "fake Twilio",
            [
                "-m",
                "bridge",
                "fake-twilio",
                "--port",
                str(self.fake_port),
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
                "--callback-delay",
                "0.3",
                "--number",
                MAIN_NUMBER,
            ],
            base / "fake-twilio.log",
            env,
        )
        self.sink = Child(
            "PBX sink",
            ["-m", "tests.sink", "--port", str(self.sink_port), "--secret", SINK_SECRET],
            base / "sink.log",
            env,
        )
        self.sink_lines = LineWatch(self.sink)
        self._reader: asyncio.Task[None] | None = None

    def ports(self) -> list[int]:
        return [self.internal_port, self.public_port, self.fake_port, self.sink_port]

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self.http is not None
        return self.http

    # --- HTTP ---

    async def request(
        self, method: str, url: str, body: Json | None = None, *, headers: dict[str, str]
    ) -> tuple[int, Json]:
        try:
            async with self.session.request(method, url, json=body, headers=headers) as r:
                data = await r.json() if r.content_type == "application/json" else None
                return r.status, data
        except aiohttp.ClientError as exc:
            raise DemoError(f"{method} {url} failed: {exc}") from exc

    async def api(
        self,
        method: str,
        path: str,
        body: Json | None = None,
        *,
        expect: int = 200,
        quiet: bool = False,
    ) -> Json:
        if not quiet:
            show_request(method, self.short(API + path), body)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status, data = await self.request(method, self.internal + API + path, body, headers=auth)
        if status != expect:
            error = (data or {}).get("error", {}) if isinstance(data, dict) else {}
            detail = error.get("message", "") if isinstance(error, dict) else error
            raise DemoError(
                f"{method} {self.short(API + path)} answered {status}, not {expect}: {detail}"
            )
        return data

    def alias(self, value: str, name: str) -> str:
        self.aliases[value] = name
        return f"{value} (written {name} below)"

    def short(self, path: str) -> str:
        for value, name in self.aliases.items():
            path = path.replace(value, name)
        return path

    async def control(self, method: str, path: str, body: Json | None = None) -> Json:
        status, data = await self.request(method, self.fake + path, body, headers={})
        if status >= 300:
            raise DemoError(f"the fake Twilio answered {status} to {method} {path}: {data}")
        return data

    async def poll(self, probe: Callable[[], Awaitable[Json]], what: str) -> Json:
        """Call `probe` until it returns something, for at most STEP_WITHIN seconds."""
        deadline = time.monotonic() + STEP_WITHIN
        while time.monotonic() < deadline:
            for child in self.children:
                child.check_alive()
            found = await probe()
            if found:
                return found
            await asyncio.sleep(0.1)
        raise DemoError(f"timed out waiting for {what}")

    # --- start and stop ---

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        say("Starting the three processes:")
        started = time.monotonic()
        for child in (self.daemon, self.fake_twilio):
            self.children.append(child)
            await child.start()
        self.children.append(self.sink)
        await self.sink.start(capture=True)
        assert self.sink.process is not None and self.sink.process.stdout is not None
        self._reader = asyncio.create_task(self.sink_lines.read(self.sink.process.stdout))
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

        await self.sink_lines.until(lambda line: line.startswith("PBX sink on"), "it is up")
        say(f"   PBX sink     {self.sink_url}  (prints every event the bridge delivers)")
        await self._wait_up(self.fake_twilio, self.fake + "/_fake/state", 30.0)
        say(f"   fake Twilio  {self.fake}  (account {ACCOUNT_SID})")
        await self._wait_up(self.daemon, self.internal + "/ready", READY_WITHIN)
        ready = time.monotonic() - started
        say(f"   daemon       internal API {self.internal}, public {self.public}")
        say(f"                SIP sip:127.0.0.1:{self.sip_port} (UDP and TCP)")
        say(f"                embedded PostgreSQL in its data directory; ready in {ready:.1f} s")

    async def _wait_up(self, child: Child, url: str, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            child.check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise DemoError(f"the {child.name} was not ready after {within:.0f} s")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        # The daemon first: it would otherwise log failed sends and deliveries to the others.
        await self.daemon.stop(DAEMON_STOP_WITHIN)
        others = [child for child in self.children if child is not self.daemon]
        await asyncio.gather(*(child.stop(OTHER_STOP_WITHIN) for child in others))
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    # --- the admin's day ---

    async def run(self) -> None:
        step(1, "Create the tenant")
        tenant = await self.api(
            "POST",
            "/tenants",
            {"name": "Acme Dental", "default_country": "US"},
            expect=201,
        )
        answer(201, f"tenant {self.alias(tenant['id'], '$TENANT')}")
        t = f"/tenants/{tenant['id']}"

        step(2, "Create its SIP trunk")
        trunk = await self.api("POST", t + "/trunks", {"name": "Main SIP trunk"}, expect=201)
        answer(201, f"trunk {self.alias(trunk['id'], '$TRUNK')}")

        config = await self.sms_config(t, trunk["id"])
        await self.delivery_and_dialplan(t, trunk["id"])
        await self.inbound(t, config)
        await self.reply(t)
        await self.why(t, config)
        await self.phones(t)

    async def sms_config(self, t: str, trunk_id: str) -> Json:
        step(3, "Attach a Twilio SMS configuration to the trunk")
        config = await self.api(
            "POST",
            t + "/sms-configs",
            {
                "trunk_id": trunk_id,
                "name": "Main Twilio",
                "account_sid": ACCOUNT_SID,
                "credential": {"type": "auth_token", "auth_token": AUTH_TOKEN},
                "numbers": [{"number": "+1 555 123 0001"}],
                "allowed_countries": ["US", "CA"],
            },
            expect=201,
        )
        credential = config["credential"]
        numbers = ", ".join(n["number"] for n in config["numbers"])
        answer(201, f"configuration {self.alias(config['id'], '$CONFIG')}")
        last4 = credential["auth_token_last4"]
        note(f"numbers: {numbers}; credential: {credential['type']}, last 4 characters {last4}")
        note('Paste into the Twilio console, number → Messaging → "A message comes in":')
        note(f"webhook URL: {config['webhook_url']}")
        note("The status callback URL, which the bridge sets on every send itself:")
        note(f"             {config['status_callback_url']}")

        step(4, "Check the credentials against Twilio")
        checked = await self.api("POST", f"{t}/sms-configs/{config['id']}/validate")
        answer(200, f"ok={json.dumps(checked.get('ok'))}")
        if checked.get("ok") is not True:
            raise DemoError(f"the credentials did not validate: {compact(checked)}")

        step(5, "Set up Twilio for me: point the number's incoming texts at the bridge")
        path = f"{t}/sms-configs/{config['id']}/twilio-setup"
        seen = await self.api("GET", path)
        for number in seen["numbers"]:
            answer(200, f"{number['number']}: {number['state']} ({number['detail']})")
        applied = await self.api("POST", path, {"numbers": "all"})
        changes = applied["changes"]
        answer(200, f"{len(changes)} changes at Twilio, each with the value it replaced:")
        for change in changes:
            note(f"{change['number']} {change['field']}: {change['previous'] or '(empty)'}")
            note(f"    → {change['new']}")
        states = ", ".join(f"{n['number']} {n['state']}" for n in applied["setup"]["numbers"])
        note(f"now: {states}")
        return config

    async def delivery_and_dialplan(self, t: str, trunk_id: str) -> None:
        step(6, "Send the tenant's events to the PBX")
        target = await self.api(
            "PUT", t + "/delivery", {"url": self.sink_url, "secret": SINK_SECRET}
        )
        answer(200, f"delivery to {target['url']}, secret set: {json.dumps(target['secret_set'])}")

        step(7, "Add the extensions")
        extensions = await self.api(
            "PUT",
            t + "/extensions",
            [
                {"extension": "101", "name": "Front desk", "dids": [MAIN_NUMBER]},
                {"extension": "102", "name": "Dr. Lee"},
            ],
        )
        answer(200, f"{len(extensions['items'])} extensions")
        for item in extensions["items"]:
            dids = ", ".join(item["dids"]) or "no DID"
            note(f"extension {item['extension']} {item['name']!r}: {dids}")

        step(8, "Texts to the main number ring the front desk")
        rules = [{"name": "Main number", "did": MAIN_NUMBER, "extensions": ["101"]}]
        inbound = await self.api("PUT", t + "/inbound-rules", rules)
        answer(200, f"{len(inbound['items'])} inbound rule")

        step(9, "Every extension may text the US and Canada through the trunk")
        rules = [{"name": "US and Canada", "trunks": [trunk_id]}]
        outbound = await self.api("PUT", t + "/outbound-rules", rules)
        answer(200, f"{len(outbound['items'])} outbound rule")

        question = {"direction": "inbound", "to": MAIN_NUMBER, "from": CUSTOMER}
        step(10, "Ask the bridge where a text to the main number would go")
        explained = await self.api("POST", t + "/routing/explain", question)
        answer(200, f"decision: {explained['decision']}, extensions {explained['extensions']}")
        for reason in explained.get("explanation", [])[:3]:
            note(f"- {reason}")

    async def inbound(self, t: str, config: Json) -> None:
        step(11, "A customer texts the main number (the fake Twilio signs and sends it)")
        body = {"from": CUSTOMER, "to": MAIN_NUMBER, "body": INBOUND_TEXT}
        show_request("POST", self.fake + "/_fake/inbound", body)
        sent = await self.control("POST", "/_fake/inbound", body)
        if not sent["twiml_ok"]:
            raise DemoError(f"the bridge did not answer the inbound webhook with TwiML: {sent}")
        reply = sent["answer"]
        media_type = reply["content_type"].split(";")[0]
        twiml = XML_DECLARATION.sub("", reply["body"]).strip()
        answer(200, f"Twilio message {sent['message_sid']}, signed, sent where the number says")
        note(f"the bridge answered the webhook: {reply['status']} {media_type} {twiml}")
        note("The PBX sink received:")
        for line in await self.sink_lines.until(
            lambda line: line.startswith("message.received"), "the inbound text"
        ):
            show_sink(line)
        received = await self.api("GET", t + "/messages?direction=inbound", quiet=True)
        latest = received["items"][0]
        note(f"the API lists it: {latest['id']}, {latest['status']}, for {latest['extensions']}")

    async def reply(self, t: str) -> None:
        step(12, "Extension 101 replies through the API")
        send = {"from_extension": "101", "to": CUSTOMER, "body": REPLY_TEXT}
        message = await self.api("POST", t + "/messages", send, expect=202)
        answer(202, f"message {self.alias(message['id'], '$MESSAGE')}, {message['status']}")

        step(13, "The fake Twilio receives the send")

        async def outbound_sent() -> Json:
            listed = await self.control("GET", "/_fake/messages")
            found = [m for m in listed["messages"] if m["direction"].startswith("outbound")]
            return found[0] if found else None

        show_request("GET", self.fake + "/_fake/messages", None)
        twilio = await self.poll(outbound_sent, "the send to reach the fake Twilio")
        answer(200, f"{twilio['sid']}  From={twilio['from']}  To={twilio['to']}")
        note(f"Body={twilio['body']!r}")
        note(f"StatusCallback={twilio['status_callback']}")

        step(14, "Status callbacks come back until the message is delivered")

        async def delivered() -> Json:
            current = await self.api("GET", f"{t}/messages/{message['id']}", quiet=True)
            if current["status"] in ("failed", "undelivered"):
                raise DemoError(f"the reply ended {current['status']}: {current['error_message']}")
            return current if current["status"] == "delivered" else None

        show_request("GET", self.short(f"{API}{t}/messages/{message['id']}") + "  (polled)", None)
        final = await self.poll(delivered, "the reply to be delivered")
        answer(200, f"status: {final['status']}, Twilio SID {final['twilio_sid']}")
        note("history: " + history(final["status_history"]))

        async def callbacks() -> Json:
            query = f"/_fake/callbacks?message_sid={twilio['sid']}"
            hooks = (await self.control("GET", query))["webhooks"]
            done = any(h["message_status"] == "delivered" and h["answer"] for h in hooks)
            return hooks if done else None

        hooks = await self.poll(callbacks, "the fake Twilio to record its callbacks")
        answers = ", ".join(f"{h['message_status']} → {h['answer']['status']}" for h in hooks)
        note(f"status callbacks (and the bridge's answers): {answers}")
        note("The PBX sink received:")
        for line in await self.sink_lines.until(
            lambda line: line.startswith("message.status") and "status=delivered" in line,
            "the delivered status",
        ):
            show_sink(line)

    async def why(self, t: str, config: Json) -> None:
        step(15, "A proxy in front ends HTTPS: Twilio signs https://…, the bridge is told http://…")
        signed = config["webhook_url"].replace("http://", "https://", 1)
        body = {"from": CUSTOMER, "to": MAIN_NUMBER, "body": "Still open?", "sign_url": signed}
        show_request("POST", self.fake + "/_fake/inbound", body)
        sent = await self.control("POST", "/_fake/inbound", body)
        answer(200, f"the bridge answered the webhook: {sent['answer']['status']}")
        note("Twilio would retry, then give up: the customer's text never arrives.")

        step(16, "Ask the bridge why texts don't arrive")
        path = f"{t}/sms-configs/{config['id']}/diagnosis"

        async def diagnosed() -> Json:
            found = await self.api("GET", path, quiet=True)
            return found if found["inbound"]["signature_failures"] else None

        show_request("GET", self.short(f"{API}{path}"), None)
        found = await self.poll(diagnosed, "the diagnosis to see the refused webhook")
        counts = found["inbound"]["last_24h"]
        answer(
            200,
            f"last 24 h: {counts['accepted']} accepted, "
            f"{counts['bad_signature']} with a bad signature",
        )
        failure = found["inbound"]["signature_failures"][0]
        note(f"cause: {failure['cause']}")
        for line in wrapped(failure["detail"], WIDTH - 7):
            note(line)
        note("problems, worst first:")
        for problem in found["problems"][:3]:
            for line in wrapped(problem, WIDTH - 9):
                note(f"  {line}")

    # --- texts on the phones ---

    async def phones(self, t: str) -> None:
        step(17, "Texts on the phones: SIPp plays the front desk phone behind the PBX")
        if SIPP is None:
            note("SIPp is not installed (Debian package sip-tester): this step is skipped.")
            return
        phone_log = self.base / "phone-messages.log"
        phone = self.sipp("SIPp phone", "phone", PHONE_SCENARIO, self.phone_port, phone_log)
        self.children.append(phone)
        await phone.start(cwd=self.base)
        await self._wait_udp(phone, self.phone_port)
        note(f"the phone answers MESSAGEs at sip:127.0.0.1:{self.phone_port} (UDP)")
        settings = {
            "domain": PBX_DOMAIN,
            "proxy": f"sip:127.0.0.1:{self.phone_port};transport=udp",
            "allowed_sources": ["127.0.0.1/32"],
        }
        sip = await self.api("PUT", t + "/sip", settings)
        answer(200, f"SIP on: domain {sip['domain']}, MESSAGEs to {sip['proxy']}")
        sources = ", ".join(sip["allowed_sources"])
        note(f"a MESSAGE from {sources} with From …@{sip['domain']} is a send from a phone")

        step(18, "Give the front desk its SIP address")
        extensions = await self.api(
            "PUT",
            t + "/extensions",
            [
                {
                    "extension": "101",
                    "name": "Front desk",
                    "dids": [MAIN_NUMBER],
                    "sip_uri": FRONT_DESK_URI,
                },
                {"extension": "102", "name": "Dr. Lee"},
            ],
        )
        answer(200, f"{len(extensions['items'])} extensions")
        for item in extensions["items"]:
            address = item["sip_uri"] or f"sip:{item['extension']}@{PBX_DOMAIN} (the default)"
            note(f"extension {item['extension']} {item['name']!r}: {address}")

        await self.text_to_phone(t, phone, phone_log)
        await self.reply_from_phone(t)

    def sipp(self, name: str, scenario: str, xml: str, port: int, log: Path, *args: str) -> Child:
        """SIPp on loopback UDP ``port``, the lines of its scenario's log actions in ``log``."""
        assert SIPP is not None
        (self.base / f"{scenario}.xml").write_text(xml)
        return Child(
            name,
            [
                *("-sf", f"{scenario}.xml", "-i", "127.0.0.1", "-p", str(port), "-t", "u1"),
                *("-trace_logs", "-log_file", str(log), "-nostdin", *args),
            ],
            self.base / f"sipp-{scenario}.log",
            {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")},
            program=SIPP,
        )

    async def _wait_udp(self, child: Child, port: int) -> None:
        deadline = time.monotonic() + STEP_WITHIN
        while udp_free(port):
            child.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"the {child.name} did not listen on UDP port {port}")
            await asyncio.sleep(0.05)

    async def text_to_phone(self, t: str, phone: Child, phone_log: Path) -> None:
        step(19, "A customer texts the main number: the front desk phone shows it")
        body = {"from": CUSTOMER, "to": MAIN_NUMBER, "body": PHONE_TEXT}
        show_request("POST", self.fake + "/_fake/inbound", body)
        sent = await self.control("POST", "/_fake/inbound", body)
        answer(200, f"Twilio message {sent['message_sid']}, signed, sent where the number says")
        note(f"the bridge answered the webhook: {sent['answer']['status']}")

        async def shown() -> Json:
            phone.check_alive()
            lines = read_lines(phone_log)
            return lines if any(line.startswith("text:") for line in lines) else None

        note("The phone (SIPp) got a MESSAGE from the bridge and answered 200 OK:")
        for line in await self.poll(shown, "the MESSAGE to reach the phone"):
            say(f"     phone| {line}")

        listed = await self.api("GET", t + "/messages?direction=inbound", quiet=True)
        path = f"{t}/messages/{listed['items'][0]['id']}"

        async def delivered() -> Json:
            # Only one message's own view lists its deliveries; both channels, once settled.
            found = await self.api("GET", path, quiet=True)
            states = {d["channel"]: d["status"] for d in found["deliveries"] or []}
            settled = states.get("sip") == "delivered" and "pending" not in states.values()
            return found if settled else None

        message = await self.poll(delivered, "the API to show the text delivered to the phone")
        outcomes = ", ".join(
            f"{d['channel']}{' ' + d['extension'] if d.get('extension') else ''} {d['status']}"
            for d in message["deliveries"] or []
        )
        note(f"the API lists {message['id']}: {outcomes}")

    async def reply_from_phone(self, t: str) -> None:
        step(20, "The front desk replies from the phone (SIPp sends the PBX's MESSAGE)")
        assert SIPP is not None
        reply_log = self.base / "reply-answer.log"
        [port] = free_sip_ports(1, [*self.ports(), self.sip_port, self.phone_port])
        sender = self.sipp(
            "SIPp reply",
            "reply",
            REPLY_SCENARIO,
            port,
            reply_log,
            *("-m", "1", "-timeout", f"{STEP_WITHIN:.0f}s", "-timeout_error"),
            f"127.0.0.1:{self.sip_port}",
        )
        say(f"   → MESSAGE sip:{CUSTOMER}@127.0.0.1:{self.sip_port}")
        note(f'From: "Front desk" <sip:101@{PBX_DOMAIN}>, body {PHONE_REPLY!r}')
        self.children.append(sender)
        try:
            await sender.start(cwd=self.base)
            assert sender.process is not None
            try:
                code = await asyncio.wait_for(sender.process.wait(), STEP_WITHIN + 5)
            except TimeoutError:
                raise DemoError("SIPp's MESSAGE got no answer from the bridge") from None
        finally:
            await sender.stop(OTHER_STOP_WITHIN)
            self.children.remove(sender)
        lines = [line.strip() for line in read_lines(reply_log)]
        status = lines[0].split(" ", 2) if lines else []
        if code != 0 or len(status) < 3:
            raise DemoError(f"the bridge did not answer the phone's MESSAGE 202 (SIPp exit {code})")
        ids = lines[1:2] or ["no X-Bridge-Message-Id"]
        answer(int(status[1]), f"{status[2]} once the send was committed; {ids[0]}")

        async def outbound_sent() -> Json:
            listed = await self.control("GET", "/_fake/messages")
            found = [m for m in listed["messages"] if m["body"] == PHONE_REPLY]
            return found[0] if found else None

        show_request("GET", self.fake + "/_fake/messages", None)
        twilio = await self.poll(outbound_sent, "the phone's reply to reach the fake Twilio")
        answer(200, f"{twilio['sid']}  From={twilio['from']}  To={twilio['to']}")
        note(f"Body={twilio['body']!r}")


def read_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def wrapped(text: str, width: int) -> list[str]:
    """Lines of at most ``width``, broken at spaces only: URLs stay whole."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def show_sink(line: str) -> None:
    # The sink prints one long line per event: fold it, and leave out the body of status events,
    # which only repeats the text.
    head, found, rest = line.partition(" extensions=")
    say(f"     sink| {head}")
    if not found:
        return
    fields, found, body = rest.partition(" body=")
    say(f"     sink|   extensions={fields}")
    if found and head.startswith("message.received"):
        say(f"     sink|   body={body}")


def history(changes: list[Json]) -> str:
    if not changes:
        return "(none)"
    start = datetime.fromisoformat(changes[0]["at"])
    return " → ".join(
        f"{c['status']} (+{(datetime.fromisoformat(c['at']) - start).total_seconds():.2f} s)"
        for c in changes
    )


# --- entry point ---------------------------------------------------------------------------------


async def demo(base: Path, children: list[Child]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    began = time.monotonic()
    say("pbx-sms-bridge demo: a tenant admin's first day, on loopback")
    say()
    show = Demo(base, children)
    try:
        await show.start()
        ready_at = time.monotonic()
        await show.run()
        story = time.monotonic() - ready_at
        say()
        others = (
            "the fake Twilio, the PBX sink and SIPp" if SIPP else "the fake Twilio and the PBX sink"
        )
        say(f"Stopping the daemon (and its PostgreSQL), {others} …")
    finally:
        await show.stop()
        await asyncio.to_thread(stop_stray_postgres, show.data_dir)
    left = [c.name for c in children if c.exited() is None]
    if left:
        raise DemoError(f"still running after the stop: {', '.join(left)}")
    say(f"   all stopped. Done in {time.monotonic() - began:.1f} s ({story:.1f} s after ready).")


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is None:
        path = Path(tempfile.mkdtemp(prefix="bridge-demo-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    if keep.exists() and any(keep.iterdir()):
        raise DemoError(f"--keep-data {keep} must be a new or empty directory")
    keep.mkdir(parents=True, exist_ok=True)
    yield keep.resolve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.demo", description="Walk through a tenant admin's first day."
    )
    parser.add_argument(
        "--keep-data",
        type=Path,
        metavar="DIR",
        help="keep the data directory and the processes' logs in DIR (new or empty)",
    )
    args = parser.parse_args(argv)
    children: list[Child] = []
    try:
        with workspace(args.keep_data) as base:
            try:
                asyncio.run(demo(base, children))
            finally:
                for child in children:
                    child.kill_if_running()
                stop_stray_postgres(base / "data")
    except KeyboardInterrupt:
        fail("demo interrupted; every process it started is stopped")
        return 130
    except asyncio.CancelledError:
        fail("demo stopped by a signal; every process it started is stopped")
        return 143
    except DemoError as exc:
        fail(f"demo failed: {exc}{logs_hint(args.keep_data, children)}")
        return 1
    except Exception as exc:
        fail(f"demo failed: {type(exc).__name__}: {exc}{logs_hint(args.keep_data, children)}")
        return 1
    return 0


def logs_hint(kept: Path | None, children: list[Child]) -> str:
    if not children:
        return ""
    return f" (logs in {kept})" if kept is not None else " (--keep-data DIR keeps the logs)"


def fail(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
