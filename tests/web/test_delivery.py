"""Delivery to the PBX: retries, order per conversation, the SSE stream, status callbacks."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from bridge.config import Settings
from bridge.db import events as events_repo
from bridge.models import EventId, TenantId
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.pg import rows
from tests.waiting import eventually
from tests.web.bridge_env import Env
from tests.web.conftest import SecretWatch


async def test_failed_deliveries_are_retried_in_order_with_the_same_event_id(env: Env) -> None:
    env.sink.fail_next = 3
    for i in range(4):
        result = await env.text_in(f"message {i}")
        assert result.webhook.answer.status == 200
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 4, within=30)
    bodies = [d.body["message"]["body"] for d in env.sink.acknowledged]
    assert bodies == [f"message {i}" for i in range(4)]
    failed_ids = [d.event_id for d in env.sink.attempts if d.answered != 200]
    assert len(failed_ids) == 3
    assert set(failed_ids) == {env.sink.acknowledged[0].event_id}, "the head is retried, alone"
    assert all(d.signature_ok for d in env.sink.attempts)


async def test_a_fresh_text_is_claimed_as_it_is_stored(env: Env, settings: Settings) -> None:
    """The process that stores a text delivers it without a claim query: its event is
    claimed in the transaction that queued it (the same now()), and acknowledged."""
    await env.text_in("fresh")
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    [row] = await rows(
        settings.database_url.get_secret_value(),
        "SELECT attempts, heartbeat_at = created_at AS at_insert, claimed_by, delivery_status "
        "FROM events",
    )
    assert dict(row) == {
        "attempts": 1,
        "at_insert": True,
        "claimed_by": None,
        "delivery_status": "delivered",
    }


async def test_a_new_delivery_secret_signs_the_very_next_delivery(
    env: Env, secret_watch: SecretWatch
) -> None:
    await env.text_in("before")
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    env.sink.secret = factories.hex32()
    secret_watch.seen.add(env.sink.secret)
    answer = await env.api.put(
        f"/tenants/{env.tenant_id}/delivery", {"url": env.sink.url, "secret": env.sink.secret}
    )
    assert answer.status == 200
    await env.text_in("after")
    await env.sink.wait_for(lambda: len(env.sink.attempts) == 2)
    assert [d.signature_ok for d in env.sink.attempts] == [True, True]


async def test_a_pbx_that_is_down_gets_everything_later(env: Env) -> None:
    env.sink.down = True
    senders = ["+15550000001", "+15550000002"]
    for i in range(6):
        await env.text_in(f"m{i}", from_=senders[i % 2])
    await env.sink.wait_for(lambda: len(env.sink.attempts) >= 2, within=10)
    env.sink.down = False
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 6, within=30)
    for sender in senders:
        thread = [
            d.body["message"]["body"]
            for d in env.sink.acknowledged
            if d.body["message"]["from"] == sender
        ]
        assert thread == sorted(thread)
    assert len(set(env.sink.event_ids())) == 6


async def test_events_wait_for_a_delivery_target(env: Env, settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute("DELETE FROM delivery_targets")
        await env.text_in("queued")
        await asyncio.sleep(0.6)
        assert env.sink.attempts == []
        status = await conn.fetchval("SELECT delivery_status FROM events")
        assert status == "pending"
    finally:
        await conn.close()
    await env.api.put(
        f"/tenants/{env.tenant_id}/delivery", {"url": env.sink.url, "secret": env.sink.secret}
    )
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)


async def test_events_stream_as_server_sent_events_and_resume(env: Env) -> None:
    url = env.api.client.make_url(f"/api/v1/tenants/{env.tenant_id}/events")
    headers = {"Authorization": f"Bearer {env.api.token}"}
    seen: list[tuple[str, str, dict[str, Any]]] = []

    async def read(limit: int, extra: dict[str, str]) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={**headers, **extra}) as response,
        ):
            assert response.headers["Content-Type"] == "text/event-stream"
            event: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "id" in event:
                        seen.append((event["id"], event["event"], json.loads(event["data"])))
                        if len(seen) >= limit:
                            return
                    event = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    event[key] = value

    reader = asyncio.create_task(read(2, {}))
    await asyncio.sleep(0.3)
    await env.text_in("first")
    await env.text_in("second")
    await asyncio.wait_for(reader, 10)
    assert [(kind, data["message"]["body"]) for _, kind, data in seen] == [
        ("message.received", "first"),
        ("message.received", "second"),
    ]
    assert all(event_id == data["id"] for event_id, _, data in seen)
    first_id = seen[0][0]
    seen.clear()
    await asyncio.wait_for(read(1, {"Last-Event-ID": first_id}), 10)
    assert seen[0][2]["message"]["body"] == "second"
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 2)
    assert sorted(env.sink.event_ids()) == sorted([first_id, seen[0][0]])


async def read_events(
    env: Env, count: int, headers: dict[str, str] | None = None, query: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` events of a stream: (id, data)."""
    url = env.api.client.make_url(f"/api/v1/tenants/{env.tenant_id}/events{query}")
    sent = {"Authorization": f"Bearer {env.api.token}", **(headers or {})}
    found: list[tuple[str, dict[str, Any]]] = []
    async with aiohttp.ClientSession() as session, session.get(url, headers=sent) as response:
        assert response.status == 200, await response.text()
        event: dict[str, str] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith(("id: ", "data: ")):
                key, _, value = line.partition(": ")
                event[key] = value
            elif not line and "id" in event:
                found.append((event["id"], json.loads(event["data"])))
                if len(found) == count:
                    return found
                event = {}
    return found


