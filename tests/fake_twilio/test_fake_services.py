"""Messaging v1 Services: fetch and update a service, list its numbers, in that API's shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.faults import Fault
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import (
    ISO8601_UTC,
    TwilioApi,
    basic,
    response_schema,
    schema_errors,
)

ONE = "/v1/Services/{Sid}"
NUMBERS = "/v1/Services/{ServiceSid}/PhoneNumbers"
MAIN = "+15551230001"
SECOND = "+15551230002"
UNKNOWN_MG = "MG" + "0" * 32
ERROR_KEYS = {"code", "message", "more_info", "status"}


def service_path(sid: str, suffix: str = "") -> str:
    return f"/v1/Services/{sid}{suffix}"


async def test_fetch_answers_the_service_as_the_spec_describes(
    api: TwilioApi, fake: FakeTwilio, services_spec: dict[str, Any]
) -> None:
    service = fake.add_service(
        api.account.sid,
        numbers=[MAIN],
        inbound_request_url="https://pbx.example.test/sms/twilio/tok/inbound",
        friendly_name="PBX pool",
    )

    reply = await api.request("GET", service_path(service.sid))

    assert reply.status == 200, reply.text
    body = reply.json
    assert (
        schema_errors(body, response_schema(services_spec, ONE, "get", "200"), services_spec) == []
    )
    resource = services_spec["components"]["schemas"]["messaging.v1.service"]
    assert set(body) == set(resource["properties"])
    assert body["sid"] == service.sid and body["sid"].startswith("MG")
    assert (body["account_sid"], body["friendly_name"]) == (api.account.sid, "PBX pool")
    assert body["inbound_request_url"] == "https://pbx.example.test/sms/twilio/tok/inbound"
    assert (body["inbound_method"], body["use_inbound_webhook_on_number"]) == ("POST", False)
    assert (body["fallback_url"], body["status_callback"]) == (None, None)
    assert ISO8601_UTC.fullmatch(body["date_created"])
    assert body["url"] == f"{fake.base_url}/v1/Services/{service.sid}"
    assert body["links"]["phone_numbers"] == f"{body['url']}/PhoneNumbers"


async def test_update_changes_the_inbound_setup(
    api: TwilioApi, fake: FakeTwilio, services_spec: dict[str, Any]
) -> None:
    service = fake.add_service(api.account.sid, inbound_request_url="https://old.example.test/in")
    service.created = service.updated = datetime.now(UTC).replace(microsecond=0) - timedelta(1)
    form = [
        ("InboundRequestUrl", "https://pbx.example.test/sms/twilio/tok/inbound"),
        ("InboundMethod", "GET"),
        ("FallbackUrl", "https://pbx.example.test/fallback"),
        ("FallbackMethod", "get"),
        ("StatusCallback", "https://pbx.example.test/status"),
        ("UseInboundWebhookOnNumber", "true"),
        ("FriendlyName", "renamed"),
        ("StickySender", "False"),
        ("ValidityPeriod", "600"),
        ("ScanMessageContent", "disable"),
        ("Usecase", "notifications"),
    ]

    reply = await api.request("POST", service_path(service.sid), data=form)
    fetched = await api.request("GET", service_path(service.sid))

    assert reply.status == 200, reply.text
    body = reply.json
    assert (
        schema_errors(body, response_schema(services_spec, ONE, "post", "200"), services_spec) == []
    )
    assert body == fetched.json
    assert body["inbound_request_url"] == "https://pbx.example.test/sms/twilio/tok/inbound"
    assert (body["inbound_method"], body["fallback_method"]) == ("GET", "GET")
    assert body["fallback_url"] == "https://pbx.example.test/fallback"
    assert body["status_callback"] == "https://pbx.example.test/status"
    assert (body["use_inbound_webhook_on_number"], body["sticky_sender"]) == (True, False)
    assert (body["friendly_name"], body["validity_period"]) == ("renamed", 600)
    assert (body["scan_message_content"], body["usecase"]) == ("disable", "notifications")
    assert body["date_updated"] > body["date_created"]

    cleared = await api.request(
        "POST", service_path(service.sid), data=[("InboundRequestUrl", ""), ("FallbackUrl", "")]
    )
    assert (cleared.json["inbound_request_url"], cleared.json["fallback_url"]) == (None, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("InboundRequestUrl", "not a url"),
        ("InboundRequestUrl", "ftp://files.example.test/in"),
        ("FallbackUrl", "https://bad_host.example.test/"),
        ("StatusCallback", "//no-scheme.example.test/"),
        ("InboundMethod", "PUT"),
        ("FallbackMethod", "DELETE"),
        ("UseInboundWebhookOnNumber", "yes"),
        ("ValidityPeriod", "0"),
        ("ValidityPeriod", "36001"),
        ("ScanMessageContent", "maybe"),
        ("Usecase", "spam"),
    ],
)
async def test_invalid_values_are_refused_and_change_nothing(
    api: TwilioApi, fake: FakeTwilio, name: str, value: str
) -> None:
    service = fake.add_service(api.account.sid, inbound_request_url="https://pbx.example.test/in")
    before = service.resource(fake.base_url)

    reply = await api.request(
        "POST", service_path(service.sid), data=[("FriendlyName", "changed"), (name, value)]
    )

    assert reply.status == 400
    assert set(reply.json) == ERROR_KEYS
    assert (reply.json["code"], reply.json["status"]) == (20001, 400)
    assert name in reply.json["message"]
    assert service.resource(fake.base_url) == before


async def test_unknown_or_foreign_services_are_404(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    other = fake.add_account()
    theirs = fake.add_service(other.sid, numbers=[SECOND])

    replies = [
        await api.request("GET", service_path(UNKNOWN_MG)),
        await api.request("POST", service_path(UNKNOWN_MG), data=[("FriendlyName", "x")]),
        await api.request("GET", service_path(UNKNOWN_MG, "/PhoneNumbers")),
        await api.request("GET", service_path(theirs.sid)),
        await api.request("GET", service_path(theirs.sid, "/PhoneNumbers")),
    ]

    for reply in replies:
        assert reply.status == 404
        assert set(reply.json) == ERROR_KEYS
        assert reply.json["code"] == 20404
        assert reply.json["message"].startswith("The requested resource /Services/MG")
    assert theirs.friendly_name == "Fake Messaging Service"


async def test_credentials_are_checked_as_for_the_rest_api(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    service = fake.add_service(account.sid)
    key = fake.add_key(account.sid, kind="standard")

    none = await api.request("GET", service_path(service.sid), headers={})
    wrong = await api.request("GET", service_path(service.sid), headers=basic(account.sid, "x"))
    by_key = await api.request("GET", service_path(service.sid), headers=basic(key.sid, key.secret))

    assert (none.status, none.json["code"]) == (401, 20003)
    assert (wrong.status, wrong.json["code"]) == (401, 20003)
    assert by_key.status == 200
    assert {r.operation for r in fake.state.requests} == {"services"}


async def test_phone_numbers_list_in_the_meta_shape_with_absolute_page_urls(
    api: TwilioApi, fake: FakeTwilio, services_spec: dict[str, Any]
) -> None:
    phones = [MAIN, SECOND, "+15551230003"]
    service = fake.add_service(api.account.sid, numbers=phones)
    fake.add_number(api.account.sid, "+15551239999")
    schema = response_schema(services_spec, NUMBERS, "get", "200")
    seen: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []

    reply = await api.request("GET", service_path(service.sid, "/PhoneNumbers?PageSize=2"))
    while True:
        assert reply.status == 200, reply.text
        page = reply.json
        assert schema_errors(page, schema, services_spec) == []
        assert set(page) == {"phone_numbers", "meta"}
        assert set(page["meta"]) == set(schema["properties"]["meta"]["properties"])
        seen.extend(page["phone_numbers"])
        metas.append(page["meta"])
        if page["meta"]["next_page_url"] is None:
            break
        assert page["meta"]["next_page_url"].startswith(fake.base_url + "/v1/Services/")
        reply = await api.request("GET", page["meta"]["next_page_url"])

    assert [n["phone_number"] for n in seen] == phones
    assert {m["key"] for m in metas} == {"phone_numbers"}
    assert [m["page"] for m in metas] == [0, 1]
    assert metas[0]["first_page_url"] == (
        f"{fake.base_url}/v1/Services/{service.sid}/PhoneNumbers?PageSize=2&Page=0"
    )
    numbers = {n.phone_number: n for n in fake.state.directory.numbers.values()}
    first = seen[0]
    assert first["sid"] == numbers[MAIN].sid
    assert (first["service_sid"], first["account_sid"]) == (service.sid, api.account.sid)
    assert (first["country_code"], first["capabilities"]) == ("US", ["MMS", "SMS", "Voice"])
    assert first["url"] == f"{fake.base_url}/v1/Services/{service.sid}/PhoneNumbers/{first['sid']}"
    assert ISO8601_UTC.fullmatch(first["date_created"])


async def test_injected_faults_reach_the_services_api(api: TwilioApi, fake: FakeTwilio) -> None:
    service = fake.add_service(api.account.sid)
    fake.state.faults.add_next(Fault("500"), operations=("services",))
    fake.state.faults.add_next(Fault("429-no-retry-after"), operations=("services",))

    broken = await api.request("GET", service_path(service.sid))
    limited = await api.request("GET", service_path(service.sid, "/PhoneNumbers"))

    assert (broken.status, broken.json["code"]) == (500, 20500)
    assert (limited.status, limited.json["code"]) == (429, 20429)
    assert "Retry-After" not in limited.headers
    assert (await api.request("GET", service_path(service.sid))).status == 200


def test_a_number_belongs_to_one_service_and_one_account(
    fake: FakeTwilio, account: Account
) -> None:
    first = fake.add_service(account.sid, numbers=[MAIN])
    other = fake.add_account()
    fake.add_number(other.sid, SECOND)

    with pytest.raises(ValueError, match=f"already in Messaging Service {first.sid}"):
        fake.add_service(account.sid, numbers=[MAIN])
    with pytest.raises(ValueError, match="another account"):
        fake.add_service(account.sid, numbers=[SECOND])
    with pytest.raises(KeyError):
        fake.add_service(account.sid, numbers=["PN" + "0" * 32])
    assert len(fake.state.directory.services) == 1


async def test_a_send_through_a_known_service_comes_from_its_pool(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    fake.add_number(api.account.sid, MAIN)
    service = fake.add_service(api.account.sid, numbers=[SECOND])

    reply = await api.create(
        ("To", "+15559990000"), ("MessagingServiceSid", service.sid), ("Body", "hi")
    )

    assert (reply.status, reply.json["from"]) == (201, None)
    message = fake.state.messages[reply.json["sid"]]
    await fake.wait_for(lambda: message.from_ is not None)
    assert message.from_ == SECOND
