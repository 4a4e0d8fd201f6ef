"""A sender's lease outlives a slow reconciliation: two processes never both send a text."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from bridge.config import Settings
from bridge.db.notify import Listener
from bridge.db.pool import Database
from bridge.metrics import Metrics
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.services.status import StatusService
from bridge.twilio.client import TwilioClient
from bridge.urls import PublicUrls
from bridge.workers.sender import SendWorker, stale_lease_seconds
from tests.web.bridge_env import Env
from tests.web.test_outbound import US_MOBILE, send, wait_status

TWILIO_TIMEOUT = 2.0
# Short enough that a reconciliation of five slow list pages outlasts it several times over.
STALE = 4.0
PAGE_DELAY = 1.5


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    # The two senders below are the only ones.
    return {"run_workers": False}


async def preload(env: Env, count: int) -> None:
    """Earlier texts from the same number to the same person, straight to Twilio's API: the
    reconciliation has to read every page of them (newest first) to look for its text."""
    url = f"{env.fake.account_url(env.account_sid)}/Messages.json"
    auth = {"Authorization": aiohttp.encode_basic_auth(env.account_sid, env.auth_token)}
    async with aiohttp.ClientSession(headers=auth) as session:

        async def one(i: int) -> None:
            data = {"To": US_MOBILE, "From": env.number, "Body": f"earlier {i}"}
            async with session.post(url, data=data) as response:
                assert response.status == 201, await response.text()

        for start in range(0, count, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))


def sender(
    db: Database,
    listener: Listener,
    session: aiohttp.ClientSession,
    env: Env,
    secrets: RuntimeSecrets,
) -> SendWorker:
    metrics = Metrics()
    return SendWorker(
        db,
        listener,
        TwilioClient(session, env.fake.base_url, total_timeout=TWILIO_TIMEOUT),
        secrets.box,
        StatusService(db, metrics),
        metrics,
        urls=PublicUrls(env.config["webhook_url"].split("/twilio/")[0]),
        twilio_timeout=TWILIO_TIMEOUT,
        max_leases=8,
        account_concurrency=8,
        poll_seconds=0.1,
        stale_seconds=STALE,
        beat_seconds=0.2,
    )


async def test_a_slow_reconciliation_keeps_its_lease_and_the_text_is_sent_once(
    env: Env, settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    await preload(env, 450)
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "just once"})
    assert reply.status == 202
    dsn = settings.database_url.get_secret_value()
    conn = await asyncpg.connect(dsn)
    try:
        # As after a crash between the mark and the request: the next attempt must look first.
        await conn.execute("UPDATE sends SET attempt_started_at = now()")
    finally:
        await conn.close()
    await env.fake_control(
        "POST",
        "/faults",
        {"next": [{"kind": "slow", "delay": PAGE_DELAY, "count": 50, "operations": ["list"]}]},
    )
    db = await Database.connect(dsn, min_size=1, max_size=8, slow_query_ms=10_000)
    listeners = [Listener(dsn), Listener(dsn)]
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for listener in listeners:
                await listener.start()
                worker = sender(db, listener, session, env, runtime_secrets)
                tasks.append(asyncio.create_task(worker.run()))
            started = time.monotonic()
            found = await wait_status(
                env, reply.body["id"], "queued", "sent", "delivered", within=60
            )
            took = time.monotonic() - started
            # Time enough for the other sender to have taken the lease, had it gone stale.
            await asyncio.sleep(STALE + 2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in listeners:
            await listener.close()
        await db.close()
    lists = (await env.fake_control("GET", "/requests?operation=list"))["requests"]
    creates = [m for m in await env.fake_messages() if m["body"] == "just once"]
    print(
        f"reconciliation read {len(lists)} pages; sent after {took:.1f} s; creates {len(creates)}"
    )
    assert took > STALE + 2, "the reconciliation was meant to outlast the stale time"
    assert len(creates) == 1
    assert found["twilio_sid"] == creates[0]["sid"]


def test_the_default_stale_time_outlasts_a_create_and_a_beat() -> None:
    for timeout in (1.0, 15.0, 120.0):
        stale = stale_lease_seconds(timeout)
        assert stale >= 60
        assert stale > timeout + 5 + 5  # a create, a beat interval, the margin
