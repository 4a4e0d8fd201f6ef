"""Texts on the phones (design §10): inbound texts as SIP MESSAGEs to a PBX, stored and
forwarded while a phone is away, and MESSAGEs from phones sent through Twilio."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.web.keys import RUNTIME
from tests.pbx_sip import (
    Pbx,
    Phone,
    Received,
    always,
    digest_params,
    digest_response,
    headers,
    phone_message,
    status_of,
)
from tests.pg import rows
from tests.waiting import eventually
from tests.web.bridge_env import SIP_SETTINGS, Env
from tests.web.test_outbound import US_MOBILE, message, wait_status
from tests.web.test_whatsapp import CUSTOMER, whatsapp_in, whatsapp_on

DOMAIN = "acme.pbx.example.com"


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return dict(SIP_SETTINGS)


@pytest.fixture
async def pbx() -> AsyncIterator[Pbx]:
    pbx = Pbx()
    await pbx.start()
    yield pbx
    await pbx.close()


def sip_port(env: Env) -> int:
    port = env.api.client.app[RUNTIME].sip_port if env.api.client.app else None
    assert port is not None
    return port


async def sip_on(env: Env, pbx: Pbx, **settings: Any) -> None:
    body = {
        "domain": DOMAIN,
        "proxy": pbx.proxy_udp,
        "allowed_sources": ["127.0.0.1/32"],
        **settings,
    }
    reply = await env.api.put(f"/tenants/{env.tenant_id}/sip", body)
    assert reply.status == 200, reply.body


async def sip_deliveries(env: Env, message_id: str) -> list[dict[str, Any]]:
    found = await message(env, message_id)
    return [d for d in found["deliveries"] if d["channel"] == "sip"]


async def test_an_inbound_text_becomes_a_message_to_the_extension(env: Env, pbx: Pbx) -> None:
    await sip_on(env, pbx)
    result = await env.text_in("Are you open on Saturday? ☀️")
    assert result.webhook.answer.status == 200
    [got] = await pbx.wait_messages(1)
    assert got.transport == "udp"
    assert got.uri == f"sip:101@{DOMAIN}"
    assert got.header("From").startswith(f'"+15557654321" <sip:+15557654321@{DOMAIN}>;tag=')
    assert got.header("To") == f"<sip:101@{DOMAIN}>"
    assert got.header("Content-Type").lower() == "text/plain;charset=utf-8"
    assert got.text == "Are you open on Saturday? ☀️"
    assert got.header("X-Bridge-DID") == env.number
    stored = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"][0]
    assert got.header("X-Bridge-Message-Id") == stored["id"]

    async def delivered() -> bool:
        states = await sip_deliveries(env, stored["id"])
        return [(d["extension"], d["status"]) for d in states] == [("101", "delivered")]

    await eventually(delivered)
    # The PBX webhook channel is independent of it.
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)


async def test_a_text_for_a_phone_is_claimed_as_it_is_stored(
    env: Env, pbx: Pbx, settings: Settings
) -> None:
    """The process that stores the text sends its MESSAGE without a claim query: the row is
    claimed in the transaction that queued it (the same now())."""
    await sip_on(env, pbx)
    await env.text_in("fresh")
    await pbx.wait_messages(1)

    async def delivered() -> bool:
        [row] = await rows(
            settings.database_url.get_secret_value(),
            "SELECT attempts, heartbeat_at = created_at AS at_insert, status FROM sip_deliveries",
        )
        return dict(row) == {
            "attempts": 1,
            "at_insert": True,
            "status": "delivered",
        }

    await eventually(delivered)


async def test_sip_turned_on_applies_to_the_very_next_text(env: Env, pbx: Pbx) -> None:
    """The webhook path remembers a configuration for a second; a change made through this
    process applies at once (the demo turns SIP on and texts within that second)."""
    before = await env.text_in("Before the phones")
    assert before.webhook.answer.status == 200
    await sip_on(env, pbx)
    after = await env.text_in("Right after")
    assert after.webhook.answer.status == 200
    [got] = await pbx.wait_messages(1)
    assert got.text == "Right after"


async def test_a_whatsapp_text_reaches_the_phone_from_the_remotes_number(
    env: Env, pbx: Pbx
) -> None:
    """Design §12 stores WhatsApp addresses as numbers: the phone shows (and answers) the
    number, and the DID header names the number, not Twilio's whatsapp: address."""
    await sip_on(env, pbx)
    result = await env.text_in("Hola", from_="whatsapp:+15557654321", to="whatsapp:" + env.number)
    assert result.webhook.answer.status == 200
    [got] = await pbx.wait_messages(1)
    assert got.header("From").startswith(f'"+15557654321" <sip:+15557654321@{DOMAIN}>;tag=')
    assert got.header("X-Bridge-DID") == env.number
    assert got.text == "Hola"


