"""``python -m bench.sip``: texts on the phones under load (design §10, issue 8).

On loopback, each in its own process: the daemon (embedded PostgreSQL, default settings, SIP on
for a tenant with no webhook delivery target), the fake Twilio, and SIPp (Debian package
``sip-tester``) as the PBX, its proxy. Two measurements, aiming at 1,000/s each way:

- **to the phones**: signed Twilio webhooks from ``wrk`` (``bench/webhooks.lua``), spread over
  the DIDs of 100 extensions; SIPp as UAS answers every MESSAGE 200 and logs when it got it.
  Steady steps of offered webhooks, until one does not hold (a text refused or missing, or
  webhook → phone p99 over 250 ms): the highest that held is the figure. Then a burst as fast
  as wrk goes, to see the SIP queue draining a backlog on its own.
- **from the phones**: SIPp as UAC relays MESSAGEs from those extensions to remote numbers for
  10 s, in a closed loop (a fixed number in flight, each with its own Call-ID), the fake Twilio
  answering each create in 50 ms: MESSAGEs answered 202 per second and how fast, sends per
  second reaching the fake, and any text sent twice.

About a minute and a half in all. ``sip_phase(workdir)`` is what ``make bench`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from bench.common import ROOT, Api, fake_count, fake_requests, form_value, process, say, wait_http
from bridge.twilio.signature import compute_signature
from tests.daemon import Daemon, free_port, udp_free
from tests.sipp import answer

LUA = ROOT / "bench" / "webhooks.lua"
SIPP = "/usr/bin/sipp"
ADMIN = secrets.token_hex(16)
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
DOMAIN = "bench.pbx.example"
# Each phone has its own DID and inbound rule: a phone's texts arrive one at a time, in order
# (design §10), so one phone alone would measure a round trip, not the bridge.
PHONES = 100
FIRST_PHONE = 5000
# Steady offered webhook rates, each for STEP_SECONDS, until a step does not hold: every text
# acknowledged and at the phone, webhook → phone p99 within STEP_P99_MS (bench/run.py's
# sustained target). Fixed rates, so that versions compare.
STEP_RATES = (100, 175, 250, 350, 500, 700, 1_000, 1_400, 2_000)
STEP_SECONDS = 6
STEP_P99_MS = 250.0
BURST_SECONDS = 6
# The PBX sends for this long (at most OUTBOUND_TEXTS), then lets its MESSAGEs in flight end.
OUTBOUND_SECONDS = 10
OUTBOUND_TEXTS = 50_000
# MESSAGEs SIPp keeps in flight: a PBX relaying many phones' texts at once.
IN_FLIGHT = 32
TWILIO_LATENCY = 0.05
WAIT_LIMIT = 90.0
PARTS = ("to-phones", "from-phones")

PHONE_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a phone that takes every text">
  <recv request="MESSAGE">
    <action>
      <gettimeofday assign_to="sec,usec" />
      <ereg regexp="[0-9]+" search_in="body" check_it="false" assign_to="index" />
      <log message="[$sec] [$usec] [$index]" />
    </action>
  </recv>
  {answer("200 OK")}
</scenario>
"""

PBX_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="a PBX relaying a phone's texts">
  <send retrans="500" start_rtd="accept"><![CDATA[
    MESSAGE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
    Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
    Max-Forwards: 70
    From: <sip:[field2]@{DOMAIN}>;tag=[pid]SIPpTag[call_number]
    To: <sip:[field0]@{DOMAIN}>
    Call-ID: [call_id]
    CSeq: 1 MESSAGE
    Content-Type: text/plain;charset=UTF-8
    Content-Length: [len]

    [field1]]]></send>
  <recv response="100" optional="true" />
  <recv response="202" rtd="accept" />
