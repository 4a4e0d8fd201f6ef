"""Outbound under pressure: timeouts, two processes on one queue, pacing per sender."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from tests.pg import rows
from tests.web.bridge_env import Env
from tests.web.test_outbound import US_MOBILE, send, wait_status


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return {"twilio_timeout": 0.5, "worker_poll_seconds": 0.1}


async def test_a_timeout_after_sending_never_yields_a_second_create(env: Env) -> None:
    await env.fake_control("PATCH", "/config", {"slow_delay": 1.5})
    reply = await send(env, {"from_extension": "101", "to": "+15005550504", "body": "slow"})
    found = await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=20)
    [created] = await env.fake_messages()
    assert found["twilio_sid"] == created["sid"]
    creates = (await env.fake_control("GET", "/requests?operation=create"))["requests"]
    assert len(creates) == 1


async def numbered_tenant(env: Env, senders: int) -> list[str]:
    """Give the configuration `senders` unpaced numbers, one per extension 2xx."""
    numbers = [
        f"+1555{7000000 + i + 1000 * (hash(env.tenant_id) % 900):07d}" for i in range(senders)
    ]
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    patched = await env.api.patch(
        path, {"numbers": [{"number": n, "mps": 10_000} for n in [env.number, *numbers]]}
    )
    assert patched.status == 200, patched.body
    extensions = [{"extension": "101", "dids": [env.number]}] + [
        {"extension": f"2{i:02d}", "dids": [n], "default_did": n} for i, n in enumerate(numbers)
    ]
    assert (await env.api.put(f"/tenants/{env.tenant_id}/extensions", extensions)).status == 200
    return [e["extension"] for e in extensions[1:]]


# Enough for both instances to take texts of the same senders at once (the figure it prints is
# no benchmark: `make bench` measures throughput).
TEXTS = 400


async def test_two_instances_share_400_texts_each_created_once(
    env: Env, settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    extensions = await numbered_tenant(env, 20)
    second = create_app(
        settings.model_copy(
            update={
                "run_workers": True,
                "twilio_api_base": env.fake.base_url,
                "public_base_url": env.config["webhook_url"].split("/twilio/")[0],
                "worker_poll_seconds": 0.1,
            }
        ),
        runtime_secrets,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(second, host="127.0.0.1"))
    await client.start_server()
    try:
        started = time.monotonic()
        ids: list[str] = []
        for start in range(0, TEXTS, 100):
            replies = await asyncio.gather(
                *(
                    send(
                        env,
                        {
                            "from_extension": extensions[i % len(extensions)],
                            "to": US_MOBILE,
                            "body": f"n{i}",
                        },
                    )
                    for i in range(start, start + 100)
                )
            )
            assert [r.status for r in replies] == [202] * 100
            ids += [r.body["id"] for r in replies]
        accepted = time.monotonic() - started

        await env.wait_fake_messages(TEXTS, within=90)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)
        created = await env.fake_messages()
        bodies = [m["body"] for m in created]
        assert len(bodies) == len(set(bodies)) == TEXTS, "each text created exactly once"
        queued = await rows(
            settings.database_url.get_secret_value(),
            "SELECT s.sender_key, m.body FROM sends s JOIN messages m ON m.id = s.message_id "
            "ORDER BY s.seq",
        )
        created_at = {body: i for i, body in enumerate(bodies)}
        for sender in {r["sender_key"] for r in queued}:
            order = [created_at[r["body"]] for r in queued if r["sender_key"] == sender]
            assert order == sorted(order), "one sender's texts reach Twilio in queue order"
        print(
            f"\n{TEXTS} texts: accepted in {accepted:.2f}s, all created at the fake after "
            f"{elapsed:.2f}s ({TEXTS / elapsed:.0f}/s end to end, two processes)"
        )
    finally:
        await client.close()


async def test_pacing_holds_a_long_code_to_one_segment_per_second(env: Env) -> None:
    for i in range(3):
        reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": f"paced {i}"})
        assert reply.status == 202, reply.body
    await env.wait_fake_messages(3)
    # When Twilio received each create (the fake's request log, sub-second): what pacing
    # governs. The times the answers were recorded also carry the batching of the records.
    creates = (await env.fake_control("GET", "/requests?operation=create"))["requests"]
    moments = sorted(float(r["received_at"]) for r in creates if r["status"] == 201)
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    # An order of magnitude only: the benchmark measures pacing accuracy.
    assert len(gaps) == 2 and all(0.8 < gap < 2.5 for gap in gaps), gaps


async def test_a_fast_sender_overlaps_recipients_but_never_one_conversation(env: Env) -> None:
    # Each create takes 0.3 s to answer. One at a time, 8 texts would need 2.4 s; a fast sender
    # overlaps texts to different recipients, while one recipient's texts wait for each other.
    [extension] = await numbered_tenant(env, 1)
    await env.fake_control("PATCH", "/config", {"latency": 0.3})
    others = [f"+1555765{4400 + i:04d}" for i in range(8)]
    for i, to in enumerate(others):
        assert (
            await send(env, {"from_extension": extension, "to": to, "body": f"o{i}"})
        ).status == 202
    for i in range(3):
        reply = await send(env, {"from_extension": extension, "to": US_MOBILE, "body": f"c{i}"})
        assert reply.status == 202
    await env.wait_fake_messages(11, within=30)
    creates = (await env.fake_control("GET", "/requests?operation=create"))["requests"]
    arrived = {
        next(v for k, v in r["form"] if k == "Body"): float(r["received_at"]) for r in creates
    }
    spread = max(arrived[f"o{i}"] for i in range(8)) - min(arrived[f"o{i}"] for i in range(8))
    assert spread < 1.2, "texts to different recipients overlapped"
    conversation = [arrived[f"c{i}"] for i in range(3)]
    assert conversation == sorted(conversation), "one recipient's texts in order"
    gaps = [b - a for a, b in itertools.pairwise(conversation)]
    assert all(gap >= 0.3 for gap in gaps), f"each waited for the one before: {gaps}"


async def test_a_reconciliation_finds_its_text_behind_a_busy_recipients_others(
    env: Env,
) -> None:
    # Twilio creates the first text but answers 500, and the lists that would find it fail
    # until another sender has sent 250 texts to the same person: the text is no longer in
    # the newest 200 messages to that person, only among the newest from its own sender.
    first, other = await numbered_tenant(env, 2)
    await env.fake_control(
        "POST",
        "/faults",
        {
            "next": [
                {"kind": "500-after-create", "count": 1},
                {"kind": "503", "count": 10_000, "operations": ["list"]},
            ]
        },
    )
    reply = await send(env, {"from_extension": first, "to": US_MOBILE, "body": "the one"})
    await env.wait_fake_messages(1)
    for i in range(250):
        assert (
            await send(env, {"from_extension": other, "to": US_MOBILE, "body": f"b{i}"})
        ).status == 202
    await env.wait_fake_messages(251, within=60)
    await env.fake_control("DELETE", "/faults")
    found = await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=90)
    creates = [m for m in await env.fake_messages() if m["body"] == "the one"]
    assert len(creates) == 1, "reconciled, not sent again"
    assert found["twilio_sid"] == creates[0]["sid"]