async def test_a_phone_that_is_away_gets_its_texts_later_and_in_order(env: Env, pbx: Pbx) -> None:
    answers = iter([(480, "Temporarily Unavailable", []), (486, "Busy Here", [])])
    pbx.script = lambda _r: next(answers, (200, "OK", []))
    await sip_on(env, pbx)
    await env.text_in("first")
    await env.text_in("second")

    async def both() -> bool:
        return [m.text for m in pbx.messages()][-2:] == ["first", "second"]

    await eventually(both, within=15)
    texts = [m.text for m in pbx.messages()]
    # The second never overtook the first: it was not sent while the first was pending.
    assert texts == ["first", "first", "first", "second"]
    listed = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]
    first = next(m for m in listed if m["body"] == "first")

    async def first_delivered() -> bool:
        [state] = await sip_deliveries(env, first["id"])
        return state["status"] == "delivered" and state["attempts"] == 3

    await eventually(first_delivered)


class TestWithoutPolling:
    """The workers poll only every 30 s here: what happens sooner was woken."""

    @pytest.fixture
    def env_overrides(self) -> dict[str, Any]:
        return {**SIP_SETTINGS, "worker_poll_seconds": 30.0}

    async def test_texts_to_one_phone_follow_each_other_at_once(
        self, env: Env, pbx: Pbx, settings: Settings
    ) -> None:
        await sip_on(env, pbx)
        # Together, as a burst: each waits in the phone's queue until the one before it is
        # answered, then goes.
        answers = await asyncio.gather(*(env.text_in(f"text {i}") for i in range(4)))
        assert [a.webhook.answer.status for a in answers] == [200] * 4
        got = await pbx.wait_messages(4, within=10)
        queued = await rows(
            settings.database_url.get_secret_value(),
            "SELECT m.body FROM sip_deliveries d JOIN messages m ON m.id = d.message_id "
            "ORDER BY d.seq",
        )
        assert [m.text for m in got] == [r["body"] for r in queued], "in the order queued"


async def test_sip_retry_sends_waiting_texts_now(env: Env, pbx: Pbx, settings: Settings) -> None:
    answers = iter([(480, "Temporarily Unavailable", [])])
    pbx.script = lambda _r: next(answers, (200, "OK", []))
    await sip_on(env, pbx)
    await env.text_in("are you there?")
    await pbx.wait_messages(1)
    listed = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]

    async def waiting() -> bool:
        [state] = await sip_deliveries(env, listed[0]["id"])
        return state["status"] == "pending" and state["last_error"] == (
            "SIP 480 Temporarily Unavailable"
        )

    await eventually(waiting)
    # Pushed far into the future: only sip-retry brings it back now.
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute("UPDATE sip_deliveries SET next_attempt_at = now() + interval '1 h'")
    finally:
        await conn.close()
    reply = await env.api.post(f"/tenants/{env.tenant_id}/extensions/101/sip-retry")
    assert reply.body == {"extension": "101", "due_now": 1}
    await pbx.wait_messages(2)


async def test_a_refusal_other_than_away_is_dead_at_once(env: Env, pbx: Pbx) -> None:
    pbx.script = always(403, "Forbidden")
    await sip_on(env, pbx)
    await env.text_in("nope")
    await pbx.wait_messages(1)
    listed = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]

    async def dead() -> bool:
        [state] = await sip_deliveries(env, listed[0]["id"])
        return state["status"] == "dead" and state["last_error"] == "SIP 403 Forbidden"

    await eventually(dead)
    await asyncio.sleep(1.0)
    assert len(pbx.messages()) == 1


