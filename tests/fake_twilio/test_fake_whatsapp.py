"""WhatsApp and RCS in the fake (twilio.md §9, §12): WhatsApp senders, the 24-hour window,
templates as the OpenAPI file describes ContentSid/ContentVariables, read receipts, and the
rcs: addresses of a Messaging Service with an RCS sender."""

from __future__ import annotations

import json
import re
from typing import Any

from twilio.request_validator import RequestValidator

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import MESSAGES_PATH, Sink, TwilioApi, schema_errors

SENDER = "+15551230001"
USER = "+15557770000"
WA_SENDER, WA_USER = "whatsapp:" + SENDER, "whatsapp:" + USER
TEMPLATE = "HX" + "ab" * 16


def create_property(spec: dict[str, Any], name: str) -> dict[str, Any]:
    body = spec["paths"][MESSAGES_PATH]["post"]["requestBody"]["content"]
    found: dict[str, Any] = body["application/x-www-form-urlencoded"]["schema"]["properties"][name]
    return found


async def whatsapp(api: TwilioApi, sink: Sink, *pairs: tuple[str, str]) -> Any:
    reply = await api.create(
        ("To", WA_USER), ("From", WA_SENDER), ("StatusCallback", sink.url("/status/t")), *pairs
    )
    assert reply.status == 201, reply.text
    return reply.json


def statuses(sink: Sink) -> list[dict[str, str]]:
    return [dict(r.form) for r in sink.at("/status/t")]


async def test_a_whatsapp_from_must_be_a_whatsapp_sender_of_the_account(
    api: TwilioApi, account: Account
) -> None:
    unknown = await api.create(("To", WA_USER), ("From", WA_SENDER), ("Body", "hi"))
    assert (unknown.status, unknown.json["code"]) == (400, 63007)
    account.whatsapp_senders.append(SENDER)
    mixed = await api.create(("To", USER), ("From", WA_SENDER), ("Body", "hi"))
    assert (mixed.status, mixed.json["code"]) == (400, 21910)
    assert (await api.create(("To", WA_USER), ("From", WA_SENDER), ("Body", "hi"))).status == 201


async def test_content_sid_and_variables_as_the_openapi_file_describes_them(
    api: TwilioApi, account: Account, spec: dict[str, Any]
) -> None:
    account.whatsapp_senders.append(SENDER)
    pattern = create_property(spec, "ContentSid")["pattern"]
    assert re.fullmatch(pattern.strip("^$"), TEMPLATE)
    assert create_property(spec, "ContentVariables")["type"] == "string"
    base = [("To", WA_USER), ("From", WA_SENDER)]
    bad_sid = await api.create(*base, ("ContentSid", "HX123"))
    assert (bad_sid.status, bad_sid.json["code"]) == (400, 21655)
    alone = await api.create(*base, ("Body", "x"), ("ContentVariables", '{"1": "Jane"}'))
    assert (alone.status, alone.json["code"]) == (400, 21654)
    for variables in ("not json", '["Jane"]', '{"1": ""}'):
        bad = await api.create(*base, ("ContentSid", TEMPLATE), ("ContentVariables", variables))
        assert (bad.status, bad.json["code"]) == (400, 21656), variables
    good = await api.create(*base, ("ContentSid", TEMPLATE), ("ContentVariables", '{"1": "J"}'))
    assert good.status == 201, good.text
    created = good.json
    schema = spec["paths"][MESSAGES_PATH]["post"]["responses"]["201"]["content"]
    assert schema_errors(created, schema["application/json"]["schema"], spec) == []
    assert (created["to"], created["from"], created["num_segments"]) == (WA_USER, WA_SENDER, "1")
    kept = api.fake.state.messages[created["sid"]]
    assert (kept.content_sid, kept.content_variables) == (TEMPLATE, '{"1": "J"}')


