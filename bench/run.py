"""``make bench``: the bridge measured against its ceiling, side by side, in one run.

Everything runs on loopback, each part in its own process: the daemon (embedded PostgreSQL,
default settings, workers on, delivering to a PBX sink in this process), the fake Twilio, a bare
aiohttp handler (the ceiling), and the load generator — ``wrk`` with a Lua script cycling
through pre-signed webhook bodies, each MessageSid sent once, so every acknowledgement is a
committed row. Prints one table and writes ``bench/out/bench.png`` and ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import uvloop
from aiohttp import web

from bench import routing, sip
from bench.common import ROOT, Api, fake_count, fake_requests, form_value, process, say, wait_http
from bench.sip import SipFigures
from bridge.twilio.signature import compute_signature
from tests.daemon import Daemon, free_port

OUT = ROOT / "bench" / "out"
LUA = ROOT / "bench" / "webhooks.lua"
ADMIN = secrets.token_hex(16)
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
SINK_SECRET = secrets.token_hex(16)
INBOUND_DID = "+15550100000"
SENDERS = 200
SHAPED = {1: "+15550300001", 10: "+15550300010", 100: "+15550300100"}
SERVICE_SID = "MG" + secrets.token_hex(16)
SERVICE_EXTENSION = "3000"
# Each recipient of the service run gets this many texts, whose order the run checks.
SERVICE_TEXTS_EACH = 4
TWILIO_LATENCY = 0.05


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the PBX ---------------------------------------------------------------------------------


class BenchSink:
    """A PBX that acknowledges every event and counts them, at constant cost per event (the
    test sink keeps every attempt and rescans them, too slow for a benchmark): it shares this
    2-core machine with the daemon, so it must stay cheap."""

    def __init__(self) -> None:
        self.url = ""
        self.acknowledged = 0
        self.arrived: dict[str, float] = {}  # received texts' MessageSid -> arrival (monotonic)
        self.watch: set[str] = set()
        self._target = 0
        self._reached = asyncio.Event()
        self._all_arrived = asyncio.Event()
        self.last_at = 0.0
        # Wall-clock arrival of each text by MessageSid, while `stamping` (the sustained run).
        self.stamping = False
        self.stamps: dict[str, float] = {}
        # What the floor (bench/forward.py) passed on, counted apart from the bridge's.
        self.forwarded = 0

    async def handle_forwarded(self, request: web.Request) -> web.Response:
        await request.read()
        self.forwarded += 1
        return web.Response(status=204)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.watch:
            sid = json.loads(raw).get("message", {}).get("twilio_sid")
            if sid in self.watch:
                self.arrived.setdefault(sid, time.monotonic())
                if len(self.arrived) == len(self.watch):
                    self._all_arrived.set()
        if self.stamping:
            # A byte search, not a JSON parse: the sink shares the machine with the daemon.
            at = raw.find(b'"twilio_sid": "')
            if at >= 0:
                self.stamps.setdefault(raw[at + 15 : at + 49].decode(), time.time())
        self.acknowledged += 1
        self.last_at = time.monotonic()
        if self.acknowledged >= self._target:
            self._reached.set()
        return web.Response(status=204)

    async def quiet(self, seconds: float, within: float) -> None:
        """Until nothing has arrived for ``seconds``: the daemon's backlog is delivered (the
        generator's count can miss requests that were stored as it stopped)."""
        async with asyncio.timeout(within):
            # Silence is the absence of an event: there is nothing to await.
            while time.monotonic() - self.last_at < seconds:  # noqa: ASYNC110
                await asyncio.sleep(0.1)

    def watch_for(self, sids: set[str]) -> None:
        """Note the arrival times of these texts in ``arrived`` (see `all_arrived`)."""
        self.arrived = {}
        self._all_arrived.clear()
        self.watch = sids

    async def all_arrived(self, within: float) -> None:
        """Until every watched text has arrived."""
        async with asyncio.timeout(within):
            await self._all_arrived.wait()
        self.watch = set()

    async def wait_for(self, count: int, within: float) -> None:
        self._target = count
        self._reached.clear()
        if self.acknowledged < count:
            async with asyncio.timeout(within):
                await self._reached.wait()


@asynccontextmanager
async def running_sink() -> AsyncIterator[BenchSink]:
    sink = BenchSink()
    app = web.Application()
    app.router.add_post("/events", sink.handle)
    app.router.add_post("/forwarded", sink.handle_forwarded)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sink.url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
    try:
        yield sink
    finally:
        await runner.cleanup()


