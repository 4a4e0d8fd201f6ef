"""IncomingPhoneNumbers: the resource as the spec describes it, list filters, paging, updates."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.faults import Fault
from bridge.fake_twilio.numbers import Capabilities
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import (
    TwilioApi,
    basic,
    response_example,
    response_schema,
    schema_errors,
)

LIST = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json"
ONE = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json"
MAIN = "+15551230001"
SECOND = "+15551230002"
ELSEWHERE = "+14155550100"
UNKNOWN_PN = "PN" + "0" * 32


def spec_errors(body: Any, spec: dict[str, Any], path: str, method: str, example: str) -> list[str]:
    """Schema errors of `body` other than those Twilio's own example has.

    The examples show unset application SIDs as "", which the schema's SID pattern refuses;
    the fake answers as the examples do. Errors are compared without their list index.
    """
    schema = response_schema(spec, path, method, "200")
    allowed = {
        re.sub(r"\[\d+\]", "[]", e)
        for e in schema_errors(response_example(spec, path, method, "200", example), schema, spec)
    }
    found = schema_errors(body, schema, spec)
    return [e for e in found if re.sub(r"\[\d+\]", "[]", e) not in allowed]


def numbers_path(api: TwilioApi, sid: str | None = None) -> str:
    return api.path("/IncomingPhoneNumbers" + (f"/{sid}" if sid else "") + ".json")


async def listed(api: TwilioApi, *params: tuple[str, str]) -> list[str]:
    reply = await api.request("GET", numbers_path(api), params=params)
    assert reply.status == 200, reply.text
    return [n["phone_number"] for n in reply.json["incoming_phone_numbers"]]


async def test_a_number_is_the_resource_the_spec_describes(
    api: TwilioApi, fake: FakeTwilio, numbers_spec: dict[str, Any]
) -> None:
    number = fake.add_number(
        api.account.sid, MAIN, capabilities=Capabilities(voice=True, sms=True, mms=False)
    )

    reply = await api.request("GET", numbers_path(api, number.sid))

    assert reply.status == 200
    body = reply.json
    assert spec_errors(body, numbers_spec, ONE, "get", "fetch") == []
    resource = numbers_spec["components"]["schemas"]["api.v2010.account.incoming_phone_number"]
    assert set(body) == set(resource["properties"])
    assert body["sid"] == number.sid and len(body["sid"]) == 34
    assert (body["account_sid"], body["phone_number"]) == (api.account.sid, MAIN)
    assert body["friendly_name"] == "(555) 123-0001"
    assert body["capabilities"] == {"voice": True, "sms": True, "mms": False, "fax": False}
    assert (body["sms_url"], body["sms_method"], body["sms_fallback_url"]) == ("", "POST", "")
    assert body["uri"] == numbers_path(api, number.sid)
    assert parsedate_to_datetime(body["date_created"]).tzinfo is not None
    assert MAIN in api.account.numbers


async def test_phone_number_filter_matches_exactly_or_by_partial_digits(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    for phone in (MAIN, SECOND, ELSEWHERE):
        fake.add_number(api.account.sid, phone)

    assert await listed(api) == [MAIN, SECOND, ELSEWHERE]
    assert await listed(api, ("PhoneNumber", MAIN)) == [MAIN]
    assert await listed(api, ("PhoneNumber", "5551230")) == [MAIN, SECOND]
    assert await listed(api, ("PhoneNumber", "+1415")) == [ELSEWHERE]
    assert await listed(api, ("PhoneNumber", "+1555")) == [MAIN, SECOND]
    assert await listed(api, ("PhoneNumber", "1555")) == [MAIN, SECOND, ELSEWHERE]
    assert await listed(api, ("PhoneNumber", "(555) 123-000*")) == [MAIN, SECOND]
    assert await listed(api, ("PhoneNumber", "***0100")) == [ELSEWHERE]
    assert await listed(api, ("PhoneNumber", "+15551239999")) == []


async def test_friendly_name_filter_and_the_echoed_filters(
    api: TwilioApi, fake: FakeTwilio, numbers_spec: dict[str, Any]
) -> None:
    fake.add_number(api.account.sid, MAIN)
    fake.state.directory.add_number(api.account.sid, SECOND, friendly_name="front desk")

    reply = await api.request(
        "GET", numbers_path(api), params=[("FriendlyName", "front desk"), ("PhoneNumber", "+1555")]
    )

    page = reply.json
    assert [n["phone_number"] for n in page["incoming_phone_numbers"]] == [SECOND]
    assert spec_errors(page, numbers_spec, LIST, "get", "readFull") == []
    query = parse_qsl(urlsplit(page["uri"]).query)
    assert query == [
        ("FriendlyName", "front desk"),
        ("PhoneNumber", "+1555"),
        ("PageSize", "50"),
        ("Page", "0"),
    ]
    assert await listed(api, ("FriendlyName", "front")) == []
    assert await listed(api, ("Beta", "false"), ("Origin", "twilio")) == [MAIN, SECOND]
    assert await listed(api, ("Origin", "hosted")) == []


async def test_paging_walks_every_number_once(
    api: TwilioApi, fake: FakeTwilio, numbers_spec: dict[str, Any]
) -> None:
    phones = [f"+1555123000{i}" for i in range(5)]
    for phone in phones:
        fake.add_number(api.account.sid, phone)
    schema = response_schema(numbers_spec, LIST, "get", "200")
    seen: list[str] = []
    pages = 0

    reply = await api.request("GET", numbers_path(api), params=[("PageSize", "2")])
    while True:
        assert reply.status == 200
        page = reply.json
        assert spec_errors(page, numbers_spec, LIST, "get", "readFull") == []
        assert set(page) == set(schema["properties"])
        seen.extend(n["phone_number"] for n in page["incoming_phone_numbers"])
        pages += 1
        if page["next_page_uri"] is None:
            break
        assert page["next_page_uri"].startswith(numbers_path(api) + "?")
        reply = await api.request("GET", page["next_page_uri"])

    assert seen == phones
    assert pages == 3


async def test_an_account_sees_only_its_own_numbers(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    other = fake.add_account()
    theirs = fake.add_number(other.sid, ELSEWHERE)
    fake.add_number(account.sid, MAIN)

    foreign_sid = await api.request("GET", numbers_path(api, theirs.sid))
    foreign_account = await api.request(
        "GET", f"/2010-04-01/Accounts/{other.sid}/IncomingPhoneNumbers.json"
    )

    assert await listed(api) == [MAIN]
    assert (foreign_sid.status, foreign_sid.json["code"]) == (404, 20404)
    assert (foreign_account.status, foreign_account.json["code"]) == (401, 20003)


async def test_credentials_are_checked_like_the_messages_api(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    fake.add_number(account.sid, MAIN)
    key = fake.add_key(account.sid, kind="standard")

    none = await api.request("GET", numbers_path(api), headers={})
    wrong = await api.request("GET", numbers_path(api), headers=basic(key.sid, "wrong"))
    by_key = await api.request("GET", numbers_path(api), headers=basic(key.sid, key.secret))

    assert (none.status, none.json["code"]) == (401, 20003)
    assert (wrong.status, wrong.json["code"]) == (401, 20003)
    assert by_key.status == 200
    assert [r.auth_kind for r in fake.state.requests] == ["none", "invalid", "standard"]
    assert {r.operation for r in fake.state.requests} == {"numbers"}


async def test_update_sets_the_webhooks_and_answers_the_new_resource(
    api: TwilioApi, fake: FakeTwilio, numbers_spec: dict[str, Any]
) -> None:
    number = fake.add_number(api.account.sid, MAIN, sms_url="https://old.example.test/sms")
    form = [
        ("SmsUrl", "https://pbx.example.test/sms/twilio/tok/inbound"),
        ("SmsMethod", "get"),
        ("SmsFallbackUrl", "https://pbx.example.test/fallback"),
        ("SmsFallbackMethod", "GET"),
        ("StatusCallback", "https://pbx.example.test/voice-status"),
        ("StatusCallbackMethod", "GET"),
        ("VoiceUrl", "https://pbx.example.test/voice"),
        ("VoiceMethod", "GET"),
        ("FriendlyName", "Main line"),
        ("SmsApplicationSid", "AP" + "1" * 32),
    ]

    reply = await api.request("POST", numbers_path(api, number.sid), data=form)
    fetched = await api.request("GET", numbers_path(api, number.sid))

    assert reply.status == 200, reply.text
    body = reply.json
    assert spec_errors(body, numbers_spec, ONE, "post", "update") == []
    assert body == fetched.json
    assert body["sms_url"] == "https://pbx.example.test/sms/twilio/tok/inbound"
    assert (body["sms_method"], body["sms_fallback_method"]) == ("GET", "GET")
    assert body["sms_fallback_url"] == "https://pbx.example.test/fallback"
    assert body["status_callback"] == "https://pbx.example.test/voice-status"
    assert (body["status_callback_method"], body["voice_method"]) == ("GET", "GET")
    assert (body["voice_url"], body["friendly_name"]) == (
        "https://pbx.example.test/voice",
        "Main line",
    )
    # Unknown or unsupported parameters are ignored, as Twilio ignores them.
    assert body["sms_application_sid"] == ""
    assert parsedate_to_datetime(body["date_updated"]) >= parsedate_to_datetime(
        body["date_created"]
    )

    cleared = await api.request("POST", numbers_path(api, number.sid), data=[("SmsUrl", "")])
    assert (cleared.json["sms_url"], cleared.json["sms_method"]) == ("", "GET")


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("SmsUrl", "ftp://files.example.test/sms", 21402),
        ("SmsUrl", "https://bad_host.example.test/sms", 21402),
        ("SmsUrl", "/relative/sms", 21402),
        ("SmsFallbackUrl", "not a url", 21402),
        ("VoiceUrl", "https://", 21402),
        ("VoiceFallbackUrl", "mailto:ops@example.test", 21402),
        ("StatusCallback", "example.test/status", 21502),
        ("SmsMethod", "PUT", 21403),
        ("SmsFallbackMethod", "DELETE", 21403),
        ("StatusCallbackMethod", "", 21403),
        ("VoiceMethod", "PATCH", 21403),
    ],
)
async def test_invalid_urls_and_methods_are_refused_with_twilios_codes(
    api: TwilioApi, fake: FakeTwilio, name: str, value: str, code: int
) -> None:
    number = fake.add_number(api.account.sid, MAIN, sms_url="https://pbx.example.test/sms")
    before = number.resource()

    reply = await api.request(
        "POST", numbers_path(api, number.sid), data=[("FriendlyName", "changed"), (name, value)]
    )

    assert reply.status == 400
    assert reply.json == {
        "code": code,
        "message": reply.json["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": 400,
    }
    assert name in reply.json["message"] or "callback" in reply.json["message"]
    assert number.resource() == before


async def test_unknown_numbers_are_404_20404(api: TwilioApi) -> None:
    fetched = await api.request("GET", numbers_path(api, UNKNOWN_PN))
    updated = await api.request(
        "POST", numbers_path(api, UNKNOWN_PN), data=[("SmsUrl", "https://x.example.test/")]
    )

    for reply in (fetched, updated):
        assert reply.status == 404
        assert reply.json["code"] == 20404
        assert UNKNOWN_PN in reply.json["message"]


async def test_bad_paging_parameters_are_400(api: TwilioApi) -> None:
    for params in ([("PageSize", "0")], [("PageSize", "many")], [("Beta", "maybe")]):
        reply = await api.request("GET", numbers_path(api), params=params)
        assert (reply.status, reply.json["code"]) == (400, 20001)


async def test_injected_faults_reach_the_numbers_api(api: TwilioApi, fake: FakeTwilio) -> None:
    number = fake.add_number(api.account.sid, MAIN)
    fake.state.faults.add_next(Fault("503"), operations=("numbers",))
    fake.state.faults.add_next(Fault("429"), operations=("numbers",))
    fake.state.faults.add_next(Fault("500-after-create"), operations=("numbers",))

    unavailable = await api.request("GET", numbers_path(api))
    limited = await api.request("GET", numbers_path(api, number.sid))
    applied = await api.request(
        "POST", numbers_path(api, number.sid), data=[("SmsUrl", "https://pbx.example.test/in")]
    )

    assert (unavailable.status, unavailable.json["code"]) == (503, 20503)
    assert (limited.status, limited.json["code"], limited.headers["Retry-After"]) == (
        429,
        20429,
        "1",
    )
    # The update happened although the answer was a 500: exactly what a caller must reconcile.
    assert (applied.status, number.sms_url) == (500, "https://pbx.example.test/in")
    assert (await api.request("GET", numbers_path(api))).status == 200


def test_a_number_is_on_one_account_only(fake: FakeTwilio, account: Account) -> None:
    fake.add_number(account.sid, MAIN)
    other = fake.add_account()

    with pytest.raises(ValueError, match="already provisioned"):
        fake.add_number(other.sid, MAIN)
    with pytest.raises(ValueError, match=r"E\.164"):
        fake.add_number(account.sid, "5551230001")
    with pytest.raises(KeyError):
        fake.add_number("AC" + "0" * 32, SECOND)


def test_accounts_registered_with_numbers_own_them(fake: FakeTwilio) -> None:
    account = fake.add_account(numbers=[MAIN, "12345"])

    assert [n.phone_number for n in fake.state.directory.account_numbers(account.sid)] == [MAIN]
    assert account.numbers == [MAIN, "12345"]
    replaced = fake.add_account(account.sid, account.auth_token, numbers=[SECOND])
    assert [n.phone_number for n in fake.state.directory.account_numbers(replaced.sid)] == [SECOND]