async def test_outside_the_window_free_form_fails_with_63016_and_a_template_passes(
    api: TwilioApi, account: Account, sink: Sink
) -> None:
    account.whatsapp_senders.append(SENDER)
    free = await whatsapp(api, sink, ("Body", "hello"))
    assert free["status"] == "queued"
    [failed] = await sink.wait(1, "/status/t")
    assert (failed.form["MessageStatus"], failed.form["ErrorCode"]) == ("failed", "63016")
    assert failed.form["ChannelPrefix"] == "whatsapp"
    assert api.fake.state.messages[free["sid"]].error_code == 63016
    await whatsapp(api, sink, ("ContentSid", TEMPLATE))
    await sink.wait(4, "/status/t")
    assert [s["MessageStatus"] for s in statuses(sink)[1:]] == ["sent", "delivered", "read"]


async def test_inside_the_window_free_form_is_delivered_then_read(
    fake: FakeTwilio, api: TwilioApi, account: Account, sink: Sink
) -> None:
    account.whatsapp_senders.append(SENDER)
    await fake.send_inbound(sink.url("/in"), from_=WA_USER, to=WA_SENDER, body="hola")
    [inbound] = await sink.wait(1, "/in")
    assert (inbound.form["From"], inbound.form["To"]) == (WA_USER, WA_SENDER)
    assert (inbound.form["WaId"], inbound.form["ProfileName"]) == (USER[1:], "WhatsApp user")
    assert inbound.form["NumSegments"] == "1"
    assert RequestValidator(account.auth_token).validate(
        sink.url("/in"), inbound.form, inbound.headers["X-Twilio-Signature"]
    )
    await whatsapp(api, sink, ("Body", "hello"))
    await sink.wait(3, "/status/t")
    sent, delivered, read = statuses(sink)
    assert [s["MessageStatus"] for s in (sent, delivered, read)] == ["sent", "delivered", "read"]
    assert read["EventType"] == "READ" and "EventType" not in delivered
    assert (read["From"], read["To"], read["ChannelToAddress"]) == (WA_SENDER, WA_USER, USER)
    assert "RawDlrDoneDate" not in delivered
    # Windows close: 0 closes them all.
    fake.state.config.whatsapp_window_seconds = 0
    await whatsapp(api, sink, ("Body", "later"))
    await sink.wait(4, "/status/t")
    assert statuses(sink)[3]["ErrorCode"] == "63016"


async def test_a_service_with_an_rcs_sender_sends_rcs_first(
    fake: FakeTwilio, api: TwilioApi, account: Account, sink: Sink
) -> None:
    service = fake.add_service(account.sid, numbers=[SENDER], rcs_sender="acme_agent")
    reply = await api.create(
        ("To", USER),
        ("MessagingServiceSid", service.sid),
        ("Body", "hi"),
        ("StatusCallback", sink.url("/status/t")),
    )
    assert (reply.status, reply.json["from"], reply.json["to"]) == (201, None, USER)
    await sink.wait(4, "/status/t")
    callbacks = statuses(sink)
    assert [c["MessageStatus"] for c in callbacks] == ["queued", "sent", "delivered", "read"]
    assert {(c["From"], c["To"], c["ChannelPrefix"]) for c in callbacks} == {
        ("rcs:acme_agent", "rcs:" + USER, "rcs")
    }
    listed = (await api.list(("To", "rcs:" + USER))).json["messages"]
    assert [m["sid"] for m in listed] == [reply.json["sid"]]
    assert listed[0]["from"] == "rcs:acme_agent"
    # A sender id is an RCS From of its own (not a phone number).
    direct = await api.create(("To", "rcs:" + USER), ("From", "rcs:acme_agent"), ("Body", "x"))
    assert direct.status == 201, direct.text


async def test_the_control_api_registers_whatsapp_senders_and_rcs_senders(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    async with api.http.post(
        fake.base_url + "/_fake/accounts", json={"whatsapp_senders": [SENDER]}
    ) as r:
        created = await r.json()
    assert (r.status, created["whatsapp_senders"]) == (201, [SENDER])
    async with api.http.post(
        fake.base_url + "/_fake/services",
        json={"account_sid": created["sid"], "rcs_sender": "acme_agent"},
    ) as r:
        service = await r.json()
    assert (r.status, service["rcs_sender"]) == (201, "acme_agent")
    async with api.http.patch(
        fake.base_url + "/_fake/config",
        json={"whatsapp_window_seconds": 60, "read_receipts": False},
    ) as r:
        config = await r.json()
    assert (config["whatsapp_window_seconds"], config["read_receipts"]) == (60, False)
    assert json.dumps(config)
