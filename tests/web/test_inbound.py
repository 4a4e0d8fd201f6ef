"""Inbound texts: Twilio's signed webhooks into the running app, out to a PBX sink."""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import urlencode

import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from bridge.config import Settings
from tests import factories
from tests.web.bridge_env import Env

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def signed(env: Env, params: dict[str, str], url: str | None = None, token: str | None = None):
    """Form body and headers signed by Twilio's own library, as Twilio would sign them."""
    url = url or env.config["webhook_url"]
    signature = RequestValidator(token or env.auth_token).compute_signature(url, params)
    return urlencode(params), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def params_for(env: Env, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or "SM" + factories.hex32(),
        "AccountSid": env.account_sid,
        "From": "+15557654321",
        "To": env.number,
        "Body": "hi there",
        "NumMedia": "0",
        **extra,
    }


async def messages(env: Env) -> list[dict[str, object]]:
    reply = await env.api.get(f"/tenants/{env.tenant_id}/messages")
    assert reply.status == 200
    return list(reply.body["items"])


async def test_a_text_is_acknowledged_stored_routed_and_delivered(env: Env) -> None:
    result = await env.text_in("Hello from a patient", extra_params={"ExtraParam": "unknown"})
    answer = result.webhook.answer
    assert answer.status == 200
    assert (answer.content_type or "").startswith("text/xml")
    assert answer.body.encode() == TWIML
    stored = await messages(env)
    assert len(stored) == 1
    message = stored[0]
    assert message["status"] == "received"
    assert message["from"] == "+15557654321" and message["to"] == env.number
    assert message["twilio_sid"] == result.message.sid
    assert message["extensions"] == ["101"]
    assert message["routing"]["reason"] == "fallback"
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    delivery = env.sink.acknowledged[0]
    assert delivery.signature_ok
    assert delivery.body["type"] == "message.received"
    assert delivery.body["extensions"] == ["101"]
    assert delivery.body["message"]["body"] == "Hello from a patient"
    assert delivery.body["id"] == delivery.event_id
    assert delivery.body["tenant_id"] == env.tenant_id


async def test_twilio_retries_store_nothing_new(env: Env) -> None:
    params = params_for(env)
    body, headers = signed(env, params)
    first = await env.post_public(env.config["webhook_url"], body, headers)
    results = await asyncio.gather(
        *(env.post_public(env.config["webhook_url"], body, headers) for _ in range(5))
    )
    assert first == (200, "text/xml; charset=utf-8", TWIML)
    assert all(r == first for r in results)
    assert len(await messages(env)) == 1
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    await asyncio.sleep(0.3)
    assert len(env.sink.attempts) == 1


async def test_every_received_parameter_is_kept(env: Env, settings: Settings) -> None:
    params = params_for(env, FromCity="SPRINGFIELD", NewFieldTwilioAddedLater="x")
    body, headers = signed(env, params)
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 200
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        raw = await conn.fetchval("SELECT params FROM messages")
    finally:
        await conn.close()
    assert sorted(map(tuple, json.loads(raw))) == sorted(params.items())


@pytest.mark.parametrize("field", ["MessageSid", "From", "To", "Body", "AccountSid"])
async def test_tampering_with_any_field_is_refused(env: Env, field: str) -> None:
    params = params_for(env)
    _, headers = signed(env, params)
    tampered = urlencode({**params, field: params[field] + "0"})
    status, _, answer = await env.post_public(env.config["webhook_url"], tampered, headers)
    assert status == 403
    assert answer == b""
    assert await messages(env) == []


async def test_forged_and_missing_signatures_are_refused(env: Env) -> None:
    params = params_for(env)
    cases = [
        signed(env, params, token=factories.hex32()),  # wrong auth token
        signed(env, params, url="https://evil.example/sms/twilio/x/inbound"),  # wrong URL
        signed(env, params, url=env.config["status_callback_url"]),  # the other endpoint
        (urlencode(params), {"Content-Type": "application/x-www-form-urlencoded"}),
        (
            urlencode(params),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": "not base64 at all!",
            },
        ),
    ]
    for body, headers in cases:
        status, _, _ = await env.post_public(env.config["webhook_url"], body, headers)
        assert status == 403
    assert await messages(env) == []
    metrics = (await env.api.call("GET", "/metrics", token=None)).text
    assert 'bridge_webhooks_rejected_total{kind="inbound",reason="bad signature"} 5.0' in metrics


async def test_both_port_variants_are_accepted(env: Env) -> None:
    url = env.config["webhook_url"].replace(
        "https://pbx.example.test/", "https://pbx.example.test:443/"
    )
    body, headers = signed(env, params_for(env), url=url)
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 200
    assert len(await messages(env)) == 1