async def test_a_long_text_goes_in_numbered_parts_over_udp_and_whole_over_tcp(
    env: Env, pbx: Pbx
) -> None:
    long_text = " ".join(f"word{i}" for i in range(300))  # ~2,700 bytes
    await sip_on(env, pbx)
    await env.text_in(long_text[:1600])
    parts = await pbx.wait_messages(2)
    assert parts[0].text.startswith("(1/2) ") and parts[1].text.startswith("(2/2) ")
    assert all(len(p.body) <= 1300 for p in parts)
    assert "".join(p.text[6:] for p in parts).replace(" ", "") == long_text[:1600].replace(" ", "")
    await sip_on(env, pbx, proxy=pbx.proxy_tcp)
    await env.text_in(long_text[:1600])
    messages = await pbx.wait_messages(3)
    assert messages[2].transport == "tcp" and messages[2].text == long_text[:1600]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_a_pbx_challenge_is_answered_with_the_tenants_credentials(
    env: Env, pbx: Pbx, algorithm: str
) -> None:
    nonce = secrets.token_hex(8)
    realm = "pbx.example.com"

    def script(got: Received) -> tuple[int, str, list[str]]:
        auth = got.header("Proxy-Authorization")
        if auth is None:
            challenge = (
                f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}'
            )
            return 407, "Proxy Authentication Required", [f"Proxy-Authenticate: {challenge}"]
        p = digest_params(auth)
        expected = digest_response(
            algorithm, "bridge", realm, "s3cret-pass", "MESSAGE", p["uri"], p
        )
        ok = p["response"] == expected and p["username"] == "bridge" and p["uri"] == got.uri
        return (200, "OK", []) if ok else (403, "Bad Credentials", [])

    pbx.script = script
    await sip_on(env, pbx, auth_username="bridge", auth_password="s3cret-pass")
    await env.text_in("authenticated")
    sent = await pbx.wait_messages(2)
    assert sent[1].header("Proxy-Authorization") is not None
    listed = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]

    async def delivered() -> bool:
        [state] = await sip_deliveries(env, listed[0]["id"])
        return state["status"] == "delivered"

    await eventually(delivered)


async def test_an_extension_that_opted_out_gets_no_message(env: Env, pbx: Pbx) -> None:
    await sip_on(env, pbx)
    reply = await env.api.put(
        f"/tenants/{env.tenant_id}/extensions",
        [{"extension": "101", "dids": [env.number], "sip": False}],
    )
    assert reply.status == 200
    await env.text_in("webhook only")
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    await asyncio.sleep(0.5)
    assert pbx.messages() == []


async def test_an_mms_is_the_text_and_a_link_per_item(env: Env, pbx: Pbx) -> None:
    await sip_on(env, pbx)
    await env.text_in("look", media=[("image/png", b"\x89PNG-the-bytes")])
    [got] = await pbx.wait_messages(1)
    lines = got.text.split("\n")
    assert lines[0] == "look"
    assert len(lines) == 2 and "/media/" in lines[1]
    async with aiohttp.ClientSession() as session, session.get(lines[1]) as r:
        assert r.status == 200
        assert await r.read() == b"\x89PNG-the-bytes"
        assert r.headers["Content-Type"] == "image/png"


# --- phones → Twilio ---------------------------------------------------------------------------


@pytest.fixture
async def phone(env: Env, pbx: Pbx) -> AsyncIterator[Phone]:
    await sip_on(env, pbx)
    phone = Phone(sip_port(env))
    yield phone
    phone.close()


async def fake_creates(env: Env, body: str) -> list[dict[str, Any]]:
    return [m for m in await env.fake_messages() if m["body"] == body]


async def test_a_phones_message_is_sent_once_and_answered_202(env: Env, phone: Phone) -> None:
    raw = phone_message(bridge_port=phone.bridge_port, local_port=phone.port, body="Hi from 101")
    answer = await phone.send(raw)
    assert status_of(answer) == 202
    [message_id] = headers(answer, "X-Bridge-Message-Id")
    found = await wait_status(env, message_id, "queued", "sent", "delivered")
    assert found["from"] == env.number and found["to"] == US_MOBILE
    assert found["routing"]["origin"] == "sip"
    # The same request again (the phone never saw the answer): the same answer, no new send.
    again = await phone.send(raw)
    assert status_of(again) == 202 and headers(again, "X-Bridge-Message-Id") == [message_id]
    await asyncio.sleep(0.5)
    assert len(await fake_creates(env, "Hi from 101")) == 1


async def test_a_reply_to_a_whatsapp_text_goes_by_whatsapp_then_by_sms_once_the_window_closes(
    env: Env, phone: Phone, settings: Settings
) -> None:
    """A phone has no channel to pick: its text follows the remote's WhatsApp thread while
    the 24-hour window is open, and goes by SMS after it."""
    await whatsapp_on(env)
    await whatsapp_in(env, "Hola")
    raw = phone_message(bridge_port=phone.bridge_port, local_port=phone.port, body="Desk reply")
    answer = await phone.send(raw)
    assert status_of(answer) == 202
    [message_id] = headers(answer, "X-Bridge-Message-Id")
    found = await wait_status(env, message_id, "read")
    assert (found["channel"], found["from"], found["to"]) == ("whatsapp", env.number, US_MOBILE)
    [created] = await fake_creates(env, "Desk reply")
    assert (created["from"], created["to"]) == ("whatsapp:" + env.number, CUSTOMER)

    # A day later the window has closed: the next text from the phone is an SMS.
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute("UPDATE messages SET created_at = created_at - interval '25 hours'")
    finally:
        await conn.close()
    later = phone_message(bridge_port=phone.bridge_port, local_port=phone.port, body="Next day")
    answer = await phone.send(later)
    assert status_of(answer) == 202
    [message_id] = headers(answer, "X-Bridge-Message-Id")
    found = await wait_status(env, message_id, "queued", "sent", "delivered")
    assert found["channel"] == "sms"
    [created] = await fake_creates(env, "Next day")
    assert (created["from"], created["to"]) == (env.number, US_MOBILE)