</scenario>
"""


@dataclass
class SipFigures:
    """What `sip_phase` measured; rates are per second, latencies in milliseconds.

    ``delivered_*`` and ``webhook_to_phone_*`` are of the highest steady step that held (0 if
    none did); ``sends_*`` count the creates the fake Twilio received."""

    delivered_per_s: float
    delivered_count: int
    webhook_to_phone_p50_ms: float
    webhook_to_phone_p99_ms: float
    sends_per_s: float
    sends_count: int
    sends_duplicates: int
    steps: list[Step] = field(default_factory=list)
    # Webhooks as fast as wrk goes: acknowledged per second, MESSAGEs per second delivered
    # meanwhile, and once the webhooks stopped (the SIP queue alone, draining the backlog).
    burst_webhooks_per_s: float = 0.0
    burst_delivered_per_s: float = 0.0
    drain_per_s: float = 0.0
    # Texts whose MESSAGE reached the phone more than once, in all runs.
    delivered_duplicates: int = 0
    # MESSAGEs from SIPp answered 202 per second, and the time to that answer.
    accepted_per_s: float = 0.0
    accept_p50_ms: float = 0.0
    accept_p99_ms: float = 0.0
    accept_failed: int = 0


# --- processes -------------------------------------------------------------------------------


def free_sip_port() -> int:
    """A port free for both TCP and UDP: the bridge listens on both."""
    while True:
        port = free_port()
        if udp_free(port):
            return port


async def wait_udp(port: int, child: subprocess.Popen[bytes], limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while udp_free(port):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"SIPp did not listen on UDP port {port} (exit {child.poll()})")
        await asyncio.sleep(0.05)


# --- the phone -------------------------------------------------------------------------------


class PhoneLog:
    """SIPp's log as the phone: a line ``<seconds> <microseconds> <index>`` per MESSAGE it
    answered, the index being the first number of the text, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.arrived: dict[int, float] = {}  # text index -> wall-clock arrival
        self.duplicates = 0
        self._offset = 0
        self._partial = b""

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            fields = line.split()
            if len(fields) != 3 or not fields[2].isdigit():
                continue
            index = int(fields[2])
            if index in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[index] = float(fields[0]) + float(fields[1]) / 1e6

    async def until(self, wanted: set[int], count: int) -> None:
        """Until ``count`` of the ``wanted`` texts arrived, or nothing came for 10 s."""
        deadline = time.monotonic() + WAIT_LIMIT
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.read()
            have = len(wanted & self.arrived.keys())
            if have >= count:
                return
            if have != last:
                last, last_change = have, time.monotonic()
            elif time.monotonic() - last_change > 10:
                return
            await asyncio.sleep(0.2)


# --- webhooks --------------------------------------------------------------------------------


class Bodies:
    """Pre-signed webhook bodies, each text once; text ``i`` goes to phone ``i % PHONES``."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.made = 0

    def file(self, count: int) -> tuple[Path, int]:
        """A file of ``count`` new bodies, and the index of its first text."""
        first = self.made
        path = self.workdir / f"sip-bodies-{first}.txt"
        with path.open("w") as out:
            for i in range(first, first + count):
                params = [
                    ("ToCountry", "US"),
                    ("SmsMessageSid", f"SM{i:032x}"),
                    ("NumMedia", "0"),
                    ("SmsSid", f"SM{i:032x}"),
                    ("SmsStatus", "received"),
                    # The phone reads the text's index as its first number.
                    ("Body", f"Text {i} for the desk phone, a typical short one."),
                    ("To", did(i % PHONES)),
                    ("NumSegments", "1"),
                    ("MessageSid", f"SM{i:032x}"),
                    ("AccountSid", ACCOUNT_SID),
                    ("From", f"+1555{2000000 + i % 5000:07d}"),
                    ("ApiVersion", "2010-04-01"),
                ]
                signature = compute_signature(self.url, params, AUTH_TOKEN)
                out.write(f"{signature}\t{urlencode(params)}\n")
        self.made += count
        return path, first


@dataclass
class WrkRun:
    acknowledged: int
    refused: int
    seconds: float
    ack_p99_ms: float
    sent_at: dict[int, float]  # text index -> wall-clock send

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds


def wrk(url: str, bodies: Path, first: int, *, rate: float, seconds: int) -> WrkRun:
    path = "/" + url.split("/", 3)[3]
    origin = url[: len(url) - len(path) + 1]
    sent = bodies.with_suffix(".sent")
    args = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), origin]
    done = subprocess.run(
        [*args, "--", "1"],
        env={
            **os.environ,
            "BENCH_BODIES": str(bodies),
            "BENCH_PATH": path,
            "BENCH_RATE": str(rate),
            "BENCH_SENT": str(sent),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    fields = {k: int(v) for k, v in (pair.split("=") for pair in line.split()[1:])}
    sent_at: dict[int, float] = {}
    for log in bodies.parent.glob(sent.name + ".*"):
        for entry in log.read_text().splitlines():
            index, _, ms = entry.partition("\t")
            sent_at.setdefault(first + int(index), float(ms) / 1000)
    bad = fields["errors_status"] + fields["errors_timeout"]
    return WrkRun(
        fields["requests"] - bad, bad, fields["duration_us"] / 1e6, fields["p99_us"] / 1000, sent_at
    )


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * fraction) - 1))]


def rate_of(times: list[float]) -> float:
    """Events per second from the first to the last."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (max(times) - min(times))


