"""WhatsApp through Twilio, and RCS as a Messaging Service delivers it (design §12): the real
app, its workers, the fake Twilio and a PBX sink over loopback."""

from __future__ import annotations

import json
from typing import Any

from bridge.db.sms_configs import SendingConfig, SendingNumber
from bridge.models import ConfigId, TrunkId
from bridge.routing import OutboundPlan
from bridge.services.outbound import WHATSAPP_MPS, sender_key_and_mps
from tests.web.bridge_env import Env
from tests.web.test_outbound import US_MOBILE, send, wait_status

CUSTOMER = "whatsapp:" + US_MOBILE
TEMPLATE = "HX" + "0123456789abcdef" * 2


async def whatsapp_on(env: Env, *, rules: list[dict[str, Any]] | None = None) -> None:
    """The configuration's number is also a WhatsApp sender, in the bridge and at Twilio."""
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    numbers = [{"number": env.number, "channels": ["sms", "whatsapp"]}]
    reply = await env.api.patch(path, {"numbers": numbers})
    assert reply.status == 200, reply.body
    assert reply.body["numbers"][0]["channels"] == ["sms", "whatsapp"]
    env.fake.add_whatsapp_sender(env.account_sid, env.number)
    if rules is not None:
        extensions = [
            {"extension": "101", "dids": [env.number], "default_did": env.number},
            {"extension": "102"},
        ]
        assert (await env.api.put(f"/tenants/{env.tenant_id}/extensions", extensions)).status == 200
        reply = await env.api.put(f"/tenants/{env.tenant_id}/inbound-rules", rules)
        assert reply.status == 200, reply.body


async def whatsapp_in(env: Env, body: str = "Hola") -> dict[str, Any]:
    """The customer writes by WhatsApp (which opens the window, at Twilio and in the bridge)."""
    result = await env.text_in(body, from_=CUSTOMER, to="whatsapp:" + env.number)
    assert result.webhook.answer is not None and result.webhook.answer.status == 200
    listed = await env.api.get(f"/tenants/{env.tenant_id}/messages?direction=inbound")
    return dict(listed.body["items"][0])


async def listed(env: Env, query: str) -> list[dict[str, Any]]:
    reply = await env.api.get(f"/tenants/{env.tenant_id}/messages?{query}")
    assert reply.status == 200, reply.body
    return list(reply.body["items"])


async def test_an_inbound_whatsapp_text_is_stored_with_its_channel_and_routed_by_number(
    env: Env,
) -> None:
    await whatsapp_on(env, rules=[{"name": "main", "did": env.number, "extensions": ["102"]}])
    await env.text_in("by SMS")
    got = await whatsapp_in(env, "by WhatsApp")
    assert (got["channel"], got["from"], got["to"]) == ("whatsapp", US_MOBILE, env.number)
    assert (got["status"], got["extensions"], got["routing"]["reason"]) == (
        "received",
        ["102"],
        "rule",
    )
    assert (got["segments"], got["encoding"]) == (1, "UTF-8")
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 2)
    event = env.sink.acknowledged[-1].body
    assert (event["type"], event["message"]["channel"]) == ("message.received", "whatsapp")
    assert [m["body"] for m in await listed(env, "channel=whatsapp")] == ["by WhatsApp"]
    assert [m["body"] for m in await listed(env, "channel=sms")] == ["by SMS"]
    explained = await env.api.post(
        f"/tenants/{env.tenant_id}/routing/explain",
        {"to": "whatsapp:" + env.number, "from": CUSTOMER},
    )
    assert (explained.status, explained.body["extensions"]) == (200, ["102"])


async def test_whatsapp_to_a_configuration_that_never_enabled_it_is_kept_too(env: Env) -> None:
    reply = await env.api.put(
        f"/tenants/{env.tenant_id}/inbound-rules",
        [{"name": "main", "did": env.number, "extensions": ["101"]}],
    )
    assert reply.status == 200, reply.body
    got = await whatsapp_in(env)
    assert (got["channel"], got["from"], got["to"]) == ("whatsapp", US_MOBILE, env.number)
    assert (got["status"], got["extensions"], got["routing"]["reason"]) == (
        "received",
        ["101"],
        "rule",
    )


async def test_an_sms_thread_and_a_whatsapp_thread_with_one_person_are_two_conversations(
    env: Env,
) -> None:
    await whatsapp_on(env, rules=[{"name": "main", "did": "*", "extensions": ["102"]}])
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "by SMS"})
    assert (await wait_status(env, reply.body["id"], "delivered"))["channel"] == "sms"
    # 101 texted them by SMS: a WhatsApp message from them is not a reply to that.
    got = await whatsapp_in(env)
    assert (got["extensions"], got["routing"]["reason"]) == (["102"], "fallback")
    await env.text_in("an SMS reply")
    sms = (await listed(env, "direction=inbound&channel=sms"))[0]
    assert (sms["extensions"], sms["routing"]["reason"]) == (["101"], "affinity")


