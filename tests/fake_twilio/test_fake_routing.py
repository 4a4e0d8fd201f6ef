"""Where an inbound text goes without an explicit URL: the number's SmsUrl or its service's."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from bridge.fake_twilio.webhooks import Unroutable
from tests.fake_twilio.helpers import Sink, TwilioApi

MAIN = "+15551230001"
REMOTE = "+15557770000"


async def test_the_numbers_sms_url_receives_the_text(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    url = sink.url("/sms/twilio/tok/inbound?n=1")
    fake.add_number(account.sid, MAIN, sms_url=url)

    result = await fake.send_inbound(None, from_=REMOTE, to=MAIN, body="hi")

    request = (await sink.wait(1, "/sms/twilio/tok/inbound"))[0]
    assert result.route == "number"
    assert (request.method, request.form["Body"], request.form["To"]) == ("POST", "hi", MAIN)
    assert "MessagingServiceSid" not in request.form
    assert RequestValidator(account.auth_token).validate(
        url, request.form, request.headers["X-Twilio-Signature"]
    )


async def test_the_numbers_sms_method_and_fallback_apply(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    sink.responders["/primary"] = broken
    number = fake.add_number(
        account.sid, MAIN, sms_url=sink.url("/primary"), sms_fallback_url=sink.url("/fallback")
    )
    number.sms_method = "GET"
    number.sms_fallback_method = "GET"

    result = await fake.send_inbound(None, from_=REMOTE, to=MAIN, body="x y")

    primary = (await sink.wait(1, "/primary"))[0]
    fallback = (await sink.wait(1, "/fallback"))[0]
    assert primary.method == fallback.method == "GET"
    assert "Body=x+y" in primary.path_qs
    assert "ErrorCode=11200" in fallback.path_qs
    assert result.fallback is not None and result.fallback.method == "GET"


async def test_a_service_that_does_not_defer_receives_its_numbers_texts(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    fake.add_number(account.sid, MAIN, sms_url=sink.url("/number"))
    service = fake.add_service(
        account.sid, numbers=[MAIN], inbound_request_url=sink.url("/service")
    )

    result = await fake.send_inbound(None, from_=REMOTE, to=MAIN, body="hi")

    request = (await sink.wait(1, "/service"))[0]
    assert result.route == "service"
    assert request.form["MessagingServiceSid"] == service.sid
    assert result.message.messaging_service_sid == service.sid
    assert sink.at("/number") == []


async def test_a_service_that_defers_leaves_the_text_to_the_numbers_sms_url(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    fake.add_number(account.sid, MAIN, sms_url=sink.url("/number"))
    service = fake.add_service(
        account.sid,
        numbers=[MAIN],
        inbound_request_url=sink.url("/service"),
        use_inbound_webhook_on_number=True,
    )

    result = await fake.send_inbound(None, from_=REMOTE, to=MAIN, body="hi")

    request = (await sink.wait(1, "/number"))[0]
    assert result.route == "number"
    assert request.form["MessagingServiceSid"] == service.sid
    assert sink.at("/service") == []


async def test_an_explicit_url_still_wins(fake: FakeTwilio, account: Account, sink: Sink) -> None:
    fake.add_service(account.sid, numbers=[MAIN], inbound_request_url=sink.url("/service"))

    result = await fake.send_inbound(sink.url("/given"), from_=REMOTE, to=MAIN, body="hi")

    await sink.wait(1, "/given")
    assert result.route == "request"
    assert sink.at("/service") == []


async def test_nothing_configured_means_no_webhook(fake: FakeTwilio, account: Account) -> None:
    fake.add_number(account.sid, MAIN)
    fake.add_service(account.sid, numbers=["+15551230002"])

    with pytest.raises(Unroutable, match="no SmsUrl"):
        await fake.send_inbound(None, from_=REMOTE, to=MAIN)
    with pytest.raises(Unroutable, match="drops the message"):
        await fake.send_inbound(None, from_=REMOTE, to="+15551230002")
    with pytest.raises(LookupError, match="not a provisioned number"):
        await fake.send_inbound(None, from_=REMOTE, to="+15551239999")
    assert fake.state.messages == {}


async def test_routing_follows_an_update_through_the_rest_api(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    number = fake.add_number(api.account.sid, MAIN, sms_url="https://elsewhere.example.test/")
    path = api.path(f"/IncomingPhoneNumbers/{number.sid}.json")
    updated = await api.request("POST", path, data=[("SmsUrl", sink.url("/moved"))])
    assert updated.status == 200

    async with http.post(
        f"{fake.base_url}/_fake/inbound", json={"from": REMOTE, "to": MAIN, "body": "hi"}
    ) as response:
        assert response.status == 200
        report = await response.json()

    assert report["routed_by"] == "number"
    assert report["webhook"]["url"] == sink.url("/moved")
    assert report["twiml_ok"] is True
    assert len(sink.at("/moved")) == 1


async def test_the_control_api_explains_an_unroutable_text(
    fake: FakeTwilio, account: Account, http: aiohttp.ClientSession
) -> None:
    fake.add_number(account.sid, MAIN)
    inbound = f"{fake.base_url}/_fake/inbound"

    async with http.post(inbound, json={"from": REMOTE, "to": MAIN}) as response:
        no_url = (response.status, await response.json())
    async with http.post(inbound, json={"from": REMOTE, "to": "+15551239999"}) as response:
        unknown = response.status

    assert no_url[0] == 409 and "SmsUrl" in no_url[1]["error"]
    assert unknown == 404
