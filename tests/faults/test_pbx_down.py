"""The PBX refuses, then is gone, under inbound load; when it is back it gets everything, each
conversation in the order its texts were stored, each event under one id."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bridge.config import Settings
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.daemon import free_port
from tests.faults.harness import (
    inbound_params,
    post_signed,
    provision,
    received,
    report,
    running_bridge,
    sid_of,
    until,
)
from tests.pg import rows
from tests.sink import Sink
from tests.waiting import eventually

CONVERSATIONS = 20
PER_CONVERSATION = 15
# Acknowledged webhooks at which the PBX starts answering 503, then disappears, then returns.
REFUSING_AT, GONE_AT, BACK_AT = 50, 130, 220


@dataclass
class PbxServer:
    """The sink on a fixed port, so that it can go away (connections refused) and come back."""

    sink: Sink
    port: int
    runner: web.AppRunner | None = None

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self.sink.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
        self.runner = None


async def test_a_pbx_that_was_down_gets_every_conversation_in_order(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    port = free_port()
    sink = Sink(factories.hex32(), url=f"http://127.0.0.1:{port}/events")
    pbx = PbxServer(sink, port)
    await pbx.up()
    try:
        async with (
            running_bridge(settings, runtime_secrets, db_pool_max=8) as bridge,
            aiohttp.ClientSession() as session,
        ):
            tenant = await provision(
                bridge.api, sink, account_sid=factories.account_sid(), auth_token=factories.hex32()
            )
            hook = tenant.hook_at(bridge.public_base)
            sent: dict[str, list[str]] = {}  # remote number → its MessageSids, in sending order
            acknowledged: list[str] = []

            async def conversation(c: int) -> None:
                remote = f"+1555010{c:04d}"
                for n in range(PER_CONVERSATION):
                    i = c * 1000 + n
                    params = inbound_params(tenant, i, remote, f"{remote} #{n}")
                    # One at a time, as one person texts: the stored order is the sent order.
                    status = await post_signed(session, hook, params, tenant.auth_token)
                    assert status == 200, status
                    sent.setdefault(remote, []).append(sid_of(i))
                    acknowledged.append(sid_of(i))
                    await asyncio.sleep(0.2)

            load = asyncio.gather(*(conversation(c) for c in range(CONVERSATIONS)))

            await until(lambda: len(acknowledged) >= REFUSING_AT, within=60)
            sink.down = True

            # Refusing until it has refused something, and the load has gone on meanwhile.
            def refused() -> bool:
                return any(d.answered == 503 for d in sink.attempts)

            await until(lambda: len(acknowledged) >= GONE_AT and refused(), within=60)
            await pbx.down()

            async def unreachable() -> bool:
                query = "SELECT 1 FROM events WHERE last_error LIKE '%Connect%' LIMIT 1"
                return bool(await rows(bridge.dsn, query))

            # Gone until the bridge has found it gone, not just until a timer ran out.
            await eventually(unreachable, within=30)
            await until(lambda: len(acknowledged) >= BACK_AT, within=60)
            sink.down = False
            await pbx.up()
            await load
            total = CONVERSATIONS * PER_CONVERSATION
            await sink.wait_for(lambda: len(received(sink)) == total, within=90)
            stored = await rows(
                bridge.dsn,
                "SELECT e.id, e.conversation, e.attempts, m.twilio_sid FROM events e "
                "JOIN messages m ON m.id = e.message_id WHERE e.type = 'message.received' "
                "ORDER BY e.seq",
            )
    finally:
        if pbx.runner is not None:
            await pbx.down()

    stored_order: dict[str, list[str]] = {}
    for r in stored:
        stored_order.setdefault(r["conversation"], []).append(r["id"])
    first_ack: dict[str, list[str]] = {}
    seen: set[str] = set()
    conversation_of = {r["id"]: r["conversation"] for r in stored}
    for d in sink.acknowledged:
        if d.event_id in conversation_of and d.event_id not in seen:
            seen.add(d.event_id)
            first_ack.setdefault(conversation_of[d.event_id], []).append(d.event_id)
    out_of_order = [c for c, ids in stored_order.items() if first_ack.get(c) != ids]
    by_sid = {r["twilio_sid"]: r["id"] for r in stored}
    ids_per_sid: dict[str, set[str]] = {}
    for d in sink.attempts:
        if d.body["type"] == "message.received":
            ids_per_sid.setdefault(d.body["message"]["twilio_sid"], set()).add(d.event_id)
    deliveries = received(sink)
    report(
        "PBX down under inbound load",
        inbound={
            "acknowledged": len(acknowledged),
            "stored": len(stored),
            "delivered": len(deliveries),
            "refused by the PBX (503)": sum(d.answered == 503 for d in sink.attempts),
            "retried by the bridge": sum(r["attempts"] > 1 for r in stored),
            "redelivered after an acknowledgement": sum(len(ds) - 1 for ds in deliveries.values()),
            "lost": len(set(acknowledged) - set(deliveries)),
            "duplicated": len(stored) - len(by_sid),
        },
        order={
            "conversations": len(stored_order),
            "out of order": len(out_of_order),
        },
    )
    assert sorted(by_sid) == sorted(acknowledged), "each acknowledged text stored once"
    assert set(deliveries) == set(acknowledged)
    assert all(len(ids) == 1 for ids in ids_per_sid.values()), "retries keep the event id"
    # Nothing went wrong on the bridge's side of an acknowledgement: nothing to repeat.
    assert all(len(ds) == 1 for ds in deliveries.values())
    assert all(d.signature_ok for d in sink.attempts)
    assert len(stored_order) == CONVERSATIONS and out_of_order == [], out_of_order
    # The stored order is the order each person texted in.
    for remote, sids in sent.items():
        key = f"{tenant.id}:{tenant.numbers[0]}:{remote}"
        assert [by_sid[s] for s in sids] == stored_order[key]