async def test_the_stream_replays_from_the_first_event_on_request(env: Env) -> None:
    for body in ("one", "two", "three"):
        await env.text_in(body)
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 3)

    def bodies(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
        return [data["message"]["body"] for _, data in events]

    replayed = await asyncio.wait_for(read_events(env, 3, {"Last-Event-ID": "0"}), 10)
    assert bodies(replayed) == ["one", "two", "three"]
    assert [event_id for event_id, _ in replayed] == env.sink.event_ids()
    # For a browser's first EventSource connection, which cannot set the header.
    by_query = await asyncio.wait_for(read_events(env, 3, query="?last_event_id=0"), 10)
    assert by_query == replayed
    # Resuming by id is unchanged; the header wins over the query.
    after_first = await asyncio.wait_for(
        read_events(env, 2, {"Last-Event-ID": replayed[0][0]}, "?last_event_id=0"), 10
    )
    assert bodies(after_first) == ["two", "three"]
    # An id the bridge cannot place: from the first rather than losing what came since.
    unknown = await asyncio.wait_for(read_events(env, 3, {"Last-Event-ID": "evt_unknown"}), 10)
    assert unknown == replayed
    too_long = await env.api.get(
        f"/tenants/{env.tenant_id}/events", headers={"Last-Event-ID": "x" * 101}
    )
    assert too_long.status == 422
    assert too_long.body["error"]["details"][0]["field"] == "Last-Event-ID"


async def test_another_tenant_cannot_stream_these_events(env: Env) -> None:
    other = await env.api.post("/tenants", {"name": "Other"})
    token = (await env.api.post(f"/tenants/{other.body['id']}/tokens", {})).body["token"]
    reply = await env.api.get(f"/tenants/{env.tenant_id}/events", token=token)
    assert reply.status == 404


def status_params(env: Env, sid: str, status: str, code: str | None = None) -> dict[str, str]:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": env.account_sid,
        "From": env.number,
        "To": "+15557654321",
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
    }
    if code:
        params["ErrorCode"] = code
    return params


