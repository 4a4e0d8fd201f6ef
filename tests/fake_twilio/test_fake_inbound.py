"""Inbound webhooks: Twilio's parameter set, signatures, JSON bodies, retries and fallback."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from twilio.request_validator import RequestValidator

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import TWIML_EMPTY, Sink

CORE = {
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "AccountSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "ApiVersion",
    "SmsStatus",
}
GEO = {f"{side}{part}" for side in ("From", "To") for part in ("City", "State", "Zip", "Country")}
MG = "MG" + "cd" * 16


async def test_inbound_sms_has_twilios_parameters_and_a_valid_signature(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    url = sink.url("/sms/twilio/tok/inbound?x=1")
    result = await fake.send_inbound(url, from_="+15557770000", to="+15551230001", body="hello")

    request = (await sink.wait(1, "/sms/twilio/tok/inbound"))[0]
    form = request.form
    assert set(form) == CORE | GEO
    sid = result.message.sid
    assert sid.startswith("SM") and len(sid) == 34
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"] == sid
    assert (form["From"], form["To"], form["Body"]) == ("+15557770000", "+15551230001", "hello")
    assert (form["NumMedia"], form["NumSegments"], form["SmsStatus"]) == ("0", "1", "received")
    assert form["AccountSid"] == account.sid
    assert (form["FromCountry"], form["ToCountry"]) == ("US", "US")
    assert request.headers["I-Twilio-Idempotency-Token"]
    assert RequestValidator(account.auth_token).validate(
        url, form, request.headers["X-Twilio-Signature"]
    )
    answer = result.webhook.answer
    assert answer is not None
    assert (answer.status, answer.body) == (200, TWIML_EMPTY)
    assert answer.content_type is not None and answer.content_type.startswith("text/xml")


async def test_inbound_mms_points_media_urls_at_the_fake(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    result = await fake.send_inbound(
        sink.url("/in"),
        from_="+15557770000",
        to="+15551230001",
        media=[("image/png", b"\x89PNG..."), ("text/vcard", b"BEGIN:VCARD")],
        messaging_service_sid=MG,
    )

    form = (await sink.wait(1, "/in"))[0].form
    sid = result.message.sid
    assert sid.startswith("MM")
    assert form["NumMedia"] == "2"
    assert form["MessagingServiceSid"] == MG
    assert (form["MediaContentType0"], form["MediaContentType1"]) == ("image/png", "text/vcard")
    prefix = f"{fake.base_url}/2010-04-01/Accounts/{account.sid}/Messages/{sid}/Media/ME"
    assert form["MediaUrl0"].startswith(prefix)
    assert form["MediaUrl1"].startswith(prefix)
    assert not form["MediaUrl0"].endswith(".json")


async def test_opt_out_type_and_unknown_extra_params_are_sent_and_signed(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    url = sink.url("/in")
    await fake.send_inbound(
        url,
        from_="+15557770000",
        to="+15551230001",
        body="STOP",
        opt_out_type="STOP",
        extra_params={"AddOns": '{"status":"successful"}', "BrandNewParam": "ü"},
        include_geo=False,
    )
    request = (await sink.wait(1, "/in"))[0]
    assert set(request.form) == CORE | {"OptOutType", "AddOns", "BrandNewParam"}
    assert request.form["BrandNewParam"] == "ü"
    signature = request.headers["X-Twilio-Signature"]
    validator = RequestValidator(account.auth_token)
    assert validator.validate(url, request.form, signature)
    trimmed = {k: v for k, v in request.form.items() if k != "BrandNewParam"}
    assert not validator.validate(url, trimmed, signature)


async def test_json_body_variant_signs_url_with_body_hash(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    result = await fake.send_inbound(
        sink.url("/json?a=1"),
        from_="+15557770000",
        to="+15551230001",
        json_body={"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030"},
    )
    request = (await sink.wait(1, "/json"))[0]
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030"}
    query = request.path_qs.partition("?")[2]
    assert query.startswith("a=1&bodySHA256=")
    full_url = sink.url(request.path_qs)
    assert result.webhook.signed_url == full_url
    assert RequestValidator(account.auth_token).validate(
        full_url, request.body.decode(), request.headers["X-Twilio-Signature"]
    )


async def test_get_method_puts_params_in_the_query(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    await fake.send_inbound(
        sink.url("/get"), from_="+15557770000", to="+15551230001", body="x y", method="GET"
    )
    request = (await sink.wait(1, "/get"))[0]
    assert request.method == "GET"
    assert request.body == b""
    assert "Body=x+y" in request.path_qs
    assert RequestValidator(account.auth_token).validate(
        sink.url(request.path_qs), {}, request.headers["X-Twilio-Signature"]
    )


async def test_invalid_and_missing_signature_modes(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    url = sink.url("/in")
    await fake.send_inbound(url, from_="+15557770000", to="+15551230001", signature="invalid")
    await fake.send_inbound(url, from_="+15557770000", to="+15551230001", signature="missing")
    invalid, missing = await sink.wait(2, "/in")
    validator = RequestValidator(account.auth_token)
    assert not validator.validate(url, invalid.form, invalid.headers["X-Twilio-Signature"])
    assert "X-Twilio-Signature" not in missing.headers


async def test_sign_url_override_signs_another_url(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    public = "https://pbx.example.test/sms/twilio/tok/inbound"
    await fake.send_inbound(
        sink.url("/sms/twilio/tok/inbound"), from_="+15557770000", to="+1555", sign_url=public
    )
    request = (await sink.wait(1, "/sms/twilio/tok/inbound"))[0]
    assert RequestValidator(account.auth_token).validate(
        public, request.form, request.headers["X-Twilio-Signature"]
    )


async def test_fragment_overrides_drive_retries_with_one_idempotency_token(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    sink.responders["/flaky"] = fail
    retried = await fake.send_inbound(
        sink.url("/flaky#rc=2&rp=5xx"), from_="+15557770000", to="+15551230001"
    )
    default = await fake.send_inbound(sink.url("/flaky"), from_="+15557770000", to="+15551230001")

    assert [a.status for a in retried.webhook.attempts] == [500, 500, 500]
    assert [a.status for a in default.webhook.attempts] == [500]
    received = sink.at("/flaky")
    assert len(received) == 4
    assert len({r.headers["I-Twilio-Idempotency-Token"] for r in received[:3]}) == 1
    assert "#" not in received[0].path_qs


async def test_connection_failures_are_retried_once_by_default(
    fake: FakeTwilio, account: Account
) -> None:
    closed = Sink()
    await closed.start()
    url = closed.url("/in")
    await closed.stop()

    result = await fake.send_inbound(url, from_="+15557770000", to="+15551230001")

    attempts = result.webhook.attempts
    assert len(attempts) == 2
    assert all(a.status is None and (a.error or "").startswith("connect") for a in attempts)


async def test_read_timeout_from_fragment(fake: FakeTwilio, account: Account, sink: Sink) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1)
        return web.Response(text=TWIML_EMPTY, content_type="text/xml")

    sink.responders["/slow"] = slow
    result = await fake.send_inbound(
        sink.url("/slow#rt=200&rc=0"), from_="+15557770000", to="+15551230001"
    )
    assert len(result.webhook.attempts) == 1
    assert (result.webhook.attempts[0].error or "").startswith("read")


async def test_url_credentials_are_sent_only_after_a_challenge(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Basic dXNlcjpwYXNz":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        return web.Response(text=TWIML_EMPTY, content_type="text/xml")

    sink.responders["/auth"] = guarded
    url = sink.url("/auth").replace("http://", "http://user:pass@")
    result = await fake.send_inbound(url, from_="+15557770000", to="+15551230001")

    attempts = result.webhook.attempts
    assert [(a.status, a.authorized) for a in attempts] == [(401, False), (200, True)]
    request = sink.at("/auth")[-1]
    assert RequestValidator(account.auth_token).validate(
        sink.url("/auth"), request.form, request.headers["X-Twilio-Signature"]
    )


async def test_fallback_url_gets_the_error(fake: FakeTwilio, account: Account, sink: Sink) -> None:
    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    sink.responders["/primary"] = fail
    result = await fake.send_inbound(
        sink.url("/primary"),
        from_="+15557770000",
        to="+15551230001",
        fallback_url=sink.url("/fallback"),
    )
    request = (await sink.wait(1, "/fallback"))[0]
    assert result.fallback is not None
    assert request.form["ErrorCode"] == "11200"
    assert request.form["ErrorUrl"] == sink.url("/primary")
    assert request.form["MessageSid"] == result.message.sid
    assert RequestValidator(account.auth_token).validate(
        sink.url("/fallback"), request.form, request.headers["X-Twilio-Signature"]
    )


async def test_resend_repeats_the_same_webhook(
    fake: FakeTwilio, account: Account, sink: Sink
) -> None:
    result = await fake.send_inbound(sink.url("/in"), from_="+15557770000", to="+15551230001")
    again = await fake.dispatcher.resend(result.webhook)
    first, second = await sink.wait(2, "/in")
    assert again.duplicate
    assert first.body == second.body
    for header in ("X-Twilio-Signature", "I-Twilio-Idempotency-Token"):
        assert first.headers[header] == second.headers[header]
