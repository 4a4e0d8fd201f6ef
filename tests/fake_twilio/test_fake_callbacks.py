"""Status callbacks: signed like Twilio, in sequence, optionally reordered or duplicated."""

from __future__ import annotations

import re

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from bridge.fake_twilio import FakeTwilio, compute_signature
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import Sink, TwilioApi

MG = "MG" + "ab" * 16
STATUS_KEYS = {
    "SmsSid",
    "SmsStatus",
    "MessageStatus",
    "To",
    "MessageSid",
    "AccountSid",
    "From",
    "ApiVersion",
}


async def test_callbacks_are_signed_over_the_url_as_configured(
    api: TwilioApi, account: Account, sink: Sink
) -> None:
    url = sink.url("/status/tok?b=2&a=%2F")
    sid = (await api.send(StatusCallback=url)).json["sid"]

    received = await sink.wait(2, "/status/tok")

    validator = RequestValidator(account.auth_token)
    for request in received:
        signature = request.headers["X-Twilio-Signature"]
        assert request.path_qs == "/status/tok?b=2&a=%2F"
        assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert validator.validate(url, request.form, signature)
        # The explicit port is part of what was signed (Twilio keeps it for SMS).
        assert signature == validator.compute_signature(url, request.form)
        assert not validator.validate(url.replace("a=%2F", "a=/"), request.form, signature)
        assert request.form["MessageSid"] == request.form["SmsSid"] == sid
        assert request.form["AccountSid"] == account.sid
        assert request.form["ApiVersion"] == "2010-04-01"
        assert request.form["MessageStatus"] == request.form["SmsStatus"]
    sent, delivered = received
    assert set(sent.form) == STATUS_KEYS
    assert set(delivered.form) == STATUS_KEYS | {"RawDlrDoneDate"}
    assert re.fullmatch(r"\d{10}", delivered.form["RawDlrDoneDate"])
    assert (
        sent.headers["I-Twilio-Idempotency-Token"]
        != delivered.headers["I-Twilio-Idempotency-Token"]
    )


async def test_undelivered_callback_carries_error_code_and_dlr_date(
    api: TwilioApi, sink: Sink
) -> None:
    await api.send(to="+15005553007", StatusCallback=sink.url("/status"))
    received = await sink.wait(2, "/status")
    final = received[-1].form
    assert final["MessageStatus"] == "undelivered"
    assert final["ErrorCode"] == "30007"
    assert "RawDlrDoneDate" in final


async def test_messaging_service_callbacks_start_at_queued_and_name_the_service(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    reply = await api.create(
        ("To", "+15551230002"),
        ("MessagingServiceSid", MG),
        ("Body", "hi"),
        ("StatusCallback", sink.url("/status")),
    )
    received = await sink.wait(3, "/status")

    assert [r.form["MessageStatus"] for r in received] == ["queued", "sent", "delivered"]
    assert {r.form["MessagingServiceSid"] for r in received} == {MG}
    assert all(r.form["From"].startswith("+") for r in received)
    await fake.idle()
    fetched = (await api.fetch(reply.json["sid"])).json
    assert fetched["from"] == received[0].form["From"]
    assert fetched["num_segments"] == "1"


async def test_no_callback_without_status_callback_but_status_still_moves(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    sid = (await api.send()).json["sid"]
    await fake.idle()
    assert fake.state.callbacks() == []
    assert (await api.fetch(sid)).json["status"] == "delivered"


async def test_reordered_callbacks_arrive_final_status_first(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.reorder_callbacks = True
    await api.send(StatusCallback=sink.url("/status"))
    received = await sink.wait(2, "/status")
    assert [r.form["MessageStatus"] for r in received] == ["delivered", "sent"]


async def test_dropped_callbacks_never_arrive_but_the_message_moves_on(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.drop_callbacks = True
    sid = (await api.send(StatusCallback=sink.url("/status"))).json["sid"]
    await fake.idle()

    assert (await api.fetch(sid)).json["status"] == "delivered"
    assert fake.state.dropped_callbacks == 2
    assert fake.state.callbacks() == []
    assert sink.received == []


async def test_duplicated_callbacks_repeat_token_and_signature(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.duplicate_callbacks = True
    await api.send(StatusCallback=sink.url("/status"))
    received = await sink.wait(4, "/status")

    statuses = [r.form["MessageStatus"] for r in received]
    tokens = [r.headers["I-Twilio-Idempotency-Token"] for r in received]
    assert statuses == ["sent", "sent", "delivered", "delivered"]
    assert tokens[0] == tokens[1] != tokens[2] == tokens[3]
    assert received[0].body == received[1].body
    assert received[0].headers["X-Twilio-Signature"] == received[1].headers["X-Twilio-Signature"]
    await fake.idle()
    records = fake.state.callbacks()
    assert [r.duplicate for r in records] == [False, True, False, True]


async def test_callback_delay_spaces_the_transitions(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.callback_delay = 0.3
    sid = (await api.send(StatusCallback=sink.url("/status"))).json["sid"]
    await sink.wait(1, "/status")
    assert (await api.fetch(sid)).json["status"] == "sent"
    assert len(sink.at("/status")) == 1
    await sink.wait(2, "/status")


async def test_answers_to_callbacks_are_recorded(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="bad signature")

    sink.responders["/status"] = refuse
    await api.send(StatusCallback=sink.url("/status"))
    records = await fake.wait_callbacks(2)
    answers = [r.answer for r in records]
    assert [(a.status, a.body) for a in answers if a] == [(403, "bad signature")] * 2


async def test_the_fake_signs_with_the_accounts_own_token(
    fake: FakeTwilio, api: TwilioApi, sink: Sink
) -> None:
    await api.send(StatusCallback=sink.url("/status"))
    request = (await sink.wait(1, "/status"))[0]
    pairs = list(MultiDict(request.form).items())
    expected = compute_signature(api.account.auth_token, sink.url("/status"), pairs)
    assert request.headers["X-Twilio-Signature"] == expected
    assert compute_signature("another-token", sink.url("/status"), pairs) != expected