async def post_status(env: Env, params: dict[str, str]) -> int:
    url = env.config["status_callback_url"]
    signature = RequestValidator(env.auth_token).compute_signature(url, params)
    status, _, _ = await env.post_public(
        url,
        urlencode(params),
        {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    return status


async def insert_outbound(settings: Settings, env: Env, sid: str) -> str:
    """An outbound message as the sender records it once Twilio accepted it."""
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        message_id = "msg_test_" + sid[-8:]
        await conn.execute(
            "INSERT INTO messages (id, tenant_id, config_id, direction, status, status_rank, "
            "from_number, to_number, body, from_extension, twilio_sid) "
            "VALUES ($1, $2, $3, 'outbound', 'queued', 1, $4, '+15557654321', 'hi', '101', $5)",
            message_id,
            env.tenant_id,
            env.config["id"],
            env.number,
            sid,
        )
    finally:
        await conn.close()
    return message_id


async def test_status_never_moves_backwards(env: Env, settings: Settings) -> None:
    sid = "SM" + factories.hex32()
    message_id = await insert_outbound(settings, env, sid)
    for status in ("delivered", "sent", "sending", "delivered"):
        assert await post_status(env, status_params(env, sid, status)) == 204
    message = (await env.api.get(f"/tenants/{env.tenant_id}/messages/{message_id}")).body
    assert message["status"] == "delivered"
    assert [h["status"] for h in message["status_history"]] == [
        "delivered",
        "sent",
        "sending",
        "delivered",
    ]
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    await asyncio.sleep(0.3)
    [event] = [d.body for d in env.sink.acknowledged]
    assert event["type"] == "message.status"
    assert event["message"]["status"] == "delivered"


async def test_failure_codes_are_kept(env: Env, settings: Settings) -> None:
    sid = "SM" + factories.hex32()
    message_id = await insert_outbound(settings, env, sid)
    assert await post_status(env, status_params(env, sid, "undelivered", "30003")) == 204
    message = (await env.api.get(f"/tenants/{env.tenant_id}/messages/{message_id}")).body
    assert (message["status"], message["error_code"]) == ("undelivered", 30003)
    assert message["error_message"] == "unreachable destination handset"


async def test_callbacks_for_unknown_messages_are_kept_for_later(
    env: Env, settings: Settings
) -> None:
    sid = "SM" + factories.hex32()
    assert await post_status(env, status_params(env, sid, "sent")) == 204
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        kept = await conn.fetch("SELECT twilio_sid, status FROM early_status_callbacks")
    finally:
        await conn.close()
    assert [(r["twilio_sid"], r["status"]) for r in kept] == [(sid, "sent")]


async def test_status_callbacks_check_signatures(env: Env) -> None:
    params = status_params(env, "SM" + factories.hex32(), "sent")
    url = env.config["status_callback_url"]
    forged = RequestValidator(factories.hex32()).compute_signature(url, params)
    status, _, _ = await env.post_public(
        url,
        urlencode(params),
        {"X-Twilio-Signature": forged, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 403
    assert await post_status(env, {"MessageSid": "SM" + factories.hex32()}) == 400


async def test_explain_inbound(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/routing/explain"
    reply = await env.api.post(
        path, {"direction": "inbound", "to": env.number, "from": "+15550001"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["extensions"] == ["101"]
    assert reply.body["decision"] == "fallback"
    assert reply.body["config_id"] == env.config["id"]
    assert any("wins" in line for line in reply.body["explanation"])
    unknown = await env.api.post(
        path, {"direction": "inbound", "to": "+15559990000", "from": "+1555"}
    )
    assert unknown.status == 422
    other = await env.api.post(
        path, {"direction": "inbound", "to": "+15559990000", "from": "+15550001111"}
    )
    assert other.body["decision"] == "unroutable"
    assert (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"] == []


async def test_two_instances_deliver_500_events_once_each(
    env: Env, settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    second = create_app(
        settings.model_copy(update={"run_workers": True, "worker_poll_seconds": 0.05}),
        runtime_secrets,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(second, host="127.0.0.1"))
    await client.start_server()
    try:
        url = env.config["webhook_url"]
        validator = RequestValidator(env.auth_token)

        async def send(i: int, session: aiohttp.ClientSession) -> int:
            params = {
                "MessageSid": f"SM{i:032x}",
                "AccountSid": env.account_sid,
                "From": f"+1555000{i % 25:04d}",
                "To": env.number,
                "Body": f"n{i}",
            }
            async with session.post(
                env.public_url(url),
                data=urlencode(params),
                headers={
                    "X-Twilio-Signature": validator.compute_signature(url, params),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            ) as response:
                return response.status

        async with aiohttp.ClientSession() as session:
            statuses = []
            for start in range(0, 500, 50):
                statuses += await asyncio.gather(
                    *(send(i, session) for i in range(start, start + 50))
                )
        assert statuses == [200] * 500
        await env.sink.wait_for(lambda: len(env.sink.acknowledged) >= 500, within=60)
        await asyncio.sleep(0.5)
        ids = env.sink.event_ids()
        print(f"\n500 events: {len(env.sink.attempts)} attempts, {len(set(ids))} distinct")
        assert len(ids) == len(set(ids)) == 500
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            rows = await conn.fetch("SELECT id, conversation FROM events ORDER BY seq")
        finally:
            await conn.close()
        delivered_at = {event_id: i for i, event_id in enumerate(ids)}
        for conversation in {r["conversation"] for r in rows}:
            thread = [delivered_at[r["id"]] for r in rows if r["conversation"] == conversation]
            assert thread == sorted(thread), "in the order stored, per conversation"
    finally:
        await client.close()


async def test_events_die_after_the_maximum_age_and_say_so(env: Env, settings: Settings) -> None:
    env.sink.down = True
    await env.text_in("never acknowledged")
    await env.sink.wait_for(lambda: len(env.sink.attempts) >= 1)
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        # Age the event past delivery_max_age_hours instead of waiting days for it.
        await conn.execute(
            "UPDATE events SET created_at = now() - interval '100 hours', next_attempt_at = now()"
        )
    finally:
        await conn.close()
    [message] = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]

    async def dead() -> bool:
        detail = await env.api.get(f"/tenants/{env.tenant_id}/messages/{message['id']}")
        return bool(detail.body["deliveries"][0]["status"] == "dead")

    await eventually(dead)
    detail = (await env.api.get(f"/tenants/{env.tenant_id}/messages/{message['id']}")).body
    [delivery] = detail["deliveries"]
    assert delivery["last_error"] == "HTTP 503"
    assert delivery["attempts"] >= 2
    metrics = (await env.api.call("GET", "/metrics", token=None)).text
    assert 'bridge_deliveries_total{outcome="dead"} 1.0' in metrics


async def test_the_stream_never_passes_an_event_that_commits_after_a_later_one(
    env: Env, settings: Settings
) -> None:
    """Stream positions are drawn at insert: the event of a transaction still open has a lower
    position than one committed meanwhile, and a reader at the live end must wait for it
    rather than pass it by and never see it."""
    dsn = settings.database_url.get_secret_value()
    slow, quick = await asyncpg.connect(dsn), await asyncpg.connect(dsn)

    def event(name: str) -> tuple[events_repo.NewEvent, bool]:
        new = events_repo.NewEvent(
            id=EventId(f"evt_{name}_{factories.hex32()[:8]}"),
            tenant_id=TenantId(env.tenant_id),
            message_id=None,
            type="message.received",
            conversation=f"{env.tenant_id}:{name}",
            payload={"id": name, "message": {"body": name}},
        )
        return new, False

    try:
        reader = asyncio.create_task(read_events(env, 2))
        await asyncio.sleep(0.5)  # the reader is at the live end
        transaction = slow.transaction()
        await transaction.start()
        await events_repo.insert_many(slow, [event("early")])  # drawn first, not committed
        await events_repo.insert_many(quick, [event("late")])  # drawn second, committed
        await asyncio.sleep(0.5)
        await transaction.commit()
        got = await asyncio.wait_for(reader, 10)
    finally:
        await slow.close()
        await quick.close()
    assert [data["id"] for _, data in got] == ["early", "late"]


class TestWithoutPolling:
    """The workers poll only every 30 s here: what happens sooner was woken."""

    @pytest.fixture
    def env_overrides(self) -> dict[str, Any]:
        return {"worker_poll_seconds": 30.0}

    async def test_a_burst_in_one_conversation_follows_its_head_at_once(
        self, env: Env, settings: Settings
    ) -> None:
        # At once, as Twilio sends a long text's parts: they share a commit or follow one
        # that is still being delivered, and wait behind it in the queue.
        answers = await asyncio.gather(*(env.text_in(f"part {i}") for i in range(6)))
        assert [a.webhook.answer.status for a in answers] == [200] * 6
        await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 6, within=10)
        queued = await rows(
            settings.database_url.get_secret_value(), "SELECT id FROM events ORDER BY seq"
        )
        assert env.sink.event_ids() == [r["id"] for r in queued], "in the order queued"