# --- the bridge ------------------------------------------------------------------------------


def did(phone: int) -> str:
    return f"+1555060{phone:04d}"


async def provision(daemon: Daemon, phone_port: int) -> str:
    """A tenant with SIP on, its proxy the SIPp phone; the webhook URL of its numbers."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        api = Api(session, daemon.internal + "/api/v1")
        tenant = (await api("POST", "/tenants", {"name": "SIP bench"}))["id"]
        base = f"/tenants/{tenant}"
        trunk = (await api("POST", base + "/trunks", {"name": "Trunk"}))["id"]
        # Shaping off for the phones' numbers: far above what they will be asked for.
        numbers = [{"number": did(k), "mps": 10_000} for k in range(PHONES)]
        config = await api.sms_config(
            tenant, trunk, "Bench", ACCOUNT_SID, AUTH_TOKEN, numbers=numbers
        )
        extensions = [{"extension": str(FIRST_PHONE + k), "dids": [did(k)]} for k in range(PHONES)]
        await api("PUT", base + "/extensions", extensions)
        rules = [
            {"name": f"phone {k}", "did": did(k), "extensions": [str(FIRST_PHONE + k)]}
            for k in range(PHONES)
        ]
        await api("PUT", base + "/inbound-rules", rules)
        await api("PUT", base + "/outbound-rules", [{"name": "all", "trunks": [trunk]}])
        await api(
            "PUT",
            base + "/sip",
            {
                "domain": DOMAIN,
                "proxy": f"sip:127.0.0.1:{phone_port};transport=udp",
                "allowed_sources": ["127.0.0.1/32"],
            },
        )
        webhook_url: str = config["webhook_url"]
        return webhook_url


@asynccontextmanager
async def stack(workdir: Path) -> AsyncIterator[tuple[Daemon, str, int, PhoneLog, str]]:
    """The fake Twilio, the SIPp phone and the daemon; yields the daemon, the fake's URL, the
    bridge's SIP port, the phone's log and the webhook URL."""
    fake = f"http://127.0.0.1:{free_port()}"
    fake_args = [sys.executable, "-m", "bridge", "fake-twilio", "--port", fake.rsplit(":", 1)[1]]
    fake_args += ["--account-sid", ACCOUNT_SID, "--auth-token", AUTH_TOKEN, "--public-url", fake]
    phone_port, sip_port = free_sip_port(), free_sip_port()
    (workdir / "phone.xml").write_text(PHONE_SCENARIO)
    phone_log = PhoneLog(workdir / "phone-messages.log")
    phone_args = [SIPP, "-sf", "phone.xml", "-i", "127.0.0.1", "-p", str(phone_port), "-t", "u1"]
    phone_args += ["-trace_logs", "-log_file", str(phone_log.path), "-nostdin"]
    with (
        process(fake_args, workdir / "fake.log"),
        process(phone_args, workdir / "phone-screen.log", workdir, signal.SIGINT) as phone,
    ):
        daemon = Daemon(
            workdir / "sip-data",
            {
                "BRIDGE_ADMIN_TOKEN": ADMIN,
                "BRIDGE_TWILIO_API_BASE": fake,
                "BRIDGE_SIP_LISTEN": f"127.0.0.1:{sip_port}",
            },
        )
        daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
        daemon.start()
        try:
            await daemon.wait_ready()
            await wait_http(fake + "/_fake/state")
            await wait_udp(phone_port, phone)
            webhook_url = await provision(daemon, phone_port)
            yield daemon, fake, sip_port, phone_log, webhook_url
        finally:
            daemon.stop()


# --- to the phones ---------------------------------------------------------------------------


@dataclass
class Delivery:
    run: WrkRun
    arrivals: list[float]
    latencies_ms: list[float]


async def deliver(bodies: Bodies, phone: PhoneLog, *, rate: float, seconds: int) -> Delivery:
    """One wrk run, then until each acknowledged text is at the phone."""
    # Enough even if the generator runs ahead; past the end, wrk repeats texts (duplicates,
    # acknowledged but not delivered again), which the figures would not count.
    count = int((rate or 4_000) * seconds * 1.2) + 1_000
    path, first = await asyncio.to_thread(bodies.file, count)
    run = await asyncio.to_thread(wrk, bodies.url, path, first, rate=rate, seconds=seconds)
    await phone.until(set(run.sent_at), run.acknowledged)
    mine = [i for i in run.sent_at if i in phone.arrived]
    return Delivery(
        run,
        [phone.arrived[i] for i in mine],
        [(phone.arrived[i] - run.sent_at[i]) * 1000 for i in mine],
    )


@dataclass
class Step:
    """One steady step: webhooks offered at a rate for STEP_SECONDS."""

    offered: float
    acknowledged: int
    refused: int
    delivered: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    ack_p99_ms: float

    @property
    def held(self) -> bool:
        # Texts sent as the step ended may reach the phone without wrk counting their answer.
        return (
            self.refused == 0 and self.delivered >= self.acknowledged and self.p99_ms <= STEP_P99_MS
        )


async def to_phones(figures: SipFigures, webhook_url: str, phone: PhoneLog, workdir: Path) -> None:
    say(
        f"sip to the phones: wrk's webhooks to {PHONES} extensions' DIDs, SIPp answering each "
        f"MESSAGE 200; {STEP_SECONDS} s steps until webhook → phone p99 passes "
        f"{STEP_P99_MS:.0f} ms or a text is refused or missing"
    )
    bodies = Bodies(workdir, webhook_url)
    # Warm up (imports, PostgreSQL's buffers, the queue's indexes) before measuring.
    await deliver(bodies, phone, rate=0, seconds=2)
    for rate in STEP_RATES:
        done = await deliver(bodies, phone, rate=rate, seconds=STEP_SECONDS)
        step = Step(
            offered=rate,
            acknowledged=done.run.acknowledged,
            refused=done.run.refused,
            delivered=len(done.arrivals),
            delivered_per_s=rate_of(done.arrivals),
            p50_ms=percentile(done.latencies_ms, 0.5),
            p99_ms=percentile(done.latencies_ms, 0.99),
            ack_p99_ms=done.run.ack_p99_ms,
        )
        figures.steps.append(step)
        say(
            f"  offered {rate:>5,}/s: {step.acknowledged:,} acknowledged, {step.delivered:,} at "
            f"the phone ({step.delivered_per_s:,.0f}/s), webhook → phone p50 {step.p50_ms:.0f} "
            f"ms p99 {step.p99_ms:.0f} ms (ack p99 {step.ack_p99_ms:.0f} ms): "
            + ("held" if step.held else "did not hold")
        )
        if not step.held:
            break
        figures.delivered_per_s = step.delivered_per_s
        figures.delivered_count = step.delivered
        figures.webhook_to_phone_p50_ms = step.p50_ms
        figures.webhook_to_phone_p99_ms = step.p99_ms
    burst = await deliver(bodies, phone, rate=0, seconds=BURST_SECONDS)
    stopped = max(burst.run.sent_at.values())
    figures.burst_webhooks_per_s = burst.run.rate
    figures.burst_delivered_per_s = rate_of([t for t in burst.arrivals if t <= stopped])
    figures.drain_per_s = rate_of([t for t in burst.arrivals if t > stopped])
    figures.delivered_duplicates = phone.duplicates
    say(
        f"  as fast as wrk goes: {figures.burst_webhooks_per_s:,.0f} webhooks/s acknowledged, "
        f"{figures.burst_delivered_per_s:,.0f} MESSAGEs/s delivered meanwhile, "
        f"{figures.drain_per_s:,.0f}/s once the webhooks stopped "
        f"({len(burst.arrivals):,} of {burst.run.acknowledged:,}; "
        f"{phone.duplicates} texts twice at the phone in all)"
    )


# --- from the phones -------------------------------------------------------------------------


@dataclass
class SippStats:
    successful: int
    failed: int
    retransmissions: int
    answered_at_ms: list[float]  # since SIPp started
    accept_ms: list[float]


def sipp_stats(workdir: Path, stat_file: Path) -> SippStats:
    """The last line of SIPp's -trace_stat file, and its -trace_rtt response times."""
    header, *rows = stat_file.read_text().splitlines()
    last = dict(zip(header.split(";"), rows[-1].split(";"), strict=False))
    answered_at_ms: list[float] = []
    accept_ms: list[float] = []
    for rtt in workdir.glob("pbx_*_rtt.csv"):
        for row in rtt.read_text().splitlines()[1:]:
            cells = row.split(";")
            with contextlib.suppress(IndexError, ValueError):
                answered_at_ms.append(float(cells[0]))
                accept_ms.append(float(cells[1]))
    return SippStats(
        successful=int(last["SuccessfulCall(C)"]),
        failed=int(last["FailedCall(C)"]),
        retransmissions=int(last["Retransmissions(C)"]),
        answered_at_ms=answered_at_ms,
        accept_ms=accept_ms,
    )