async def test_the_query_string_is_signed_as_received(env: Env) -> None:
    url = env.config["webhook_url"] + "?b=2&a=1"
    body, headers = signed(env, params_for(env), url=url)
    assert (await env.post_public(url, body, headers))[0] == 200
    reordered = env.config["webhook_url"] + "?a=1&b=2"
    body, headers = signed(env, params_for(env), url=url)
    assert (await env.post_public(reordered, body, headers))[0] == 403
    assert len(await messages(env)) == 1


async def test_bad_requests_store_nothing(env: Env) -> None:
    for missing in ("MessageSid", "From", "To"):
        params = params_for(env)
        del params[missing]
        body, headers = signed(env, params)
        assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 400
    body, headers = signed(env, params_for(env, Body="x" * 70_000))
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 413
    body, headers = signed(env, params_for(env))
    headers["Content-Type"] = "text/plain"
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 415
    body, headers = signed(env, params_for(env))
    unknown = env.config["webhook_url"].replace("/twilio/", "/twilio/x")
    assert unknown != env.config["webhook_url"]
    assert (await env.post_public(unknown, body, headers))[0] == 404
    assert await messages(env) == []


async def test_json_bodies_with_body_sha256(env: Env) -> None:
    raw = json.dumps(params_for(env, Body="json please")).encode()
    query = "?bodySHA256=" + hashlib.sha256(raw).hexdigest()
    url = env.config["webhook_url"] + query
    signature = RequestValidator(env.auth_token).compute_signature(url, {})
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    assert (await env.post_public(url, raw, headers))[0] == 200
    tampered = raw.replace(b"json please", b"json pleasE")
    assert (await env.post_public(url, tampered, headers))[0] == 403
    assert [m["body"] for m in await messages(env)] == ["json please"]


async def test_disabled_configuration_stores_but_does_not_deliver(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    assert (await env.api.patch(path, {"enabled": False})).status == 200
    result = await env.text_in("while disabled")
    assert result.webhook.answer.status == 200
    [message] = await messages(env)
    assert message["routing"]["reason"] == "config_disabled"
    assert message["extensions"] == []
    await asyncio.sleep(0.5)
    assert env.sink.attempts == []


async def test_unroutable_messages_are_kept_and_counted(env: Env) -> None:
    await env.api.put(f"/tenants/{env.tenant_id}/inbound-rules", [])
    assert (await env.text_in("anyone?")).webhook.answer.status == 200
    [message] = await messages(env)
    assert message["status"] == "unroutable"
    metrics = (await env.api.call("GET", "/metrics", token=None)).text
    assert 'bridge_inbound_messages_total{outcome="unroutable"} 1.0' in metrics


async def test_stop_and_start_change_opt_outs(env: Env) -> None:
    path = f"/tenants/{env.tenant_id}/opt-outs"
    await env.text_in("  stop ", from_="+15550001111")
    await env.text_in("UNSUBSCRIBE", from_="+15550002222")
    await env.text_in("please stop texting me", from_="+15550003333")
    listed = (await env.api.get(path)).body["items"]
    assert [(o["number"], o["keyword"]) for o in listed] == [
        ("+15550001111", "STOP"),
        ("+15550002222", "UNSUBSCRIBE"),
    ]
    await env.text_in("Start", from_="+15550001111")
    await env.text_in("hello", from_="+15550002222", opt_out_type="START")
    assert (await env.api.get(path)).body["items"] == []


async def test_api_key_configurations_check_the_auth_token(env: Env) -> None:
    credential = factories.api_key_credential() | {"auth_token": env.auth_token}
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    assert (await env.api.patch(path, {"credential": credential})).status == 200
    assert (await env.text_in("via key")).webhook.answer.status == 200
    body, headers = signed(env, params_for(env), token=credential["api_key_secret"][:32])
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 403


async def test_mms_media_is_fetched_through_the_cdn_redirect(env: Env) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"p" * 2000
    result = await env.text_in("look", media=[("image/png", png), ("text/vcard", b"BEGIN:VCARD")])
    assert result.webhook.answer.status == 200
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    event = env.sink.acknowledged[0].body
    media = event["message"]["media"]
    assert [(m["index"], m["content_type"], m["size"], m["status"]) for m in media] == [
        (0, "image/png", len(png), "stored"),
        (1, "text/vcard", len(b"BEGIN:VCARD"), "stored"),
    ]
    message_id = event["message"]["id"]
    base = f"/tenants/{env.tenant_id}/messages/{message_id}/media"
    got = await env.api.get(f"{base}/0")
    assert (got.status, got.headers["Content-Type"], got.raw) == (200, "image/png", png)
    assert (await env.api.get(f"{base}/1")).raw == b"BEGIN:VCARD"
    assert (await env.api.get(f"{base}/2")).status == 404


async def test_nul_characters_in_webhooks_are_refused(env: Env) -> None:
    body, headers = signed(env, params_for(env, Body="a\u0000b"))
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 400
    assert await messages(env) == []
