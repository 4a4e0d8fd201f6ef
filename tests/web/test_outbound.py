"""Outbound texts: the send API, routing, the queue and the fake Twilio over real HTTP."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest

from bridge.models import STATUS_RANK
from tests import factories
from tests.web.bridge_env import Env

US_MOBILE = "+15557654321"


async def send(env: Env, body: dict[str, Any], **kw: Any) -> Any:
    return await env.api.post(f"/tenants/{env.tenant_id}/messages", body, **kw)


async def message(env: Env, message_id: str) -> dict[str, Any]:
    reply = await env.api.get(f"/tenants/{env.tenant_id}/messages/{message_id}")
    assert reply.status == 200
    return dict(reply.body)


async def wait_status(
    env: Env, message_id: str, *statuses: str, within: float = 10
) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            found = await message(env, message_id)
            if found["status"] in statuses:
                return found
            await asyncio.sleep(0.05)


async def test_a_text_goes_out_and_reaches_delivered(env: Env) -> None:
    reply = await send(env, {"from_extension": "101", "to": "(555) 765-4321", "body": "Hi!"})
    assert reply.status == 202, reply.body
    accepted = reply.body
    assert (accepted["status"], accepted["direction"]) == ("accepted", "outbound")
    assert (accepted["from"], accepted["to"]) == (env.number, US_MOBILE)
    assert (accepted["segments"], accepted["encoding"]) == (1, "GSM-7")
    done = await wait_status(env, accepted["id"], "delivered")
    history = [h["status"] for h in done["status_history"]]
    assert history[0] == "accepted" and history[-1] == "delivered" and "sent" in history
    [created] = await env.fake_messages()
    assert created["sid"] == done["twilio_sid"]
    assert created["from"] == env.number and created["body"] == "Hi!"
    assert created["status_callback"] == env.config["status_callback_url"]
    await env.sink.wait_for(
        lambda: [d.body["message"]["status"] for d in env.sink.acknowledged][-1:] == ["delivered"]
    )
    statuses = [d.body["message"]["status"] for d in env.sink.acknowledged]
    assert all(d.body["type"] == "message.status" for d in env.sink.acknowledged)
    assert statuses == sorted(statuses, key=["queued", "sent", "delivered"].index)


@pytest.mark.parametrize(
    ("to", "code"),
    [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ],
)
async def test_twilio_refusals_fail_the_message_with_their_code(
    env: Env, to: str, code: int
) -> None:
    reply = await send(env, {"from_extension": "101", "to": to, "body": "x"})
    assert reply.status == 202
    failed = await wait_status(env, reply.body["id"], "failed")
    assert failed["error_code"] == code
    assert failed["twilio_sid"] is None
    assert await env.fake_messages() == []


async def test_undelivered_callbacks_keep_the_carrier_code(env: Env) -> None:
    reply = await send(env, {"from_extension": "101", "to": "+15005553003", "body": "x"})
    done = await wait_status(env, reply.body["id"], "undelivered")
    assert done["error_code"] == 30003


async def test_a_429_storm_ends_with_one_create(env: Env) -> None:
    await env.fake_control(
        "POST",
        "/faults",
        # Without Retry-After the bridge backs off by itself, from 0.5 to 1 s after the first
        # failure: those come first, so the test does not wait out a long backoff.
        {"next": [{"kind": "429-no-retry-after", "count": 2}, {"kind": "429", "count": 3}]},
    )
    await env.fake_control("PATCH", "/config", {"retry_after": 0})
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "storm"})
    await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=30)
    assert len(await env.fake_messages()) == 1
    requests = (await env.fake_control("GET", "/requests?operation=create"))["requests"]
    assert [r["status"] for r in requests] == [429, 429, 429, 429, 429, 201]


async def test_a_5xx_after_create_is_reconciled_not_resent(env: Env) -> None:
    reply = await send(env, {"from_extension": "101", "to": "+15005550501", "body": "once"})
    found = await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=30)
    [created] = await env.fake_messages()
    assert found["twilio_sid"] == created["sid"]
    creates = (await env.fake_control("GET", "/requests?operation=create"))["requests"]
    assert len(creates) == 1, "looked in the list instead of sending again"
    lists = (await env.fake_control("GET", "/requests?operation=list"))["requests"]
    assert lists, "the bridge listed the account's messages to reconcile"


async def test_a_plain_5xx_is_resent_after_looking(env: Env) -> None:
    await env.fake_control("POST", "/faults", {"next": [{"kind": "503", "count": 1}]})
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "again"})
    await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=30)
    assert len(await env.fake_messages()) == 1
    operations = [r["operation"] for r in (await env.fake_control("GET", "/requests"))["requests"]]
    assert operations == ["create", "list", "create"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"from_extension": "101", "to": "+447700900123", "body": "x"}, "country_not_allowed"),
        ({"from_extension": "101", "to": US_MOBILE, "body": "x" * 1601}, "body_too_long"),
        ({"from_extension": "999", "to": US_MOBILE, "body": "x"}, "validation_error"),
        ({"from_extension": "101", "to": "12", "body": "x"}, "invalid_destination"),
        ({"from_extension": "101", "to": US_MOBILE}, "validation_error"),
        (
            {
                "from_extension": "101",
                "to": US_MOBILE,
                "media": [{"content_type": "image/png", "data_base64": "AAAA"}] * 11,
            },
            "too_much_media",
        ),
    ],
)
async def test_refusals_store_nothing_and_reach_no_one(
    env: Env, body: dict[str, Any], code: str
) -> None:
    reply = await send(env, body)
    assert reply.status == 422, reply.body
    assert reply.body["error"]["code"] == code
    assert (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"] == []
    await asyncio.sleep(0.2)
    assert (await env.fake_control("GET", "/requests"))["requests"] == []


async def test_no_route_and_opted_out_recipients(env: Env) -> None:
    await env.text_in("STOP", from_=US_MOBILE)
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "x"})
    assert reply.body["error"]["code"] == "recipient_opted_out"
    await env.api.put(f"/tenants/{env.tenant_id}/outbound-rules", [])
    reply = await send(env, {"from_extension": "101", "to": "+15550001111", "body": "x"})
    assert reply.body["error"]["code"] == "no_route"
    assert await env.fake_messages() == []


async def test_idempotency_keys(env: Env) -> None:
    body = {"from_extension": "101", "to": US_MOBILE, "body": "only once"}
    first = await send(env, body, headers={"Idempotency-Key": "k-1"})
    again = await send(env, body, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 202
    assert again.body["id"] == first.body["id"]
    other = await send(env, {**body, "body": "different"}, headers={"Idempotency-Key": "k-1"})
    assert other.status == 409
    await wait_status(env, first.body["id"], "delivered")
    assert len(await env.fake_messages()) == 1


async def test_alphanumeric_sender_abroad_and_a_did_at_home(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    patched = await env.api.patch(path, {"sender_id": "ACME", "allowed_countries": ["US", "GB"]})
    assert patched.status == 200
    uk = await send(env, {"from_extension": "101", "to": "+447700900123", "body": "hello UK"})
    us = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "hello US"})
    assert (uk.body["from"], us.body["from"]) == ("ACME", env.number)
    await wait_status(env, uk.body["id"], "delivered", "sent", "queued")
    await wait_status(env, us.body["id"], "delivered", "sent", "queued")
    froms = {m["to"]: m["from"] for m in await env.fake_messages()}
    assert froms == {"+447700900123": "ACME", US_MOBILE: env.number}


async def test_outbound_mms_media_is_served_to_twilio(env: Env) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    reply = await send(
        env,
        {
            "from_extension": "101",
            "to": US_MOBILE,
            "body": "see this",
            "media": [{"content_type": "image/png", "data_base64": base64.b64encode(png).decode()}],
        },
    )
    assert reply.status == 202, reply.body
    assert reply.body["media"] == [
        {"index": 0, "content_type": "image/png", "size": len(png), "status": "stored"}
    ]
    await wait_status(env, reply.body["id"], "queued", "sent", "delivered")
    [created] = await env.fake_messages()
    [url] = [value for name, value in created["params"] if name == "MediaUrl"]
    assert url.startswith(env.config["webhook_url"].split("/twilio/")[0] + "/media/")
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as got:
            assert got.status == 200
            assert got.headers["Content-Type"] == "image/png"
            assert int(got.headers["Content-Length"]) == len(png)
            assert await got.read() == png
        async with session.head(url) as head:
            assert head.status == 200
            assert int(head.headers["Content-Length"]) == len(png)
        async with session.get(url + "x") as missing:
            assert missing.status == 404


async def test_validate_and_test_message(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    valid = await env.api.post(path + "/validate")
    assert valid.status == 200, valid.body
    assert valid.body["account"]["sid"] == env.account_sid
    test = await env.api.post(path + "/test-message", {"to": US_MOBILE})
    assert test.status == 202, test.body
    await wait_status(env, test.body["id"], "queued", "sent", "delivered")
    bad = {"type": "auth_token", "auth_token": factories.hex32()}
    assert (await env.api.patch(path, {"credential": bad})).status == 200
    refused = await env.api.post(path + "/validate")
    assert refused.status == 422
    assert "20003" in refused.text or refused.body["error"]["code"] != ""


async def test_explain_outbound_says_what_a_send_would_do(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/routing/explain"
    reply = await env.api.post(
        path, {"direction": "outbound", "from_extension": "101", "to": "555 765 4321"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["decision"] == "send"
    assert (reply.body["to"], reply.body["sender"]) == (US_MOBILE, env.number)
    assert reply.body["sender_kind"] == "number"
    assert reply.body["config_id"] == env.config["id"]
    refused = await env.api.post(
        path, {"direction": "outbound", "from_extension": "101", "to": "+447700900123"}
    )
    assert refused.body["decision"] == "country_not_allowed"
    assert refused.body["explanation"]
    assert (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"] == []
    assert (await env.fake_control("GET", "/requests"))["requests"] == []


async def test_callbacks_that_beat_the_create_response_are_applied(env: Env) -> None:
    # Twilio's callbacks race the create response: here the answer is held back a second
    # after the message exists, so they win it.
    await env.fake_control("PATCH", "/config", {"slow_delay": 1.0, "callback_delay": 0.0})
    reply = await send(env, {"from_extension": "101", "to": "+15005550504", "body": "race"})
    done = await wait_status(env, reply.body["id"], "delivered", within=15)
    history = [h["status"] for h in done["status_history"]]
    assert history[0] == "accepted"
    assert {"sent", "delivered"} <= set(history[1:]), "the early callbacks were applied"
    metrics = (await env.api.call("GET", "/metrics", token=None)).text
    assert 'bridge_status_callbacks_total{outcome="early"}' in metrics


async def test_reordered_and_duplicated_callbacks_never_move_status_back(env: Env) -> None:
    await env.fake_control(
        "PATCH", "/config", {"reorder_callbacks": True, "duplicate_callbacks": True}
    )
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "shuffled"})
    await env.fake.wait_callbacks(4, within=10)
    await env.fake.idle()
    done = await message(env, reply.body["id"])
    assert done["status"] == "delivered"
    await env.sink.wait_for(
        lambda: "delivered" in [d.body["message"]["status"] for d in env.sink.acknowledged]
    )
    ranks = [STATUS_RANK[d.body["message"]["status"]] for d in env.sink.acknowledged]
    assert ranks == sorted(set(ranks)), "each event moves the status forward"


async def test_media_urls_on_the_operators_network_are_refused(env: Env) -> None:
    for url, why in (
        ("http://127.0.0.1:9/pic.jpg", "refers to a private address"),
        ("http://169.254.169.254/latest/meta-data/", "refers to a private address"),
        ("http://[::1]/pic.jpg", "refers to a private address"),
        ("http://localhost/pic.jpg", "could not be fetched"),
    ):
        reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "media": [{"url": url}]})
        assert reply.status == 422, url
        assert reply.body["error"]["code"] == "media_unavailable"
        assert reply.body["error"]["details"] == [{"field": "media[0].url", "message": why}]
    assert (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"] == []


async def test_validate_with_a_standard_api_key_lists_messages(env: Env) -> None:
    key = env.fake.add_key(env.account_sid, "standard")
    credential = {
        "type": "api_key",
        "api_key_sid": key.sid,
        "api_key_secret": key.secret,
        "auth_token": env.auth_token,
    }
    env.api.watch.seen.add(key.secret)
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    assert (await env.api.patch(path, {"credential": credential})).status == 200
    valid = await env.api.post(path + "/validate")
    assert valid.status == 200, valid.body
    assert valid.body == {"ok": True, "checked_with": "messages_list", "account": None}
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "via key"})
    await wait_status(env, reply.body["id"], "queued", "sent", "delivered")
    creates = [r for r in env.fake.state.requests if r.operation == "create"]
    assert creates[-1].auth_username == key.sid


async def test_segments_and_encoding_are_computed_and_stored(env: Env) -> None:
    gsm = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "a" * 161})
    ucs = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "Grüße 👋" * 10})
    assert (gsm.body["encoding"], gsm.body["segments"]) == ("GSM-7", 2)
    assert (ucs.body["encoding"], ucs.body["segments"]) == ("UCS-2", 2)
    stored = await message(env, ucs.body["id"])
    assert (stored["encoding"], stored["segments"]) == ("UCS-2", 2)


async def test_message_list_filters_and_pages(env: Env) -> None:
    for i in range(3):
        await send(env, {"from_extension": "101", "to": US_MOBILE, "body": f"out {i}"})
    await env.text_in("in 0", from_="+15550009999")
    base = f"/tenants/{env.tenant_id}/messages"
    outbound = (await env.api.get(base + "?direction=outbound")).body["items"]
    assert [m["body"] for m in outbound] == ["out 2", "out 1", "out 0"], "newest first"
    inbound = (await env.api.get(base + "?direction=inbound")).body["items"]
    assert [m["body"] for m in inbound] == ["in 0"]
    by_number = (await env.api.get(base + "?number=%2B15550009999")).body["items"]
    assert [m["body"] for m in by_number] == ["in 0"]
    first = (await env.api.get(base + "?limit=2")).body
    rest = (await env.api.get(base + f"?limit=2&cursor={first['next_cursor']}")).body
    assert len(first["items"]) == 2 and len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    assert (await env.api.get(base + "?direction=sideways")).status == 422


async def test_a_failing_reconciliation_waits_and_never_resends(env: Env) -> None:
    await env.fake_control(
        "POST", "/faults", {"next": [{"kind": "503", "count": 2, "operations": ["list"]}]}
    )
    reply = await send(env, {"from_extension": "101", "to": "+15005550501", "body": "unsure"})
    found = await wait_status(env, reply.body["id"], "queued", "sent", "delivered", within=30)
    [created] = await env.fake_messages()
    assert found["twilio_sid"] == created["sid"]
    operations = [r["operation"] for r in (await env.fake_control("GET", "/requests"))["requests"]]
    assert operations == ["create", "list", "list", "list"]