async def test_outside_the_window_a_free_form_send_is_refused_and_nothing_is_stored(
    env: Env,
) -> None:
    await whatsapp_on(env)
    reply = await send(env, {"from_extension": "101", "to": CUSTOMER, "body": "Hi"})
    assert reply.status == 422, reply.body
    assert reply.body["error"]["code"] == "whatsapp_window_closed"
    assert reply.body["error"]["details"][0]["field"] == "content_sid"
    same = await send(
        env, {"from_extension": "101", "to": US_MOBILE, "channel": "whatsapp", "body": "Hi"}
    )
    assert same.body["error"]["code"] == "whatsapp_window_closed"
    assert await listed(env, "direction=outbound") == []
    assert await env.fake_messages() == []
    # The explanation says so, and sends nothing either.
    explained = await env.api.post(
        f"/tenants/{env.tenant_id}/routing/explain",
        {"from_extension": "101", "to": CUSTOMER},
    )
    assert (explained.body["decision"], explained.body["channel"]) == ("send", "whatsapp")
    assert "window is closed" in explained.body["explanation"][-1]


async def test_inside_the_window_text_goes_by_whatsapp_and_is_read(env: Env) -> None:
    await whatsapp_on(env)
    await whatsapp_in(env)
    reply = await send(env, {"from_extension": "101", "to": CUSTOMER, "body": "¡Hola! 👋"})
    assert reply.status == 202, reply.body
    accepted = reply.body
    assert (accepted["channel"], accepted["from"], accepted["to"]) == (
        "whatsapp",
        env.number,
        US_MOBILE,
    )
    assert (accepted["segments"], accepted["encoding"]) == (1, "UTF-8")
    done = await wait_status(env, accepted["id"], "read")
    assert [h["status"] for h in done["status_history"]][-2:] == ["delivered", "read"]
    assert (done["from"], done["to"]) == (env.number, US_MOBILE)
    [created] = await env.fake_messages()
    assert (created["from"], created["to"]) == ("whatsapp:" + env.number, CUSTOMER)
    assert created["body"] == "¡Hola! 👋" and created["content_sid"] is None
    await env.sink.wait_for(
        lambda: [d.body["message"]["status"] for d in env.sink.acknowledged][-1:] == ["read"]
    )
    assert env.sink.acknowledged[-1].body["message"]["channel"] == "whatsapp"


async def test_outside_the_window_a_template_goes_out(env: Env) -> None:
    await whatsapp_on(env)
    body = {
        "from_extension": "101",
        "to": US_MOBILE,
        "channel": "whatsapp",
        "content_sid": TEMPLATE,
        "content_variables": {"1": "Jane", "2": "9am"},
    }
    reply = await send(env, body)
    assert reply.status == 202, reply.body
    assert (reply.body["content_sid"], reply.body["body"]) == (TEMPLATE, "")
    done = await wait_status(env, reply.body["id"], "read")
    assert done["content_variables"] == {"1": "Jane", "2": "9am"}
    [created] = await env.fake_messages()
    form = dict(
        (await env.fake_control("GET", "/requests?operation=create"))["requests"][0]["form"]
    )
    assert (form["ContentSid"], json.loads(form["ContentVariables"])) == (
        TEMPLATE,
        {"1": "Jane", "2": "9am"},
    )
    assert "Body" not in form and created["content_sid"] == TEMPLATE
    # A template is the whole content, and it is WhatsApp's.
    both = await send(env, {**body, "body": "and text"})
    assert (both.status, both.body["error"]["details"][0]["field"]) == (422, "body")
    by_sms = await send(env, {**body, "channel": "sms"})
    assert (by_sms.status, by_sms.body["error"]["details"][0]["field"]) == (422, "content_sid")


async def test_twilio_63016_fails_the_message_with_its_meaning(env: Env) -> None:
    await whatsapp_on(env)
    await whatsapp_in(env)
    # Twilio's clock says the window has closed; the bridge's does not yet.
    await env.fake_control("PATCH", "/config", {"whatsapp_window_seconds": 0})
    reply = await send(env, {"from_extension": "101", "to": CUSTOMER, "body": "late"})
    assert reply.status == 202, reply.body
    failed = await wait_status(env, reply.body["id"], "failed")
    assert failed["error_code"] == 63016
    assert failed["error_message"] == "outside the WhatsApp 24-hour window"
    assert "content_sid" in failed["error_advice"]


