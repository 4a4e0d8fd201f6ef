"""kill -9 in the middle of inbound and outbound traffic, twice: nothing acknowledged is lost,
nothing is done twice."""

from __future__ import annotations

import asyncio
import signal
from functools import partial
from pathlib import Path

import aiohttp

from bridge.fake_twilio import FakeConfig, running_fake_twilio
from tests import factories
from tests.daemon import Daemon
from tests.faults.harness import Load, make_daemon, provision, report, settle, until
from tests.sink import running_sink

KILLS = 2
# Acknowledged webhooks and accepted sends before each kill, and after the last restart.
BETWEEN = 60


async def test_kill_9_under_load_loses_and_repeats_nothing(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    # A little latency keeps creates in flight, so a kill can land between "attempt recorded"
    # and "Twilio answered": the restarted daemon must then look before it sends again.
    async with (
        running_fake_twilio(FakeConfig(latency=0.03), accounts=[(sid, token)]) as fake,
        running_sink(factories.hex32()) as sink,
        aiohttp.ClientSession() as session,
    ):
        daemon = make_daemon(tmp_path, "data", db_dsn, fake.base_url)
        daemons.append(daemon)
        daemon.start()
        await daemon.wait_ready()
        api = daemon.internal + "/api/v1"
        tenant = await provision(api, sink, account_sid=sid, auth_token=token)
        load = Load(tenant, daemon.env["BRIDGE_PUBLIC_BASE_URL"], api)
        traffic = asyncio.create_task(load.run(session, inbound=8, outbound=8, pause=0.05))
        for _ in range(KILLS):
            before = load.counts()
            await until(partial(load.grew, before, acknowledged=BETWEEN, accepted=BETWEEN), 60)
            before = load.counts()
            daemon.signal(signal.SIGKILL)
            assert await asyncio.to_thread(daemon.wait, 10) == -signal.SIGKILL
            # Down until both kinds of client felt it, not just until a timer ran out.
            await until(partial(load.grew, before, webhooks_failed=1, sends_failed=1), within=10)
            daemon.start()
            await daemon.wait_ready()
        before = load.counts()
        await until(partial(load.grew, before, acknowledged=BETWEEN, accepted=BETWEEN), 60)
        load.stop.set()
        await traffic
        retried = await load.twilio_retries(session)
        repeats = await load.twilio_repeats(session, 20)
        outcome = await settle(db_dsn, fake, sink, load.acknowledged, load.accepted)
        reconciling = sum(r.operation == "list" for r in fake.state.requests)

    report(
        f"kill -9 under load, {KILLS}x",
        inbound={
            **outcome.inbound_counts(),
            "retried by Twilio after no answer": len(retried),
            "repeated by Twilio after a 200": repeats,
        },
        outbound={
            **outcome.outbound_counts(),
            "unanswered": len(load.unanswered),
            "reconciling lists": reconciling,
        },
    )
    assert retried, "the kills cut webhooks off: Twilio had to retry them"
    outcome.check()
    assert set(outcome.stored_in) == load.acknowledged, "all were acknowledged in the end"
