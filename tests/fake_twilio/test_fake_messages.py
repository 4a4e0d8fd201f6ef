"""Create, fetch and delete messages; answers checked against Twilio's OpenAPI description."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import TwilioApi, schema_errors

MG = "MG" + "0123456789abcdef" * 2
ERROR_KEYS = {"code", "message", "more_info", "status"}


def message_schema(spec: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = spec["components"]["schemas"]["api.v2010.account.message"]
    return schema


def create_example(spec: dict[str, Any]) -> dict[str, Any]:
    post = spec["paths"]["/2010-04-01/Accounts/{AccountSid}/Messages.json"]["post"]
    example: dict[str, Any] = post["responses"]["201"]["content"]["application/json"]["examples"][
        "create"
    ]["value"]
    return example


def test_schema_oracle_accepts_spec_examples_and_rejects_violations(spec: dict[str, Any]) -> None:
    schema = message_schema(spec)
    example = create_example(spec)
    assert schema_errors(example, schema, spec) == []
    broken = {
        "num_segments": 1,
        "error_code": "30007",
        "sid": "XX" + "a" * 32,
        "status": "lost",
        "date_created": "2023-08-24T05:01:45Z",
        "account_sid": "AC123",
    }
    for name, value in broken.items():
        assert schema_errors({**example, name: value}, schema, spec) != [], name
    without_uri = {k: v for k, v in example.items() if k != "uri"}
    assert schema_errors(without_uri, schema, spec) == ["$.uri: missing"]


async def test_create_answers_201_with_every_spec_field_typed_as_the_spec_says(
    api: TwilioApi, account: Account, spec: dict[str, Any]
) -> None:
    reply = await api.send(body="Hello! 👍")

    assert reply.status == 201
    assert reply.headers["Content-Type"].startswith("application/json")
    message = reply.json
    schema = message_schema(spec)
    assert schema_errors(message, schema, spec) == []
    assert set(message) == set(schema["properties"]) == set(create_example(spec))
    assert message["sid"].startswith("SM")
    assert message["status"] == "queued"
    assert message["direction"] == "outbound-api"
    assert message["num_segments"] == "1"
    assert message["num_media"] == "0"
    assert message["error_code"] is None
    assert message["api_version"] == "2010-04-01"
    assert message["account_sid"] == account.sid
    assert message["to"] == "+15551230002"
    assert message["from"] == "+15551230001"
    assert message["body"] == "Hello! 👍"
    base = f"/2010-04-01/Accounts/{account.sid}/Messages/{message['sid']}"
    assert message["uri"] == f"{base}.json"
    assert message["subresource_uris"] == {"media": f"{base}/Media.json"}


async def test_repeated_media_urls_make_an_mm_message_with_media_resources(
    api: TwilioApi, spec: dict[str, Any]
) -> None:
    reply = await api.create(
        ("To", "+15551230002"),
        ("From", "+15551230001"),
        ("MediaUrl", "https://media.example.test/a.png"),
        ("MediaUrl", "https://media.example.test/b.jpg?sig=1"),
    )

    assert reply.status == 201
    message = reply.json
    assert message["sid"].startswith("MM")
    assert message["num_media"] == "2"
    assert schema_errors(message, message_schema(spec), spec) == []
    media = await api.request("GET", message["subresource_uris"]["media"])
    assert media.status == 200
    items = media.json["media_list"]
    assert [m["content_type"] for m in items] == ["image/png", "image/jpeg"]
    media_schema = spec["components"]["schemas"]["api.v2010.account.message.media"]
    for item in items:
        assert schema_errors(item, media_schema, spec) == []
        assert item["parent_sid"] == message["sid"]


async def test_messaging_service_create_is_accepted_without_a_sender_yet(
    api: TwilioApi, spec: dict[str, Any]
) -> None:
    reply = await api.create(
        ("To", "+15551230002"), ("MessagingServiceSid", MG), ("Body", "via service")
    )

    assert reply.status == 201
    message = reply.json
    assert schema_errors(message, message_schema(spec), spec) == []
    assert message["status"] == "accepted"
    assert message["messaging_service_sid"] == MG
    assert message["from"] is None
    assert message["num_segments"] == "0"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("{" * 80, "1"),
        ("{" * 81, "2"),
        ("é" * 160, "1"),
        ("ł" * 70, "1"),
        ("ł" * 71, "2"),
        ("👍" * 35, "1"),
        ("👍" * 36, "2"),
        ("x" * 1600, "11"),
    ],
)
async def test_num_segments_follows_gsm7_and_ucs2_rules(
    api: TwilioApi, body: str, segments: str
) -> None:
    reply = await api.send(body=body)
    assert reply.status == 201
    assert reply.json["num_segments"] == segments


LONG_CALLBACK = "https://cb.example.test/" + "x" * 4000


@pytest.mark.parametrize(
    ("pairs", "code"),
    [
        ([("From", "+15551230001"), ("Body", "hi")], 21604),
        ([("To", "+15551230002"), ("Body", "hi")], 21603),
        ([("To", "+15551230002"), ("From", "+15551230001")], 21602),
        ([("To", "+15551230002"), ("From", "+15551230001"), ("Body", "")], 21602),
        ([("To", "+15551230002"), ("From", "+15551230001"), ("Body", "x" * 1601)], 21617),
        (
            [("To", "+15551230002"), ("From", "+15551230001")]
            + [("MediaUrl", f"https://m.example.test/{i}.png") for i in range(11)],
            21623,
        ),
        (
            [("To", "+15551230002"), ("From", "+15551230001"), ("MediaUrl", "ftp://m.test/a")],
            21620,
        ),
        (
            [("To", "+15551230002"), ("From", "+15551230001"), ("MediaUrl", "/relative.png")],
            21620,
        ),
        (
            [
                ("To", "+15551230002"),
                ("From", "+15551230001"),
                ("Body", "hi"),
                ("StatusCallback", "x"),
            ],
            21609,
        ),
        (
            [
                ("To", "+15551230002"),
                ("From", "+15551230001"),
                ("Body", "hi"),
                ("StatusCallback", "https://bad_host.example.test/status"),
            ],
            21609,
        ),
        (
            [
                ("To", "+15551230002"),
                ("From", "+15551230001"),
                ("Body", "hi"),
                ("StatusCallback", "ftp://cb.example.test/status"),
            ],
            21609,
        ),
        (
            [
                ("To", "+15551230002"),
                ("From", "+15551230001"),
                ("Body", "hi"),
                ("StatusCallback", LONG_CALLBACK),
            ],
            21609,
        ),
        ([("To", "not-a-number"), ("From", "+15551230001"), ("Body", "hi")], 21211),
        ([("To", "+15551230002"), ("From", "ACME Corp"), ("Body", "hi")], 21612),
        ([("To", "+15551230002"), ("From", "!!"), ("Body", "hi")], 21212),
        ([("To", "+15551230002"), ("MessagingServiceSid", "MG123"), ("Body", "hi")], 21701),
    ],
)
async def test_invalid_creates_get_twilio_400_errors_and_store_nothing(
    api: TwilioApi, fake: FakeTwilio, pairs: list[tuple[str, str]], code: int
) -> None:
    reply = await api.create(*pairs)

    assert reply.status == 400
    error = reply.json
    assert set(error) == ERROR_KEYS
    assert error["code"] == code
    assert error["status"] == 400
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(error["message"], str) and error["message"]
    assert fake.state.messages == {}


async def test_limits_are_inclusive(api: TwilioApi) -> None:
    media = [("MediaUrl", f"https://m.example.test/{i}.gif") for i in range(10)]
    reply = await api.create(
        ("To", "+15551230002"), ("From", "+15551230001"), ("Body", "x" * 1600), *media
    )
    assert reply.status == 201
    assert reply.json["num_media"] == "10"


async def test_alphanumeric_sender_is_fine_outside_north_america(api: TwilioApi) -> None:
    reply = await api.create(("To", "+447700900123"), ("From", "ACME Corp"), ("Body", "hi"))
    assert reply.status == 201
    assert reply.json["from"] == "ACME Corp"


async def test_registered_numbers_restrict_the_sender(fake: FakeTwilio, api: TwilioApi) -> None:
    api.account.numbers.append("+15551230009")
    refused = await api.send()
    allowed = await api.create(("To", "+15551230002"), ("From", "+15551230009"), ("Body", "hi"))
    assert refused.status == 400
    assert refused.json["code"] == 21606
    assert allowed.status == 201


async def test_phone_numbers_are_normalised_to_e164(api: TwilioApi) -> None:
    reply = await api.create(("To", "(555) 123-0002"), ("From", "+1 555 123 0001"), ("Body", "x"))
    assert reply.status == 201
    assert (reply.json["to"], reply.json["from"]) == ("+15551230002", "+15551230001")


async def test_fetch_returns_the_message_with_feedback_link_and_later_status(
    api: TwilioApi, fake: FakeTwilio, spec: dict[str, Any]
) -> None:
    sid = (await api.send()).json["sid"]
    await fake.idle()

    reply = await api.fetch(sid)

    assert reply.status == 200
    message = reply.json
    assert schema_errors(message, message_schema(spec), spec) == []
    assert message["sid"] == sid
    assert message["status"] == "delivered"
    assert message["price_unit"] == "USD"
    assert message["price"] is not None and float(message["price"]) < 0
    assert set(message["subresource_uris"]) == {"media", "feedback"}


async def test_fetch_of_an_unknown_message_is_a_twilio_404(api: TwilioApi) -> None:
    sid = "SM" + "0" * 32
    reply = await api.fetch(sid)

    assert reply.status == 404
    assert reply.json == {
        "code": 20404,
        "message": f"The requested resource {api.path(f'/Messages/{sid}.json')} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }


async def test_another_accounts_message_is_not_found(
    api: TwilioApi, fake: FakeTwilio, http: Any
) -> None:
    sid = (await api.send()).json["sid"]
    other = TwilioApi(http, fake, fake.add_account())
    assert (await other.fetch(sid)).status == 404


async def test_delete_answers_204_and_the_message_is_gone(api: TwilioApi) -> None:
    sid = (await api.send()).json["sid"]

    deleted = await api.request("DELETE", api.path(f"/Messages/{sid}.json"))

    assert deleted.status == 204
    assert deleted.text == ""
    assert (await api.fetch(sid)).status == 404


async def test_unknown_routes_and_methods_answer_json_errors(api: TwilioApi) -> None:
    missing = await api.request("GET", api.path("/Calls.json"))
    wrong_method = await api.request("PUT", api.path("/Messages.json"))
    assert (missing.status, missing.json["code"]) == (404, 20404)
    assert (wrong_method.status, wrong_method.json["code"]) == (405, 20004)