async def from_phones(figures: SipFigures, fake: str, sip_port: int, workdir: Path) -> None:
    say(
        f"sip from the phones: SIPp sending MESSAGEs from {PHONES} extensions for "
        f"{OUTBOUND_SECONDS} s, {IN_FLIGHT} in flight, fake Twilio answering in "
        f"{TWILIO_LATENCY * 1000:.0f} ms"
    )
    async with aiohttp.ClientSession() as session:
        async with session.patch(
            fake + "/_fake/config", json={"latency": TWILIO_LATENCY, "callback_delay": 3600}
        ) as response:
            assert response.status == 200
        async with session.post(fake + "/_fake/reset", json={"keep_accounts": True}):
            pass
        (workdir / "pbx.xml").write_text(PBX_SCENARIO)
        texts = workdir / "pbx-texts.csv"
        with texts.open("w") as out:
            out.write("SEQUENTIAL\n")
            for i in range(OUTBOUND_TEXTS):
                phone = FIRST_PHONE + i % PHONES
                out.write(f"+1555400{i % 10_000:04d};From the desk phone {i};{phone}\n")
        stat_file = workdir / "pbx-stat.csv"
        # A closed loop: a new MESSAGE as soon as one of those in flight is answered.
        pbx_args = [SIPP, "-sf", "pbx.xml", "-inf", str(texts), "-i", "127.0.0.1"]
        pbx_args += ["-p", str(free_sip_port()), "-t", "u1", "-m", str(OUTBOUND_TEXTS)]
        pbx_args += ["-r", "100000", "-l", str(IN_FLIGHT), "-timeout", "120s", "-nostdin"]
        pbx_args += ["-trace_stat", "-stf", str(stat_file), "-fd", "1", "-trace_rtt"]
        pbx_args += ["-rtt_freq", "100", f"127.0.0.1:{sip_port}"]
        with process(pbx_args, workdir / "pbx-screen.log", workdir, signal.SIGINT) as pbx:
            try:
                await asyncio.to_thread(pbx.wait, OUTBOUND_SECONDS)
            except subprocess.TimeoutExpired:
                # SIPp's soft stop: no new MESSAGE, and it exits once those in flight end.
                pbx.send_signal(signal.SIGUSR1)
                await asyncio.to_thread(pbx.wait, 60)
        stats = sipp_stats(workdir, stat_file)
        deadline = time.monotonic() + WAIT_LIMIT
        while time.monotonic() < deadline:
            if await fake_count(fake, session) >= stats.successful:
                break
            await asyncio.sleep(0.5)
        created = await fake_requests(fake, session)
    bodies = [form_value(r, "Body") for r in created]
    figures.sends_per_s = rate_of([float(r["received_at"]) for r in created])
    figures.sends_count = len(created)
    figures.sends_duplicates = len(bodies) - len(set(bodies))
    figures.accepted_per_s = rate_of([ms / 1000 for ms in stats.answered_at_ms])
    figures.accept_p50_ms = percentile(stats.accept_ms, 0.5)
    figures.accept_p99_ms = percentile(stats.accept_ms, 0.99)
    figures.accept_failed = stats.failed
    say(
        f"  SIPp: {stats.successful:,} answered 202 ({figures.accepted_per_s:,.0f}/s, p50 "
        f"{figures.accept_p50_ms:.0f} ms, p99 {figures.accept_p99_ms:.0f} ms), "
        f"{stats.failed} failed, {stats.retransmissions:,} retransmissions"
    )
    say(
        f"  bridge: {figures.sends_per_s:,.0f} sends/s reached the fake "
        f"({figures.sends_count:,} created, {figures.sends_duplicates} twice)"
    )


