"""Every status callback lost on its way (the proxy in front of the bridge was down): Twilio
never sends one again, and each text still reaches its final status, because the bridge asks
Twilio about texts whose status stood still."""

from __future__ import annotations

import re
from collections import Counter

import aiohttp

from bridge.config import Settings
from bridge.fake_twilio import FakeConfig, running_fake_twilio
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.faults.harness import provision, report, running_bridge, send_text
from tests.pg import rows
from tests.sink import running_sink
from tests.waiting import eventually

SENDERS = 6
PER_SENDER = 6
# Where each text goes decides how it ends at the fake (its magic numbers), and so which
# callbacks it would have sent: sent → delivered, sent → undelivered, failed.
ENDINGS = {
    "+15557654321": ("delivered", None, 2),
    "+15005553003": ("undelivered", 30003, 2),
    "+15005553001": ("failed", 30001, 1),
}
FINAL = [status for status, _, _ in ENDINGS.values()]


async def test_each_text_reaches_its_final_status_with_every_callback_lost(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    async with (
        running_fake_twilio(FakeConfig(callback_delay=0.2), accounts=[(sid, token)]) as fake,
        running_sink(factories.hex32()) as sink,
        running_bridge(
            settings,
            runtime_secrets,
            twilio_api_base=fake.base_url,
            # Minutes in production; fractions of a second keep the suite quick.
            status_poll_after_seconds=0.3,
            status_poll_max_interval_seconds=1.0,
        ) as bridge,
        aiohttp.ClientSession() as session,
    ):
        tenant = await provision(
            bridge.api, sink, account_sid=sid, auth_token=token, senders=SENDERS
        )
        async with session.patch(
            f"{fake.base_url}/_fake/config", json={"drop_callbacks": True}
        ) as r:
            assert r.status == 200, await r.text()
        destinations = list(ENDINGS)
        sent: dict[str, str] = {}
        for i in range(SENDERS * PER_SENDER):
            body, to = f"text {i}", destinations[i % len(destinations)]
            extension = tenant.extensions[i % SENDERS]
            assert await send_text(session, bridge.api, tenant, extension, body, to=to) == 202
            sent[body] = to

        async def all_final() -> bool:
            found = await rows(
                bridge.dsn,
                "SELECT count(*) AS n FROM messages WHERE direction = 'outbound' "
                "AND status = ANY($1::text[])",
                FINAL,
            )
            return int(found[0]["n"]) == len(sent)

        await eventually(all_final, within=60)

        def told_final() -> set[str]:
            return {
                d.body["message"]["body"]
                for d in sink.acknowledged
                if d.body["type"] == "message.status" and d.body["message"]["status"] in FINAL
            }

        await sink.wait_for(lambda: told_final() == set(sent), within=30)
        stored = await rows(
            bridge.dsn,
            "SELECT m.body, m.status, m.error_code, array_agg(h.status ORDER BY h.id) AS history"
            " FROM messages m JOIN message_status_history h ON h.message_id = m.id"
            " WHERE m.direction = 'outbound' GROUP BY m.id",
        )
        async with session.get(bridge.internal + "/metrics") as r:
            metrics = await r.text()
        polls = {
            m["outcome"]: float(m["n"])
            for m in re.finditer(
                r'bridge_status_polls_total\{outcome="(?P<outcome>\w+)"\} (?P<n>\S+)', metrics
            )
        }
        callbacks = fake.state.callbacks()
        dropped = fake.state.dropped_callbacks
        fetches = sum(r.operation == "fetch" for r in fake.state.requests)

    statuses = Counter(r["status"] for r in stored)
    report(
        "Every status callback lost",
        twilio={"texts": len(sent), "callbacks dropped": dropped, "fetches": fetches},
        bridge={**{f"polls {k}": int(v) for k, v in polls.items()}, **statuses},
    )
    assert callbacks == [], "no callback reached the bridge"
    assert dropped == sum(ENDINGS[to][2] for to in sent.values())
    for r in stored:
        status, code, _ = ENDINGS[sent[r["body"]]]
        assert (r["status"], r["error_code"]) == (status, code), r["body"]
        assert r["history"][-1] == status, "the final status went through the one status rule"
    assert polls.get("final") == len(sent), "each text's final status came from a poll"
