"""HTTP Basic with the auth token or API keys, and the Standard-key limit on /Accounts."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import TwilioApi, basic, schema_errors

UNAUTHORIZED = {
    "code": 20003,
    "message": "Authenticate",
    "more_info": "https://www.twilio.com/docs/errors/20003",
    "status": 401,
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": aiohttp.encode_basic_auth("ACnobody", "x")},
        {"Authorization": "Basic " + base64.b64encode(b"user-without-colon").decode()},
    ],
)
async def test_missing_or_malformed_credentials_get_401_20003(
    api: TwilioApi, headers: dict[str, str]
) -> None:
    reply = await api.create(("To", "+15551230002"), ("From", "+15551230001"), headers=headers)
    assert reply.status == 401
    assert reply.json == UNAUTHORIZED


async def test_wrong_token_and_foreign_account_credentials_are_refused(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    other = fake.add_account()
    wrong_token = basic(account.sid, account.auth_token + "0")
    foreign = basic(other.sid, other.auth_token)

    for headers in (wrong_token, foreign):
        reply = await api.request("GET", api.path("/Messages.json"), headers=headers)
        assert reply.status == 401
        assert reply.json == UNAUTHORIZED
    assert (await api.list()).status == 200


async def test_api_keys_work_on_messages_and_are_recorded(
    api: TwilioApi, fake: FakeTwilio, account: Account
) -> None:
    key = fake.add_key(account.sid)

    reply = await api.create(
        ("To", "+15551230002"),
        ("From", "+15551230001"),
        ("Body", "hi"),
        headers=basic(key.sid, key.secret),
    )
    bad_secret = await api.create(
        ("To", "+15551230002"),
        ("From", "+15551230001"),
        ("Body", "hi"),
        headers=basic(key.sid, key.secret + "x"),
    )

    assert reply.status == 201
    assert bad_secret.status == 401
    creates = [r for r in fake.state.requests if r.operation == "create"]
    assert [(r.auth_username, r.auth_kind, r.status) for r in creates] == [
        (key.sid, "standard", 201),
        (key.sid, "invalid", 401),
    ]


async def test_non_ascii_password_is_simply_wrong(api: TwilioApi, account: Account) -> None:
    headers = basic(account.sid, "pässwörd")
    reply = await api.request("GET", api.path("/Messages.json"), headers=headers)
    assert reply.status == 401


async def test_a_key_of_another_account_is_refused(api: TwilioApi, fake: FakeTwilio) -> None:
    other = fake.add_account()
    key = fake.add_key(other.sid, kind="main")
    reply = await api.request("GET", api.path("/Messages.json"), headers=basic(key.sid, key.secret))
    assert reply.status == 401


async def test_account_fetch_accepts_token_and_main_key_but_not_standard_key(
    api: TwilioApi, fake: FakeTwilio, account: Account, spec: dict[str, Any]
) -> None:
    standard = fake.add_key(account.sid, kind="standard")
    main = fake.add_key(account.sid, kind="main")
    path = api.path(".json")

    with_token = await api.request("GET", path)
    with_main = await api.request("GET", path, headers=basic(main.sid, main.secret))
    with_standard = await api.request("GET", path, headers=basic(standard.sid, standard.secret))
    standard_on_messages = await api.request(
        "GET", api.path("/Messages.json"), headers=basic(standard.sid, standard.secret)
    )

    assert with_token.status == 200
    assert with_main.status == 200
    assert with_standard.status == 401
    assert with_standard.json == UNAUTHORIZED
    assert standard_on_messages.status == 200
    schema = spec["components"]["schemas"]["api.v2010.account"]
    assert schema_errors(with_token.json, schema, spec) == []
    assert with_token.json["sid"] == account.sid
    assert with_token.json["uri"] == f"/2010-04-01/Accounts/{account.sid}.json"
    assert with_token.json["status"] == "active"


async def test_suspended_account_is_refused(fake: FakeTwilio, http: aiohttp.ClientSession) -> None:
    suspended = fake.state.add_account(status="suspended")
    api = TwilioApi(http, fake, suspended)
    assert (await api.list()).status == 401


async def test_responses_carry_a_request_id(api: TwilioApi) -> None:
    reply = await api.list()
    assert reply.headers["Twilio-Request-Id"].startswith("RQ")
    assert len(reply.headers["Twilio-Request-Id"]) == 34