# --- load generation -------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run: what was offered and what came back."""

    target: str
    offered: float  # requests/s asked of the generator; 0 = as fast as it goes
    requests: int
    seconds: float
    bad: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Acknowledged (2xx) requests per second."""
        return (self.requests - self.bad) / self.seconds


class Bodies:
    """Pre-signed webhook bodies, a fresh file per run so no MessageSid repeats."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.made = 0

    def sid(self, index: int) -> str:
        return f"SM{index:032x}"

    def file(self, count: int) -> Path:
        path = self.workdir / f"bodies-{self.made}.txt"
        with path.open("w") as out:
            for i in range(self.made, self.made + count):
                params = [
                    ("ToCountry", "US"),
                    ("SmsMessageSid", f"SM{i:032x}"),
                    ("NumMedia", "0"),
                    ("SmsSid", f"SM{i:032x}"),
                    ("SmsStatus", "received"),
                    ("Body", f"Load test message number {i}, a typical short text."),
                    ("To", INBOUND_DID),
                    ("NumSegments", "1"),
                    ("MessageSid", f"SM{i:032x}"),
                    ("AccountSid", ACCOUNT_SID),
                    ("From", f"+1555{2000000 + i % 5000:07d}"),
                    ("ApiVersion", "2010-04-01"),
                ]
                signature = compute_signature(self.url, params, AUTH_TOKEN)
                out.write(f"{signature}\t{urlencode(params)}\n")
        self.made += count
        return path