async def test_a_whatsapp_stop_stops_whatsapp_only(env: Env) -> None:
    await whatsapp_on(env)
    await whatsapp_in(env, "STOP")
    refused = await send(env, {"from_extension": "101", "to": CUSTOMER, "body": "Hi"})
    assert (refused.status, refused.body["error"]["code"]) == (422, "recipient_opted_out")
    by_sms = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "Hi"})
    assert by_sms.status == 202, by_sms.body
    opt_outs = (await env.api.get(f"/tenants/{env.tenant_id}/opt-outs")).body["items"]
    assert [(o["number"], o["channel"], o["keyword"]) for o in opt_outs] == [
        (US_MOBILE, "whatsapp", "STOP")
    ]


async def test_rcs_addresses_on_a_configuration_without_whatsapp(env: Env) -> None:
    """A Messaging Service with an RCS sender delivers by RCS: its callbacks carry rcs:
    addresses and a read receipt, and its customers write back from rcs: addresses."""
    service = env.fake.add_service(env.account_sid, rcs_sender="acme_agent")
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    reply = await env.api.patch(path, {"messaging_service_sid": service.sid})
    assert reply.status == 200, reply.body
    # An extension without a DID sends through the configuration's messaging service.
    extensions = [{"extension": "101"}]
    assert (await env.api.put(f"/tenants/{env.tenant_id}/extensions", extensions)).status == 200
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "Hi"})
    assert reply.status == 202, reply.body
    assert reply.body["channel"] == "sms"
    done = await wait_status(env, reply.body["id"], "read")
    assert (done["channel"], done["to"]) == ("rcs", US_MOBILE)
    [created] = await env.fake_messages()
    assert (created["from"], created["to"]) == ("rcs:acme_agent", "rcs:" + US_MOBILE)
    callbacks = env.fake.state.callbacks(created["sid"])
    assert [dict(c.params)["MessageStatus"] for c in callbacks][-1] == "read"
    assert all(c.answer is not None and c.answer.status == 204 for c in callbacks)

    result = await env.text_in("Thanks!", from_="rcs:" + US_MOBILE, to="rcs:acme_agent")
    assert result.webhook.answer is not None and result.webhook.answer.status == 200
    [got] = await listed(env, "direction=inbound")
    assert (got["channel"], got["from"], got["to"]) == ("rcs", US_MOBILE, "acme_agent")
    assert (got["status"], got["extensions"]) == ("received", ["101"])
    assert [m["id"] for m in await listed(env, "channel=rcs")] == [got["id"], done["id"]]


async def test_a_whatsapp_sender_has_a_queue_and_a_pace_of_its_own() -> None:
    numbers = {
        "+15551230001": SendingNumber("+15551230001", "long_code", None, frozenset({"sms"})),
        "+15551230002": SendingNumber(
            "+15551230002", "long_code", None, frozenset({"sms", "whatsapp"})
        ),
        "+15551230003": SendingNumber("+15551230003", "toll_free", 20.0, frozenset({"whatsapp"})),
    }
    config = SendingConfig(
        ConfigId("cfg_1"),
        TrunkId("trk_1"),
        True,
        None,
        None,
        ["US"],
        numbers,
        texting=("+15551230001", "+15551230002"),
        whatsapp=frozenset({"+15551230002", "+15551230003"}),
    )

    def plan(sender: str, channel: Any) -> OutboundPlan:
        return OutboundPlan(
            0,
            "all",
            US_MOBILE,
            "US",
            TrunkId("trk_1"),
            ConfigId("cfg_1"),
            "number",
            sender,
            (),
            channel,
        )

    assert sender_key_and_mps(plan("+15551230002", "sms"), config) == ("cfg_1:+15551230002", 1.0)
    assert sender_key_and_mps(plan("+15551230002", "whatsapp"), config) == (
        "cfg_1:whatsapp:+15551230002",
        WHATSAPP_MPS,
    )
    assert sender_key_and_mps(plan("+15551230003", "whatsapp"), config) == (
        "cfg_1:whatsapp:+15551230003",
        20.0,
    )
    assert WHATSAPP_MPS == 80.0


async def test_whatsapp_sends_need_a_whatsapp_number(env: Env) -> None:
    reply = await send(env, {"from_extension": "101", "to": CUSTOMER, "body": "Hi"})
    assert (reply.status, reply.body["error"]["code"]) == (422, "no_sender")
    rcs = await send(env, {"from_extension": "101", "to": "rcs:" + US_MOBILE, "body": "Hi"})
    assert (rcs.status, rcs.body["error"]["details"][0]["field"]) == (422, "to")
    mixed = await send(
        env, {"from_extension": "101", "to": CUSTOMER, "channel": "sms", "body": "x"}
    )
    assert (mixed.status, mixed.body["error"]["details"][0]["field"]) == (422, "channel")
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    short = [{"number": "55555", "type": "short_code", "channels": ["sms", "whatsapp"]}]
    bad = await env.api.patch(path, {"numbers": short})
    assert bad.status == 422, bad.body
