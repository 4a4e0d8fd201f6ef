"""Twilio answers 429 (with and without Retry-After), 5xx (also after creating the message) or
slowly to 30 % of its requests while the sends pour in, then recovers: every send reaches a
final status, none is created twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp

from bridge.config import Settings
from bridge.fake_twilio import FakeConfig, running_fake_twilio
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.faults.harness import provision, report, running_bridge, send_text, settle
from tests.pg import rows
from tests.sink import running_sink
from tests.waiting import eventually

SENDERS = 12
PER_SENDER = 20
KINDS = ["429", "429-no-retry-after", "500", "503", "500-after-create", "slow"]
FINAL = ("delivered", "undelivered", "failed")


async def fake_control(session: aiohttp.ClientSession, base: str, path: str, body: Any) -> Any:
    """Steer the fake through its control API, as any client of it would."""
    async with session.post(f"{base}/_fake{path}", json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json()


async def test_every_send_completes_once_through_a_misbehaving_twilio(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    # A "slow" answer still comes within the bridge's Twilio timeout: slow, not lost. The
    # unknowable outcome is a 5xx, above all one given after the message was created.
    config = FakeConfig(slow_delay=0.5, retry_after=1)
    async with (
        running_fake_twilio(config, accounts=[(sid, token)]) as fake,
        running_sink(factories.hex32()) as sink,
        running_bridge(settings, runtime_secrets, twilio_api_base=fake.base_url) as bridge,
        aiohttp.ClientSession() as session,
    ):
        tenant = await provision(
            bridge.api, sink, account_sid=sid, auth_token=token, senders=SENDERS
        )
        # One of each kind first, so every kind is certainly met, then 30 % of the creates,
        # and of the lists and fetches the bridge makes to find out what became of a send.
        pending = await fake_control(
            session,
            fake.base_url,
            "/faults",
            {
                "next": [{"kind": kind, "count": 1} for kind in KINDS],
                "random": {
                    "probability": 0.3,
                    "kinds": KINDS,
                    "seed": 20261123,
                    "operations": ["create", "list", "fetch"],
                },
            },
        )
        assert pending == {"pending": len(KINDS)}
        bodies = [f"send {i}" for i in range(SENDERS * PER_SENDER)]
        for i, body in enumerate(bodies):
            extension = tenant.extensions[i % SENDERS]
            assert await send_text(session, bridge.api, tenant, extension, body) == 202

        # Faults last for as many requests as there are texts (each needs at least one). Left
        # on for good, some text's run of bad luck (0.3ⁿ) would meet backoff doubling up to a
        # minute, and the test's time limit rather than the bridge would decide the outcome.
        await fake.wait_for(lambda: len(fake.state.requests) >= len(bodies), within=60)
        stormy = len(fake.state.requests)
        await fake_control(session, fake.base_url, "/faults", {"random": None})

        async def all_final() -> bool:
            found = await rows(
                bridge.dsn,
                "SELECT count(*) AS n FROM messages WHERE direction = 'outbound' "
                "AND status = ANY($1::text[])",
                list(FINAL),
            )
            return int(found[0]["n"]) == len(bodies)

        await eventually(all_final, within=100)
        outcome = await settle(bridge.dsn, fake, sink, set(), set(bodies))
        stored = await rows(
            bridge.dsn,
            "SELECT m.status, s.attempts FROM messages m JOIN sends s ON s.message_id = m.id",
        )
        faults = Counter(r.fault for r in fake.state.requests if r.fault is not None)
        operations = Counter(r.operation for r in fake.state.requests)
        total = len(fake.state.requests)
        faulty = sum(r.fault is not None for r in fake.state.requests[:stormy])

    statuses = Counter(r["status"] for r in stored)
    report(
        f"Twilio failing or slow for 30 % of its first {stormy} requests",
        twilio={
            "requests": total,
            "while faulty": stormy,
            "faulted": faulty,
            **{f"answered {kind}": faults[kind] for kind in KINDS},
            "creates": operations["create"],
            "lists": operations["list"],
        },
        outbound={
            **outcome.outbound_counts(),
            "tried more than once": sum(r["attempts"] > 1 for r in stored),
            **{status: n for status, n in statuses.items()},
        },
    )
    assert set(faults) == set(KINDS)
    assert faulty >= 0.2 * stormy, "about 30 % of requests misbehaved while faults were on"
    outcome.check()
    assert statuses == {"delivered": len(bodies)}, "every send reached Twilio's final status"
