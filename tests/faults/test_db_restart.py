"""PostgreSQL restarted again and again under the daemon's inbound and outbound load: it answers
only "done" or "try again" (never a 500), recovers by itself, and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from functools import partial
from pathlib import Path

import aiohttp

from bridge.fake_twilio import FakeConfig, running_fake_twilio
from tests import factories
from tests.daemon import Daemon
from tests.faults.harness import Load, make_daemon, provision, report, settle, until
from tests.sink import running_sink

CYCLES = 3
# Between outages: this many new acknowledgements show the daemon has recovered.
RECOVERED = 30
SERVER = """
import sys
from pathlib import Path
from bridge.db.embedded import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[2]))
dsn = server.start()
if sys.argv[1] == "stop":
    server.stop()
print(dsn)
"""


def server(action: str, where: Path) -> str:
    """Start (or join) / stop a PostgreSQL of the test's own, from a separate process."""
    done = subprocess.run(
        [sys.executable, "-c", SERVER, action, str(where)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


async def test_the_daemon_rides_out_database_restarts_under_load(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    pg = tmp_path / "pg"
    dsn = await asyncio.to_thread(server, "start", pg)
    sid, token = factories.account_sid(), factories.hex32()
    try:
        async with (
            running_fake_twilio(FakeConfig(latency=0.02), accounts=[(sid, token)]) as fake,
            running_sink(factories.hex32()) as sink,
            aiohttp.ClientSession() as session,
        ):
            daemon = make_daemon(tmp_path, "data", dsn, fake.base_url)
            daemons.append(daemon)
            daemon.start()
            await daemon.wait_ready()
            api = daemon.internal + "/api/v1"
            tenant = await provision(api, sink, account_sid=sid, auth_token=token, senders=4)
            load = Load(tenant, daemon.env["BRIDGE_PUBLIC_BASE_URL"], api, conversations=40)
            traffic = asyncio.create_task(load.run(session, inbound=8, outbound=4, pause=0.02))
            refused_per_outage = []
            for _ in range(CYCLES):
                await until(partial(load.grew, load.counts(), acknowledged=RECOVERED), 60)
                before = load.counts()
                await asyncio.to_thread(server, "stop", pg)
                # Down until the daemon said "try again" to both kinds of client.
                await until(partial(load.grew, before, webhooks_failed=1, sends_failed=1), 30)
                await asyncio.to_thread(server, "start", pg)
                refused_per_outage.append((load.counts() - before)["webhooks_failed"])
            await until(partial(load.grew, load.counts(), acknowledged=RECOVERED), 60)
            load.stop.set()
            await traffic
            assert daemon.process is not None and daemon.process.poll() is None, "no restart"
            retried = await load.twilio_retries(session)
            outcome = await settle(dsn, fake, sink, load.acknowledged, load.accepted)
            async with session.get(daemon.internal + "/ready") as ready:
                ready_status = ready.status
    finally:
        await asyncio.to_thread(server, "stop", pg)

    def others(answers: dict[int | None, int], ok: int) -> int:
        return sum(n for status, n in answers.items() if status not in (ok, 503))

    report(
        f"PostgreSQL restarted {CYCLES}x under load",
        webhooks={
            "acknowledged (200)": load.webhook_answers[200],
            "refused (503)": load.webhook_answers[503],
            "fewest refused in one outage": min(refused_per_outage),
            "other answers": others(load.webhook_answers, 200),
        },
        sends={
            "accepted (202)": load.send_answers[202],
            "refused (503)": load.send_answers[503],
            "other answers": others(load.send_answers, 202),
        },
        inbound={**outcome.inbound_counts(), "retried by Twilio": len(retried)},
        outbound=outcome.outbound_counts(),
    )
    assert set(load.webhook_answers) <= {200, 503}, load.webhook_answers
    assert set(load.send_answers) <= {202, 503}, load.send_answers
    outcome.check()
    assert ready_status == 200
