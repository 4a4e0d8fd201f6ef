"""Two daemons on one database, both taking webhooks and sends and both running the workers: no
text is sent twice, no event is delivered twice, each sender's texts go out in order."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bridge.fake_twilio import FakeConfig, running_fake_twilio
from tests import factories
from tests.daemon import Daemon
from tests.faults.harness import (
    inbound_params,
    make_daemon,
    post_signed,
    provision,
    repeated,
    report,
    send_text,
    settle,
    sid_of,
)
from tests.pg import rows
from tests.sink import running_sink
from tests.waiting import eventually

INBOUND = 600
SENDERS, PER_SENDER = 8, 25
WORKERS = 8


def log_events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    """The daemon's JSON log lines called ``name``."""
    found = []
    for line in daemon.logs().splitlines():
        if f'"{name}"' in line:
            entry = json.loads(line)
            if entry.get("event") == name:
                found.append(entry)
    return found


async def test_two_daemons_share_the_work_and_do_nothing_twice(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    async with (
        running_fake_twilio(FakeConfig(latency=0.01), accounts=[(sid, token)]) as fake,
        running_sink(factories.hex32()) as sink,
        aiohttp.ClientSession() as session,
    ):
        # Debug logs name the process that acknowledged each delivery and created each send.
        pair = [
            make_daemon(tmp_path, name, db_dsn, fake.base_url, BRIDGE_LOG_LEVEL="debug")
            for name in ("a", "b")
        ]
        for daemon in pair:
            daemons.append(daemon)
            daemon.start()
        await asyncio.gather(*(d.wait_ready() for d in pair))
        apis = [d.internal + "/api/v1" for d in pair]
        tenant = await provision(apis[0], sink, account_sid=sid, auth_token=token, senders=SENDERS)
        hooks = [tenant.hook_at(d.env["BRIDGE_PUBLIC_BASE_URL"]) for d in pair]

        inbound_answers: Counter[int | None] = Counter()

        async def inbound(worker: int) -> None:
            for i in range(worker, INBOUND, WORKERS):
                params = inbound_params(tenant, i, f"+1555020{i % 30:04d}", f"in {i}")
                status = await post_signed(session, hooks[i % 2], params, tenant.auth_token)
                inbound_answers[status] += 1

        chains: dict[str, list[str]] = {}

        async def chain(s: int) -> None:
            # One sender's texts one after another, alternately through either daemon: the
            # order they were accepted in is the order they must reach Twilio in. The pause
            # lets the lease lapse in between, so the daemons contend for each text afresh
            # (under this inbound load 50 ms was not always enough: a lease still held when
            # the next text came took it too, and one daemon could keep every sender).
            extension = tenant.extensions[s]
            for n in range(PER_SENDER):
                body = f"{extension} #{n}"
                assert await send_text(session, apis[n % 2], tenant, extension, body) == 202
                chains.setdefault(tenant.numbers[s], []).append(body)
                await asyncio.sleep(0.2)

        await asyncio.gather(
            *(inbound(w) for w in range(WORKERS)), *(chain(s) for s in range(SENDERS))
        )
        assert inbound_answers == {200: INBOUND}
        acknowledged = {sid_of(i) for i in range(INBOUND)}
        sends = SENDERS * PER_SENDER

        async def all_final() -> bool:
            found = await rows(
                db_dsn,
                "SELECT count(*) AS n FROM messages WHERE direction = 'outbound' "
                "AND status = 'delivered'",
            )
            return int(found[0]["n"]) == sends

        await eventually(all_final, within=60)
        # Every event: the received ones and each outbound status change.
        expected_events = len(await rows(db_dsn, "SELECT id FROM events"))
        await sink.wait_for(lambda: len(set(sink.event_ids())) == expected_events, within=60)
        accepted = {body for bodies in chains.values() for body in bodies}
        outcome = await settle(db_dsn, fake, sink, acknowledged, accepted)
        created = sorted(
            (m for m in fake.state.messages.values() if m.direction != "inbound"),
            key=lambda m: m.seq,
        )

    acked_twice = repeated(sink.event_ids())
    # A redelivery is expected only when a POST outlived the delivery timeout: say which.
    timed_out = {
        entry["event_id"]
        for daemon in pair
        for entry in log_events(daemon, "delivery.retry")
        if "Timeout" in entry.get("error", "")
    }
    unexplained = sorted(set(acked_twice) - timed_out)
    by_process = {
        name: {
            "deliveries": len(log_events(daemon, "delivery.acknowledged")),
            "sends": len(log_events(daemon, "send.created")),
        }
        for name, daemon in zip("ab", pair, strict=True)
    }
    order = {number: [m.body for m in created if m.from_ == number] for number in tenant.numbers}
    report(
        "two daemons, one database",
        inbound=outcome.inbound_counts(),
        events={
            "acknowledged by the PBX": len(set(sink.event_ids())),
            "acknowledged twice": len(acked_twice),
            "of which after a timeout": len(set(acked_twice) & timed_out),
            "delivered by a": by_process["a"]["deliveries"],
            "by b": by_process["b"]["deliveries"],
        },
        outbound={
            **outcome.outbound_counts(),
            "sent by a": by_process["a"]["sends"],
            "by b": by_process["b"]["sends"],
            "senders out of order": sum(order[n] != chains[n] for n in chains),
        },
    )
    outcome.check()
    assert unexplained == [], f"delivered twice with no timeout to explain it: {unexplained}"
    assert order == chains, "each sender's texts reach Twilio in the order they were accepted"
    assert all(by_process[p]["deliveries"] and by_process[p]["sends"] for p in "ab"), (
        "both daemons took part",
        by_process,
    )