# --- entry points ----------------------------------------------------------------------------


def missing_tools() -> str | None:
    """Why the SIP benchmark cannot run here, or None."""
    if not Path(SIPP).exists():
        return f"the SIP benchmark needs SIPp at {SIPP}: apt-get install sip-tester"
    if shutil.which("wrk") is None:
        return "the SIP benchmark needs wrk: apt-get install wrk"
    return None


async def sip_phase(workdir: Path, parts: Collection[str] = PARTS) -> SipFigures:
    """Texts to the phones and from them, through SIPp, on a daemon of its own."""
    problem = missing_tools()
    if problem is not None:
        raise RuntimeError(problem)
    figures = SipFigures(0.0, 0, 0.0, 0.0, 0.0, 0, 0)
    os.makedirs(workdir, exist_ok=True)
    async with stack(workdir) as (_daemon, fake, sip_port, phone, webhook_url):
        if "to-phones" in parts:
            await to_phones(figures, webhook_url, phone, workdir)
        if "from-phones" in parts:
            await from_phones(figures, fake, sip_port, workdir)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--only",
        choices=PARTS,
        help="run one part: texts to the phones or from them (default both)",
    )
    args = parser.parse_args()
    problem = missing_tools()
    if problem is not None:
        sys.exit(problem)
    workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-sip-"))
    started = time.monotonic()
    try:
        figures = asyncio.run(sip_phase(workdir, [args.only] if args.only else PARTS))
    finally:
        if args.keep:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say("")
    say(
        f"sip: {figures.delivered_per_s:,.0f} MESSAGEs/s delivered to the phone, sustained "
        f"(webhook → phone p50 {figures.webhook_to_phone_p50_ms:.1f} ms, "
        f"p99 {figures.webhook_to_phone_p99_ms:.1f} ms); {figures.drain_per_s:,.0f}/s draining "
        "a backlog"
    )
    say(
        f"sip: {figures.sends_per_s:,.0f} sends/s from the PBX reached the fake "
        f"({figures.sends_count:,} sent, {figures.sends_duplicates} twice; "
        f"{figures.accepted_per_s:,.0f}/s answered 202, p99 {figures.accept_p99_ms:.0f} ms)"
    )
    say(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