async def test_cpim_is_unwrapped_and_typing_notices_are_sent_nowhere(
    env: Env, phone: Phone
) -> None:
    cpim = (
        "From: <sip:101@acme.pbx.example.com>\r\nTo: <sip:+15557654321@x>\r\n\r\n"
        "Content-Type: text/plain;charset=UTF-8\r\n\r\nwrapped text"
    )
    raw = phone_message(
        bridge_port=phone.bridge_port,
        local_port=phone.port,
        body=cpim,
        content_type="message/cpim",
    )
    assert status_of(await phone.send(raw)) == 202
    typing = phone_message(
        bridge_port=phone.bridge_port,
        local_port=phone.port,
        body='<?xml version="1.0"?><isComposing><state>active</state></isComposing>',
        content_type="application/im-iscomposing+xml",
    )
    assert status_of(await phone.send(typing)) == 200
    image = phone_message(
        bridge_port=phone.bridge_port, local_port=phone.port, body="x", content_type="image/png"
    )
    refused = await phone.send(image)
    assert status_of(refused) == 415
    await env.wait_fake_messages(1)
    await asyncio.sleep(0.3)
    assert [m["body"] for m in await env.fake_messages()] == ["wrapped text"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"domain": "other.example.com"}, 403, "unknown_source"),
        ({"extension": "999"}, 403, "unknown_extension"),
        ({"to": "12"}, 484, "invalid_destination"),
        ({"body": "x" * 1601}, 413, "body_too_long"),
        ({"to": "+33612345678"}, 403, "country_not_allowed"),
    ],
)
async def test_refusals_answer_a_code_with_a_warning_and_send_nothing(
    env: Env, phone: Phone, change: dict[str, str], status: int, code: str
) -> None:
    raw = phone_message(bridge_port=phone.bridge_port, local_port=phone.port, **change)
    answer = await phone.send(raw)
    assert status_of(answer) == status
    [warning] = headers(answer, "Warning")
    assert warning.startswith("399 ") and warning.endswith(f'"{code}"')
    await asyncio.sleep(0.3)
    assert await env.fake_messages() == []
    listed = (await env.api.get(f"/tenants/{env.tenant_id}/messages")).body["items"]
    assert listed == []


async def test_no_route_is_404(env: Env, phone: Phone) -> None:
    assert (await env.api.put(f"/tenants/{env.tenant_id}/outbound-rules", [])).status == 200
    answer = await phone.send(phone_message(bridge_port=phone.bridge_port, local_port=phone.port))
    assert status_of(answer) == 404
    assert headers(answer, "Warning")[0].endswith('"no_route"')


async def test_an_inbound_password_makes_the_pbx_answer_a_challenge(
    env: Env, pbx: Pbx, phone: Phone
) -> None:
    await sip_on(env, pbx, inbound_password="pbx-to-bridge-pw")
    call_id = secrets.token_hex(8)
    first = phone_message(bridge_port=phone.bridge_port, local_port=phone.port, call_id=call_id)
    challenged = await phone.send(first)
    assert status_of(challenged) == 407
    offered = headers(challenged, "Proxy-Authenticate")
    assert any("SHA-256" in c for c in offered) and any("MD5" in c for c in offered)
    challenge = digest_params(next(c for c in offered if "MD5" in c))
    uri = f"sip:+15557654321@127.0.0.1:{phone.bridge_port}"

    def authorized(password: str) -> bytes:
        p = {**challenge, "nc": "00000001", "cnonce": secrets.token_hex(4)}
        response = digest_response("MD5", "101", DOMAIN, password, "MESSAGE", uri, p)
        value = (
            f'Digest username="101", realm="{DOMAIN}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="{p["cnonce"]}"'
        )
        return phone_message(
            bridge_port=phone.bridge_port,
            local_port=phone.port,
            call_id=call_id,
            cseq=2,
            extra=[f"Proxy-Authorization: {value}"],
        )

    wrong = await phone.send(authorized("not-the-password"))
    assert status_of(wrong) == 407
    assert headers(wrong, "Warning")[0].endswith('"wrong_digest"')
    assert status_of(await phone.send(authorized("pbx-to-bridge-pw"))) == 202


