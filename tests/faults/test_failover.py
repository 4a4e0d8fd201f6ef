"""A failover under load (design §13): while webhooks and sends flow, the primary dies as with
its machine (SIGKILL, then its address answers nothing at all) and its synchronous standby is
promoted. The bridge, given both hosts, answers only "done" or "try again" meanwhile, says it
is not ready, finds the new primary by itself, and loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest

from bridge.db.notify import APPLICATION as LISTENER_APPLICATION
from bridge.fake_twilio import FakeConfig, running_fake_twilio
from tests import factories
from tests.daemon import Daemon
from tests.faults.cluster import STANDBY_NAME, Pair, start_pair
from tests.faults.harness import Load, make_daemon, provision, report, settle, until
from tests.pg import rows
from tests.sink import running_sink
from tests.waiting import eventually

# Acknowledged webhooks that show the bridge is serving, before the failover and after it.
SERVING = 30
# Seconds each host gets to answer (the DSN's connect_timeout): the silent one costs this.
CONNECT_TIMEOUT = 2
# How long the primary stays dead before the standby is promoted (what a failover manager
# takes to decide, shortened): long enough to see what clients get once the dead primary has
# been found silent.
OUTAGE = 2.0 * CONNECT_TIMEOUT


@contextlib.contextmanager
def silent(port: int) -> Iterator[None]:
    """The dead primary's address from now on: connections are taken (the kernel completes
    the handshake into a backlog nobody accepts from) and never answered, as a machine that
    went away, or a network that broke, leaves them; nothing is refused."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 10
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            break
        except OSError:  # the killed postmaster's socket is not closed yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    sock.listen(4096)
    try:
        yield
    finally:
        sock.close()


async def synchronous(pair: Pair) -> bool:
    found = await rows(
        pair.primary.dsn, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
        STANDBY_NAME,
    )  # fmt: skip
    return bool(found) and found[0]["sync_state"] == "sync"


class Readiness:
    """GET /ready without pause; every answer with when it was asked and when it came."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[float, float, int | None]] = []
        self.stop = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            asked = time.monotonic()
            try:
                async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    status: int | None = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            self.answers.append((asked, time.monotonic(), status))
            await asyncio.sleep(0.05)

    def first(self, status: int, asked_after: float) -> float | None:
        """When the first answer ``status`` came to a question asked after ``asked_after``."""
        return next(
            (at for asked, at, s in self.answers if s == status and asked >= asked_after), None
        )

    def between(self, start: float, end: float) -> list[int | None]:
        """The answers to questions asked and answered within [start, end)."""
        return [s for asked, at, s in self.answers if start <= asked and at < end]


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: another pytest run makes its parent 0700 again, which
    # shuts the servers' own user out of their data directories.
    where = Path(tempfile.mkdtemp(prefix="bridge-failover-"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


async def test_the_bridge_follows_a_failover_to_a_synchronous_standby(
    tmp_path: Path, cluster_dir: Path, daemons: list[Daemon]
) -> None:
    pair = await asyncio.to_thread(start_pair, cluster_dir)
    try:
        await eventually(partial(synchronous, pair), within=30)
        await rows(pair.primary.dsn, "CREATE DATABASE bridge")
        dsn = pair.dsn("bridge")
        sid, token = factories.account_sid(), factories.hex32()
        async with (
            running_fake_twilio(FakeConfig(latency=0.02), accounts=[(sid, token)]) as fake,
            running_sink(factories.hex32()) as sink,
            aiohttp.ClientSession() as session,
        ):
            daemon = make_daemon(
                tmp_path, "data", f"{dsn}&connect_timeout={CONNECT_TIMEOUT}", fake.base_url
            )
            daemons.append(daemon)
            daemon.start()
            await daemon.wait_ready()
            api = daemon.internal + "/api/v1"
            tenant = await provision(api, sink, account_sid=sid, auth_token=token, senders=4)
            load = Load(tenant, daemon.env["BRIDGE_PUBLIC_BASE_URL"], api, conversations=40)
            traffic = asyncio.create_task(load.run(session, inbound=8, outbound=4, pause=0.02))
            readiness = Readiness(daemon.internal + "/ready")
            watching = asyncio.create_task(readiness.run(session))
            await until(partial(load.grew, load.counts(), acknowledged=SERVING, accepted=1), 60)

            before = load.counts()
            killed_at = time.monotonic()
            pair.primary.kill()
            with silent(pair.primary.port):
                await until(partial(load.grew, before, webhooks_failed=1, sends_failed=1), 30)
                await until(lambda: readiness.first(503, killed_at), 30)
                await asyncio.sleep(max(0.0, killed_at + OUTAGE - time.monotonic()))
                # From here on the standby takes writes (pg_ctl notices some time after).
                promoted_at = time.monotonic()
                await asyncio.to_thread(pair.standby.promote)

                await until(partial(load.grew, load.counts(), acknowledged=1, accepted=1), 60)
                serving_at = time.monotonic()
                await until(lambda: readiness.first(200, promoted_at), 30)

                async def listening() -> bool:
                    found = await rows(
                        pair.standby.dsn,
                        "SELECT 1 FROM pg_stat_activity WHERE application_name = $1",
                        LISTENER_APPLICATION,
                    )
                    return bool(found)

                await eventually(listening, within=30)
                listening_at = time.monotonic()
                await until(partial(load.grew, load.counts(), acknowledged=SERVING), 60)
            load.stop.set()
            readiness.stop.set()
            await asyncio.gather(traffic, watching)
            assert daemon.process is not None and daemon.process.poll() is None, "no restart"
            retried = await load.twilio_retries(session)
            outcome = await settle(dsn, fake, sink, load.acknowledged, load.accepted)
    finally:
        await asyncio.to_thread(pair.stop)

    ready_503 = readiness.between(killed_at, promoted_at).count(503)
    ready_back = readiness.first(200, promoted_at)
    assert ready_back is not None

    def others(answers: dict[int | None, int], ok: int) -> int:
        return sum(n for status, n in answers.items() if status not in (ok, 503))

    report(
        "failover to a synchronous standby under load",
        seconds={
            "primary dead before pg_ctl promote (ms)": round((promoted_at - killed_at) * 1000),
            "promote to the first acknowledged webhook and accepted send (ms)": round(
                (serving_at - promoted_at) * 1000
            ),
            "promote to /ready 200 (ms)": round((ready_back - promoted_at) * 1000),
            "promote to LISTEN on the new primary (ms)": round((listening_at - promoted_at) * 1000),
        },
        webhooks={
            "acknowledged (200)": load.webhook_answers[200],
            "refused (503)": load.webhook_answers[503],
            "other answers": others(load.webhook_answers, 200),
        },
        sends={
            "accepted (202)": load.send_answers[202],
            "refused (503)": load.send_answers[503],
            "other answers": others(load.send_answers, 202),
        },
        ready={"503 between kill and promote": ready_503},
        inbound={**outcome.inbound_counts(), "retried by Twilio": len(retried)},
        outbound=outcome.outbound_counts(),
    )
    assert set(load.webhook_answers) <= {200, 503}, load.webhook_answers
    assert set(load.send_answers) <= {202, 503}, load.send_answers
    outage = readiness.between(killed_at, promoted_at)
    assert outage and set(outage) == {503}, "not ready while no primary is reachable"
    outcome.check()