def wrk(
    target: str, url: str, bodies: Path, *, rate: float, seconds: int, sent: Path | None = None
) -> Run:
    path = "/" + url.split("/", 3)[3]
    origin = url[: len(url) - len(path) + 1]
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c64",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            origin,
            "--",
            "1",
        ],
        env={
            **os.environ,
            "BENCH_BODIES": str(bodies),
            "BENCH_PATH": path,
            "BENCH_RATE": str(rate),
            "BENCH_SENT": "" if sent is None else str(sent),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    fields = {k: int(v) for k, v in (pair.split("=") for pair in line.split()[1:])}
    return Run(
        target=target,
        offered=rate,
        requests=fields["requests"],
        seconds=fields["duration_us"] / 1e6,
        bad=fields["errors_status"] + fields["errors_timeout"],
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
    )


# --- the bridge under test -------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    webhook_url: str


async def provision(api: Api, sink: BenchSink) -> Tenant:
    tenant = (await api("POST", "/tenants", {"name": "Bench"}))["id"]
    base = f"/tenants/{tenant}"
    trunk = (await api("POST", base + "/trunks", {"name": "Trunk"}))["id"]
    senders = [f"+1555020{i:04d}" for i in range(SENDERS)]
    numbers: list[dict[str, object]] = [{"number": INBOUND_DID}]
    # Shaping off for the throughput senders: far above what they will be asked for.
    numbers += [{"number": n, "mps": 10_000} for n in senders]
    numbers += [{"number": n, "mps": mps} for mps, n in SHAPED.items()]
    config = await api.sms_config(tenant, trunk, "Bench", ACCOUNT_SID, AUTH_TOKEN, numbers=numbers)
    extensions = [{"extension": "101", "dids": [INBOUND_DID]}]
    extensions += [{"extension": f"2{i:03d}", "dids": [n]} for i, n in enumerate(senders)]
    extensions += [{"extension": f"9{mps:03d}", "dids": [n]} for mps, n in SHAPED.items()]
    # Extension 3000 has no DID: its texts go out through the service's configuration.
    service_trunk = (await api("POST", base + "/trunks", {"name": "Service trunk"}))["id"]
    await api.sms_config(
        tenant,
        service_trunk,
        "Bench service",
        ACCOUNT_SID,
        AUTH_TOKEN,
        messaging_service_sid=SERVICE_SID,
    )
    extensions.append({"extension": SERVICE_EXTENSION, "dids": []})
    await api("PUT", base + "/extensions", extensions)
    await api("PUT", base + "/inbound-rules", [{"name": "all", "did": "*", "extensions": ["101"]}])
    await api(
        "PUT",
        base + "/outbound-rules",
        [
            {"name": "service", "from_extensions": [SERVICE_EXTENSION], "trunks": [service_trunk]},
            {"name": "all", "trunks": [trunk]},
        ],
    )
    await api("PUT", base + "/delivery", {"url": sink.url, "secret": SINK_SECRET})
    return Tenant(tenant, config["webhook_url"])


async def drained(sink: BenchSink, expected: int, limit: float = 120) -> float:
    """Seconds until the sink has acknowledged ``expected`` deliveries in all."""
    started = time.monotonic()
    await sink.wait_for(expected, within=limit)
    return time.monotonic() - started


# --- phases ----------------------------------------------------------------------------------


@dataclass
class Results:
    bare_max: Run | None = None
    floor: float = 0.0
    bridge_max: Run | None = None
    bare_curve: list[Run] | None = None
    bridge_curve: list[Run] | None = None
    half: Run | None = None
    inbound_stored: int = 0
    inbound_acked: int = 0
    inbound_delivered: int = 0
    peak_rss_mb: float = 0.0
    e2e_p50_ms: float = 0.0
    e2e_p99_ms: float = 0.0
    e2e_rate: float = 0.0
    e2e_count: int = 0
    outbound_rate: float = 0.0
    outbound_count: int = 0
    outbound_duplicates: int = 0
    service_rate: float = 0.0
    service_count: int = 0
    service_duplicates: int = 0
    service_out_of_order: int = 0
    official_rate: float = 0.0
    official_one_thread: float = 0.0
    shaping: dict[int, float] | None = None
    routing: dict[int, tuple[float, float, float, float]] | None = None
    sustained: list[Step] | None = None
    two_processes: Run | None = None
    sip: SipFigures | None = None

    @property
    def sustained_rate(self) -> float:
        """The highest rate a step held at: every text offered acknowledged and delivered,
        webhook → PBX p99 within the target."""
        held = [step.achieved for step in self.sustained or [] if step.held]
        return max(held, default=0.0)


@dataclass
class Step:
    """One step of the sustained run: a steady offered rate for SUSTAIN_SECONDS."""

    offered: float
    achieved: float  # acknowledged/s: wrk's connections cap what it can offer
    acknowledged: int
    refused: int
    delivered: int
    p50_ms: float
    p99_ms: float
    ack_p99_ms: float

    @property
    def held(self) -> bool:
        # Texts sent as the step ended may reach the PBX without wrk counting their answer.
        return (
            self.refused == 0
            and self.achieved >= 0.97 * self.offered
            and self.delivered >= self.acknowledged
            and self.p99_ms <= SUSTAIN_P99_MS
        )


FRACTIONS = (0.25, 0.5, 0.75, 1.0, 1.25)
PHASES = ("inbound", "sustained", "e2e", "outbound", "shaping", "processes", "sip", "routing")
# The sustained run: steady steps of this long, offered at these fractions of the
# acknowledgement-only maximum, until one fails; webhook → PBX p99 must stay within this.
SUSTAIN_SECONDS = 30
# Past 1.0: a steady offered load can be taken faster than wrk's unpaced burst measures.
SUSTAIN_FRACTIONS = (0.4, 0.55, 0.7, 0.85, 1.0, 1.15, 1.3)
SUSTAIN_P99_MS = 250.0


@dataclass(frozen=True)
class Ceilings:
    """What the bridge is measured against: the bare handler, and the floor of its design."""

    bare: str
    forward: str


async def floor_rate(sink: BenchSink, url: str, bodies: Path, seconds: int) -> float:
    """Webhooks/s that bench/forward.py passes on to the sink while wrk goes as fast as it can:
    what acknowledging and POSTing each one costs alone."""
    await asyncio.to_thread(wrk, "forward", url, bodies, rate=0, seconds=2)
    before, started = sink.forwarded, time.monotonic()
    run = await asyncio.to_thread(wrk, "forward", url, bodies, rate=0, seconds=seconds)
    passed = (sink.forwarded - before) / (time.monotonic() - started)
    await asyncio.sleep(1)  # its backlog, if any, out of the way of the next run
    return min(run.rate, passed)


async def inbound_phase(
    results: Results, daemon: Daemon, tenant: Tenant, sink: BenchSink, ceilings: Ceilings, args: Any
) -> None:
    bare_url = ceilings.bare
    bodies = Bodies(args.workdir, tenant.webhook_url)
    bare_bodies = bodies.file(int(args.seconds * 12_000))
    say("inbound: the ceiling (bare aiohttp handler) and the bridge, as fast as wrk goes")
    # Warm both (imports, caches, connections) before measuring.
    await asyncio.to_thread(wrk, "bare", bare_url, bare_bodies, rate=0, seconds=2)
    # The bridge warms longer: its tables, indexes and PostgreSQL's buffers grow into place.
    await asyncio.to_thread(
        wrk, "bridge", tenant.webhook_url, bodies.file(25_000), rate=0, seconds=5
    )
    results.bare_max = await asyncio.to_thread(
        wrk, "bare", bare_url, bare_bodies, rate=0, seconds=args.seconds
    )
    say(f"  bare handler: {results.bare_max.rate:,.0f}/s, p99 {results.bare_max.p99_ms:.1f} ms")
    results.floor = await floor_rate(sink, ceilings.forward, bare_bodies, args.seconds)
    say(f"  receive and forward, no database: {results.floor:,.0f}/s reached the sink")
    acked = await settle(sink, results)
    results.bridge_max = await asyncio.to_thread(
        wrk,
        "bridge",
        tenant.webhook_url,
        bodies.file(int(args.seconds * 8_000)),
        rate=0,
        seconds=args.seconds,
    )
    acked += results.bridge_max.requests - results.bridge_max.bad
    say(f"  bridge: {results.bridge_max.rate:,.0f}/s, p99 {results.bridge_max.p99_ms:.1f} ms")
    await settle(sink, results, acked)

    say("inbound: latency against offered load")
    results.bare_curve, results.bridge_curve = [], []
    for fraction in FRACTIONS:
        rate = fraction * results.bare_max.rate
        run = await asyncio.to_thread(wrk, "bare", bare_url, bare_bodies, rate=rate, seconds=5)
        results.bare_curve.append(run)
        rate = fraction * results.bridge_max.rate
        # Enough for the whole run even if the generator runs ahead: a repeated MessageSid
        # would be acknowledged as a duplicate, cheaper than a new text.
        file = bodies.file(int(rate * args.seconds * 1.2) + 2_000)
        run = await asyncio.to_thread(
            wrk, "bridge", tenant.webhook_url, file, rate=rate, seconds=args.seconds
        )
        results.bridge_curve.append(run)
        acked += run.requests - run.bad
        if fraction == 0.5:
            results.half = run
        say(
            f"  offered {rate:>6,.0f}/s: bridge {run.rate:>6,.0f}/s p50 {run.p50_ms:5.1f} ms "
            f"p99 {run.p99_ms:6.1f} ms | bare p99 {results.bare_curve[-1].p99_ms:.1f} ms"
        )
        await settle(sink, results, acked)
    assert daemon.process is not None
    results.peak_rss_mb = peak_rss_mb(daemon.process.pid)
    results.inbound_acked = acked
    results.inbound_delivered = sink.acknowledged


async def sustained_phase(results: Results, tenant: Tenant, sink: BenchSink, args: Any) -> None:
    """End to end at steady rates: every webhook acknowledged and at the PBX, with the time
    from each text's send (logged by the wrk script) to its arrival at the sink."""
    assert results.bridge_max is not None
    say(
        f"sustained: {SUSTAIN_SECONDS} s steps until webhook → PBX p99 passes "
        f"{SUSTAIN_P99_MS:.0f} ms or a text is refused or missing"
    )
    bodies = Bodies(args.workdir, tenant.webhook_url)
    bodies.made = 10_000_000  # far from the other phases' MessageSids
    results.sustained = []
    for fraction in SUSTAIN_FRACTIONS:
        rate = fraction * results.bridge_max.rate
        first = bodies.made
        count = int(rate * SUSTAIN_SECONDS * 1.1) + 1_000
        file = bodies.file(count)
        sent = args.workdir / f"sent-{first}"
        await sink.quiet(1.0, within=120)
        sink.stamps = {}
        sink.stamping = True
        run = await asyncio.to_thread(
            wrk, "bridge", tenant.webhook_url, file, rate=rate, seconds=SUSTAIN_SECONDS, sent=sent
        )
        sent_at: dict[str, float] = {}
        for log in args.workdir.glob(f"sent-{first}.*"):
            for line in log.read_text().splitlines():
                index, _, ms = line.partition("\t")
                sent_at.setdefault(bodies.sid(first + int(index)), float(ms) / 1000)
        acknowledged = run.requests - run.bad
        # Wait for the backlog: a step that is behind shows it as lag, then as missing texts.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while len(sink.stamps.keys() & sent_at.keys()) < acknowledged:  # noqa: ASYNC110 - arrivals have no event to await
                    await asyncio.sleep(0.2)
        sink.stamping = False
        lags = sorted(
            (sink.stamps[sid] - at) * 1000 for sid, at in sent_at.items() if sid in sink.stamps
        )
        step = Step(
            offered=rate,
            achieved=acknowledged / run.seconds,
            acknowledged=acknowledged,
            refused=run.bad,
            delivered=len(lags),
            p50_ms=lags[len(lags) // 2] if lags else float("inf"),
            p99_ms=lags[max(0, int(len(lags) * 0.99) - 1)] if lags else float("inf"),
            ack_p99_ms=run.p99_ms,
        )
        results.sustained.append(step)
        say(
            f"  offered {rate:>6,.0f}/s: {step.acknowledged:,} acknowledged "
            f"({step.achieved:,.0f}/s), "
            f"{step.delivered:,} at the PBX, webhook → PBX p50 {step.p50_ms:.0f} ms "
            f"p99 {step.p99_ms:.0f} ms (ack p99 {step.ack_p99_ms:.0f} ms): "
            + ("held" if step.held else "did not hold")
        )
        if not step.held:
            break


async def settle(sink: BenchSink, results: Results, acked: int = 0) -> int:
    """Let the deliveries of the last run finish, so runs do not overlap."""
    if acked:
        await drained(sink, acked)
    await sink.quiet(1.0, within=120)
    return acked


async def e2e_phase(
    results: Results, tenant: Tenant, sink: BenchSink, rate: float, count: int
) -> None:
    """Webhooks at a steady rate from this process; each one's time until the sink has it."""
    say(f"end to end: {count} webhooks at {rate:.0f}/s, until the PBX sink has each")
    sent_at: dict[str, float] = {}
    bodies = []
    for i in range(count):
        sid = "SM" + secrets.token_hex(16)
        params = [
            ("MessageSid", sid),
            ("AccountSid", ACCOUNT_SID),
            ("From", f"+1555300{i % 1000:04d}"),
            ("To", INBOUND_DID),
            ("Body", f"end to end {i}"),
            ("NumMedia", "0"),
        ]
        signature = compute_signature(tenant.webhook_url, params, AUTH_TOKEN)
        bodies.append((sid, urlencode(params), signature))
    await sink.quiet(1.0, within=120)
    sink.watch_for({sid for sid, _, _ in bodies})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as session:

        async def post(sid: str, body: str, signature: str) -> None:
            sent_at[sid] = time.monotonic()
            async with session.post(
                tenant.webhook_url, data=body, headers={**headers, "X-Twilio-Signature": signature}
            ) as response:
                assert response.status == 200, response.status

        tasks = []
        started = time.monotonic()
        for i, (sid, body, signature) in enumerate(bodies):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(sid, body, signature)))
        await asyncio.gather(*tasks)
        results.e2e_rate = count / (time.monotonic() - started)

    await sink.all_arrived(within=60)
    latencies = sorted((sink.arrived[s] - sent_at[s]) * 1000 for s in sent_at)
    results.e2e_count = count
    results.e2e_p50_ms = latencies[len(latencies) // 2]
    results.e2e_p99_ms = latencies[int(len(latencies) * 0.99) - 1]
    say(f"  p50 {results.e2e_p50_ms:.1f} ms, p99 {results.e2e_p99_ms:.1f} ms")


@dataclass
class SendRun:
    """The texts of one outbound run as the fake received them, oldest first."""

    rate: float
    created: list[dict[str, Any]]

    @property
    def duplicates(self) -> int:
        bodies = [form_value(r, "Body") for r in self.created]
        return len(bodies) - len(set(bodies))


async def send_run(
    daemon: Daemon, tenant: Tenant, fake: str, texts: list[dict[str, str]], wave: int = 1_000
) -> SendRun:
    """Queue ``texts`` with the workers off, then start them: the figure is the sending
    pipeline alone, not the API accepting texts at the same time. Texts are accepted ``wave``
    at a time, each wave after the one before."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake + "/_fake/reset", json={"keep_accounts": True}),
    ):
        pass
    daemon.stop()
    daemon.env["BRIDGE_RUN_WORKERS"] = "false"
    daemon.start()
    await daemon.wait_ready()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        api = Api(session, daemon.internal + "/api/v1")
        semaphore = asyncio.Semaphore(32)

        async def send(text: dict[str, str]) -> None:
            async with semaphore:
                await api("POST", f"/tenants/{tenant.id}/messages", text)

        for start in range(0, len(texts), wave):
            await asyncio.gather(*(send(t) for t in texts[start : start + wave]))
    daemon.stop()
    daemon.env["BRIDGE_RUN_WORKERS"] = "true"
    daemon.start()
    await daemon.wait_ready()
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 300
        # The count, not the list, while the run goes: the fake would spend its loop on
        # encoding thousands of records twice a second, and answer the bridge late.
        while time.monotonic() < deadline:
            if await fake_count(fake, session) >= len(texts):
                break
            await asyncio.sleep(0.5)
        created = await fake_requests(fake, session)
    created.sort(key=lambda r: float(r["received_at"]))
    times = [float(r["received_at"]) for r in created]
    # From the first create to the last: the daemon's start-up is not in the window.
    return SendRun((len(times) - 1) / (times[-1] - times[0]), created)


def out_of_order(created: list[dict[str, Any]]) -> int:
    """Texts that reached the fake before an earlier text to the same recipient."""
    last: dict[str, int] = {}
    late = 0
    for record in created:
        to, number = form_value(record, "To"), int(form_value(record, "Body").split()[-1])
        if number < last.get(to, -1):
            late += 1
        last[to] = max(number, last.get(to, -1))
    return late


async def outbound_phase(
    results: Results, daemon: Daemon, tenant: Tenant, fake: str, args: Any
) -> None:
    count = args.outbound
    say(
        f"outbound: {count} texts queued from {SENDERS} extensions, fake Twilio answering in "
        f"{TWILIO_LATENCY * 1000:.0f} ms"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            fake + "/_fake/config", json={"latency": TWILIO_LATENCY, "callback_delay": 3600}
        ) as response,
    ):
        assert response.status == 200
    run = await send_run(
        daemon,
        tenant,
        fake,
        [
            {
                "from_extension": f"2{i % SENDERS:03d}",
                "to": f"+1555400{i % 10_000:04d}",
                "body": f"outbound {i}",
            }
            for i in range(count)
        ],
    )
    results.outbound_rate = run.rate
    results.outbound_count = len(run.created)
    results.outbound_duplicates = run.duplicates
    say(
        f"  bridge: {results.outbound_rate:,.0f} texts/s reached the fake "
        f"({results.outbound_count} created, {results.outbound_duplicates} twice)"
    )
    recipients = count // SERVICE_TEXTS_EACH
    say(
        f"outbound through a Messaging Service: {count} texts, {SERVICE_TEXTS_EACH} to each of "
        f"{recipients} recipients"
    )
    run = await send_run(
        daemon,
        tenant,
        fake,
        [
            {
                "from_extension": SERVICE_EXTENSION,
                "to": f"+1555500{i % recipients:04d}",
                "body": f"service {i}",
            }
            for i in range(count)
        ],
        # A wave texts each recipient once at most: a recipient's texts are accepted in order.
        wave=min(1_000, recipients),
    )
    results.service_rate = run.rate
    results.service_count = len(run.created)
    results.service_duplicates = run.duplicates
    results.service_out_of_order = out_of_order(run.created)
    say(
        f"  bridge: {results.service_rate:,.0f} texts/s reached the fake "
        f"({results.service_count} created, {results.service_duplicates} twice, "
        f"{results.service_out_of_order} out of order)"
    )

    for threads, n in ((16, args.official), (1, 60)):
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "bench.official",
                "--api-base",
                fake,
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
                "--from",
                "+15550299999",
                "--to",
                "+15554009999",
                "--count",
                str(n),
                "--threads",
                str(threads),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        line = next(x for x in done.stdout.splitlines() if x.startswith("OFFICIAL "))
        rate = float(line.rsplit("rate=", 1)[1])
        if threads == 16:
            results.official_rate = rate
        else:
            results.official_one_thread = rate
        say(f"  official twilio client, {threads} thread(s): {rate:,.0f} texts/s")


async def shaping_phase(results: Results, daemon: Daemon, tenant: Tenant, fake: str) -> None:
    seconds = 10
    say(f"shaping: senders paced at 1, 10 and 100 segments/s, {seconds} s of texts each")
    # Queued first, as for the outbound figures: the pace is the sender's, not how fast the API
    # took the texts (on a slow day its commits came slower than 100/s).
    run = await send_run(
        daemon,
        tenant,
        fake,
        [
            # A fast sender's texts go to many people (a notice to a list, say): one
            # recipient's texts are sent one after another, whatever the pace.
            {"from_extension": f"9{mps:03d}", "to": f"+1555410{i:04d}", "body": f"s{mps}-{i}"}
            for mps in SHAPED
            for i in range(mps * seconds + 1)
        ],
    )
    created = run.created
    results.shaping = {}
    for mps, number in SHAPED.items():
        times = sorted(float(r["received_at"]) for r in created if form_value(r, "From") == number)
        results.shaping[mps] = (len(times) - 1) / (times[-1] - times[0])
        say(f"  {mps:>3}/s configured: {results.shaping[mps]:.2f}/s achieved")


# --- report ----------------------------------------------------------------------------------


def table(r: Results) -> str:
    assert r.bare_max and r.bridge_max and r.half and r.shaping and r.routing and r.sip
    sip_figures = r.sip
    ratio = r.bridge_max.rate / r.bare_max.rate
    vs_official = r.outbound_rate / r.official_rate
    routing_100k, routing_10 = r.routing[100_000][0], r.routing[10][0]
    sustained = r.sustained_rate / r.bare_max.rate
    two = r.two_processes.rate if r.two_processes else 0.0
    worst = max((s.p99_ms for s in r.sustained or [] if s.held), default=0.0)
    rows = [
        ("inbound: ceiling, bare aiohttp handler", f"{r.bare_max.rate:,.0f}/s", "", ""),
        (
            "inbound: floor of the design, receive + POST on",
            f"{r.floor:,.0f}/s = {r.floor / r.bare_max.rate:.2f} x ceiling",
            "",
            "",
        ),
        (
            f"inbound: sustained end to end (p99 to PBX <= {SUSTAIN_P99_MS:.0f} ms)",
            f"{r.sustained_rate:,.0f}/s = {sustained:.2f} x ceiling, "
            f"{r.sustained_rate / r.floor:.2f} x floor (p99 {worst:.0f} ms)",
            ">= 0.30 x",
            ok(sustained >= 0.30),
        ),
        (
            "inbound: acknowledged webhooks/s",
            f"{r.bridge_max.rate:,.0f}/s = {ratio:.2f} x ceiling",
            "",
            "",
        ),
        (
            "inbound: acknowledged, serve --processes 2",
            f"{two:,.0f}/s = {two / r.bridge_max.rate:.2f} x one process",
            "",
            "",
        ),
        (
            f"inbound: p99 ack at half max ({r.half.rate:,.0f}/s)",
            f"{r.half.p99_ms:.1f} ms (p50 {r.half.p50_ms:.1f})",
            "<= 20 ms",
            ok(r.half.p99_ms <= 20),
        ),
        (
            f"end to end p99 at {r.e2e_rate:.0f}/s",
            f"{r.e2e_p99_ms:.1f} ms (p50 {r.e2e_p50_ms:.1f})",
            "<= 100 ms",
            ok(r.e2e_p99_ms <= 100),
        ),
        (
            "outbound: texts/s reaching the fake (50 ms)",
            f"{r.outbound_rate:,.0f}/s = {vs_official:.1f} x official",
            ">= 1,000 and >= 4 x",
            ok(r.outbound_rate >= 1000 and vs_official >= 4),
        ),
        (
            "outbound: through a Messaging Service (50 ms)",
            f"{r.service_rate:,.0f}/s ({r.service_out_of_order} out of order)",
            ">= 1,000, in order",
            ok(r.service_rate >= 1000 and r.service_out_of_order == 0),
        ),
        (
            "outbound: official client, 16 threads (1)",
            f"{r.official_rate:,.0f}/s ({r.official_one_thread:,.0f}/s)",
            "",
            "",
        ),
    ]
    for mps, achieved in r.shaping.items():
        error = achieved / mps - 1
        rows.append(
            (
                f"shaping: sender at {mps}/s",
                f"{achieved:.2f}/s ({error:+.1%})",
                "within 5 %",
                ok(abs(error) <= 0.05),
            )
        )
    rows += [
        (
            "routing: one decision, 100,000 rules",
            f"{routing_100k:.2f} us = {routing_100k / routing_10:.2f} x 10 rules",
            "<= 20 us, <= 2 x",
            ok(routing_100k <= 20 and routing_100k / routing_10 <= 2),
        ),
        (
            "sip: MESSAGEs to phones, sustained (p99 <= 250 ms)",
            f"{sip_figures.delivered_per_s:,.0f}/s "
            f"(p99 {sip_figures.webhook_to_phone_p99_ms:.0f} ms, "
            f"backlog drained at {sip_figures.drain_per_s:,.0f}/s)",
            ">= 1,000/s",
            ok(sip_figures.delivered_per_s >= 1000),
        ),
        (
            "sip: phones' texts reaching the fake (50 ms)",
            f"{sip_figures.sends_per_s:,.0f}/s ({sip_figures.sends_duplicates} twice)",
            ">= 1,000/s",
            ok(sip_figures.sends_per_s >= 1000 and sip_figures.sends_duplicates == 0),
        ),
        (
            "memory: peak RSS under inbound load",
            f"{r.peak_rss_mb:.0f} MB",
            "<= 150 MB",
            ok(r.peak_rss_mb <= 150),
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(lines)


def ok(passed: bool) -> str:
    return "ok" if passed else "MISSED"


def chart(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert r.bare_curve and r.bridge_curve
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    curves = (
        (r.bare_curve, "bare aiohttp handler", "tab:blue"),
        (r.bridge_curve, "bridge", "tab:orange"),
    )
    for runs, label, color in curves:
        offered = [run.offered for run in runs]
        left.plot(offered, [run.rate for run in runs], marker="o", color=color, label=label)
        right.plot(
            offered, [run.p99_ms for run in runs], marker="o", color=color, label=f"{label} p99"
        )
        right.plot(
            offered,
            [run.p50_ms for run in runs],
            marker=".",
            linestyle="--",
            color=color,
            label=f"{label} p50",
        )
    top = max(run.offered for run in r.bare_curve)
    left.plot([0, top], [0, top], color="grey", linewidth=0.8, label="offered")
    left.set(xlabel="offered webhooks/s", ylabel="acknowledged webhooks/s", title="Throughput")
    right.set(
        xlabel="offered webhooks/s", ylabel="latency (ms)", yscale="log", title="Acknowledgement"
    )
    right.axhline(20, color="red", linewidth=0.8, linestyle=":", label="20 ms target")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# --- main ------------------------------------------------------------------------------------


@asynccontextmanager
async def stack(workdir: Path) -> AsyncIterator[tuple[Daemon, str, Ceilings, BenchSink]]:
    fake_port, bare_port, forward_port = free_port(), free_port(), free_port()
    fake = f"http://127.0.0.1:{fake_port}"
    fake_args = [
        sys.executable,
        "-m",
        "bridge",
        "fake-twilio",
        "--port",
        str(fake_port),
        "--account-sid",
        ACCOUNT_SID,
        "--auth-token",
        AUTH_TOKEN,
        "--public-url",
        fake,
    ]
    bare_args = [sys.executable, "-m", "bench.bare", "--port", str(bare_port)]
    async with running_sink() as sink:
        forward_args = [
            *(sys.executable, "-m", "bench.forward", "--port", str(forward_port)),
            *("--sink", sink.url.removesuffix("/events") + "/forwarded"),
        ]
        with (
            process(fake_args, workdir / "fake.log"),
            process(bare_args, workdir / "bare.log"),
            process(forward_args, workdir / "forward.log"),
        ):
            daemon = Daemon(
                workdir / "data",
                {"BRIDGE_ADMIN_TOKEN": ADMIN, "BRIDGE_TWILIO_API_BASE": fake},
            )
            daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
            daemon.env["BRIDGE_LOG_FORMAT"] = "json"
            daemon.start()
            try:
                await daemon.wait_ready()
                await wait_http(fake + "/_fake/state")
                await wait_http(f"http://127.0.0.1:{bare_port}/")
                await wait_http(f"http://127.0.0.1:{forward_port}/")
                path = "/sms/twilio/x/inbound"
                ceilings = Ceilings(
                    f"http://127.0.0.1:{bare_port}{path}", f"http://127.0.0.1:{forward_port}{path}"
                )
                yield daemon, fake, ceilings, sink
            finally:
                daemon.stop()


async def processes_phase(results: Results, args: Any, sink: BenchSink, fake: str) -> None:
    """The acknowledgement-only maximum again, of `serve --processes 2` (a daemon of its own,
    on its own embedded database), to set beside the one process's."""
    say("processes: serve --processes 2, as fast as wrk goes")
    daemon = Daemon(
        args.workdir / "data-2",
        {
            "BRIDGE_ADMIN_TOKEN": ADMIN,
            "BRIDGE_TWILIO_API_BASE": fake,
            "BRIDGE_PROCESSES": "2",
            "BRIDGE_LOG_FORMAT": "json",
        },
    )
    daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
    daemon.start()
    try:
        await daemon.wait_ready()
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            tenant = await provision(Api(session, daemon.internal + "/api/v1"), sink)
        bodies = Bodies(args.workdir, tenant.webhook_url)
        bodies.made = 20_000_000
        await asyncio.to_thread(
            wrk, "bridge", tenant.webhook_url, bodies.file(20_000), rate=0, seconds=5
        )
        await sink.quiet(1.0, within=120)
        results.two_processes = await asyncio.to_thread(
            wrk,
            "bridge",
            tenant.webhook_url,
            bodies.file(int(args.seconds * 8_000)),
            rate=0,
            seconds=args.seconds,
        )
        say(f"  two processes: {results.two_processes.rate:,.0f}/s")
        await sink.quiet(1.0, within=120)
    finally:
        daemon.stop()


async def main_async(args: Any) -> Results:
    results = Results()
    if args.only & {"inbound", "sustained", "e2e", "outbound", "shaping", "processes"}:
        await loaded_phases(results, args)
    if "routing" in args.only:
        say("routing: one decision against 10, 1,000 and 100,000 rules")
        results.routing = await asyncio.to_thread(routing.measure_all)
        for count, (cold, hot, _, mib) in results.routing.items():
            say(f"  {count:>7,} rules: {cold:.2f} us ({hot:.2f} us hot), index {mib:.1f} MiB")
    if "sip" in args.only:
        # Its own daemon, fake and SIPp phone, once the other phases have let the machine go.
        results.sip = await sip.sip_phase(args.workdir / "sip")
    return results


async def loaded_phases(results: Results, args: Any) -> None:
    """The phases that need the processes: the daemon, the fake Twilio, the bare handler."""
    async with stack(args.workdir) as (daemon, fake, ceilings, sink):
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            tenant = await provision(Api(session, daemon.internal + "/api/v1"), sink)
        if "inbound" in args.only:
            await inbound_phase(results, daemon, tenant, sink, ceilings, args)
        if "sustained" in args.only and results.bridge_max is not None:
            await sustained_phase(results, tenant, sink, args)
        if "e2e" in args.only:
            await e2e_phase(results, tenant, sink, 200, args.seconds * 200)
        if "outbound" in args.only:
            await outbound_phase(results, daemon, tenant, fake, args)
        if "shaping" in args.only:
            await shaping_phase(results, daemon, tenant, fake)
        if "processes" in args.only:
            daemon.stop()  # the two processes get the machine to themselves
            await processes_phase(results, args, sink, fake)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each measured run")
    parser.add_argument("--outbound", type=int, default=8_000, help="texts for the outbound run")
    parser.add_argument("--official", type=int, default=1_500, help="texts for the official client")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)}); "
        "the table and chart need all of them",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("make bench needs wrk: apt-get install wrk (Debian/Ubuntu)")
    args.only = set(args.only.split(","))
    if args.only - set(PHASES):
        sys.exit(f"unknown phase in --only: {', '.join(sorted(args.only - set(PHASES)))}")
    args.workdir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
    try:
        # The PBX sink runs in this process, beside the daemon on the same cores: on uvloop,
        # as the daemon runs, it takes less of them per event.
        results = uvloop.run(main_async(args))
    finally:
        if args.keep:
            say(f"work directory kept: {args.workdir}")
        else:
            shutil.rmtree(args.workdir, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(asdict(results), indent=2, default=str))
    if args.only != set(PHASES):
        return
    chart(results, OUT / "bench.png")
    say("")
    say(table(results))
    say(f"\nchart: {OUT / 'bench.png'}")


if __name__ == "__main__":
    main()