async def test_a_failed_send_is_texted_back_to_the_phone(env: Env, pbx: Pbx, phone: Phone) -> None:
    raw = phone_message(
        bridge_port=phone.bridge_port, local_port=phone.port, to="+15005553003", body="lost"
    )
    answer = await phone.send(raw)
    assert status_of(answer) == 202
    await wait_status(env, headers(answer, "X-Bridge-Message-Id")[0], "undelivered", within=20)
    [notice] = await pbx.wait_messages(1, within=15)
    assert notice.uri == f"sip:101@{DOMAIN}"
    assert notice.header("From").startswith(f'"+15005553003" <sip:+15005553003@{DOMAIN}>')
    assert notice.text == "Not delivered: unreachable destination handset (30003)"


async def test_sip_is_counted_in_metrics(env: Env, pbx: Pbx, phone: Phone) -> None:
    await env.text_in("count me")
    await pbx.wait_messages(1)
    assert (
        status_of(
            await phone.send(phone_message(bridge_port=phone.bridge_port, local_port=phone.port))
        )
        == 202
    )

    async def counted() -> bool:
        response = await env.api.client.get("/metrics")
        body = await response.text()
        return (
            'bridge_sip_messages_total{direction="to_phone",outcome="delivered"} 1.0' in body
            and 'bridge_sip_messages_total{direction="from_phone",outcome="accepted"} 1.0' in body
        )

    await eventually(counted)


@pytest.fixture
async def second_bridge(
    env: Env, settings: Settings, runtime_secrets: RuntimeSecrets, env_overrides: dict[str, Any]
) -> AsyncIterator[int]:
    """Another process of the bridge on the same database, with a SIP port of its own."""
    app = create_app(
        settings.model_copy(
            update={
                **env_overrides,
                "run_workers": True,
                "twilio_api_base": env.fake.base_url,
                "public_base_url": env.config["webhook_url"].split("/twilio/")[0],
            }
        ),
        runtime_secrets,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        port = app[RUNTIME].sip_port
        assert port is not None
        yield port
    finally:
        await client.close()


async def test_a_retransmission_to_another_process_sends_nothing_twice(
    env: Env, phone: Phone, second_bridge: int
) -> None:
    call_id = secrets.token_hex(10)
    raw = phone_message(
        bridge_port=phone.bridge_port, local_port=phone.port, body="only once", call_id=call_id
    )
    first = await phone.send(raw)
    other = Phone(second_bridge)
    try:
        # The same MESSAGE (Call-ID, CSeq) reaching the other process, as when the PBX fails
        # over to another of the bridge's addresses; its Via names where it now comes from.
        again = await other.send(
            phone_message(
                bridge_port=second_bridge, local_port=other.port, body="only once", call_id=call_id
            )
        )
    finally:
        other.close()
    assert status_of(first) == status_of(again) == 202
    assert headers(first, "X-Bridge-Message-Id") == headers(again, "X-Bridge-Message-Id")
    await env.wait_fake_messages(1)
    await asyncio.sleep(0.5)
    assert len(await fake_creates(env, "only once")) == 1


async def test_two_processes_share_the_phones_queue_and_keep_its_order(
    env: Env, pbx: Pbx, second_bridge: int
) -> None:
    await sip_on(env, pbx)
    texts = [f"text {i}" for i in range(12)]
    for text in texts:
        await env.text_in(text)
    await pbx.wait_messages(len(texts), within=20)
    await asyncio.sleep(0.5)
    assert [m.text for m in pbx.messages()] == texts


async def test_explain_says_where_the_message_to_the_phone_would_go(env: Env, pbx: Pbx) -> None:
    question = {"direction": "inbound", "to": env.number, "from": "+15557654321"}
    before = await env.api.post(f"/tenants/{env.tenant_id}/routing/explain", question)
    assert before.body.get("sip") is None
    await sip_on(env, pbx)
    await env.api.put(
        f"/tenants/{env.tenant_id}/extensions",
        [{"extension": "101", "dids": [env.number], "sip_uri": "sip:desk@10.0.0.7:5062"}],
    )
    after = await env.api.post(f"/tenants/{env.tenant_id}/routing/explain", question)
    assert after.body["sip"] == [
        {"extension": "101", "uri": "sip:desk@10.0.0.7:5062", "proxy": pbx.proxy_udp, "sends": True}
    ]
