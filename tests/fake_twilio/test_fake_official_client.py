"""Twilio's own Python library, pointed at the fake, must be able to use it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account


@pytest.fixture
def http_client() -> Iterator[TwilioHttpClient]:
    client = TwilioHttpClient(timeout=10)
    yield client
    if client.session is not None:
        client.session.close()


def official(
    fake: FakeTwilio, username: str, password: str, account_sid: str, http_client: TwilioHttpClient
) -> Client:
    client = Client(username, password, account_sid, http_client=http_client)
    client.api.base_url = fake.base_url
    return client


async def test_official_client_creates_fetches_and_lists(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    client = official(fake, account.sid, account.auth_token, account.sid, http_client)

    def scenario() -> tuple[
        MessageInstance, MessageInstance, list[MessageInstance], list[MessageInstance]
    ]:
        created = client.messages.create(
            to="+15551230002",
            from_="+15551230001",
            body="from the official client",
            media_url=["https://m.example.test/a.png", "https://m.example.test/b.png"],
        )
        fetched = client.messages(created.sid).fetch()
        for index in range(4):
            client.messages.create(to="+15551230003", from_="+15551230001", body=f"n{index}")
        listed = client.messages.list(page_size=2)
        to_three = client.messages.list(to="+15551230003", page_size=3)
        return created, fetched, listed, to_three

    created, fetched, listed, to_three = await asyncio.to_thread(scenario)

    assert created.sid.startswith("MM")
    assert created.status == "queued"
    assert created.num_media == "2"
    assert created.date_created is not None and created.date_created.tzinfo is not None
    assert fetched.sid == created.sid
    assert fetched.body == "from the official client"
    assert len(listed) == 5
    assert listed[-1].sid == created.sid
    assert len(to_three) == 4
    assert {m.to for m in to_three} == {"+15551230003"}


async def test_official_client_surfaces_twilio_error_codes(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    client = official(fake, account.sid, account.auth_token, account.sid, http_client)
    bad_auth = official(fake, account.sid, "wrong", account.sid, http_client)

    def create(c: Client, to: str) -> None:
        c.messages.create(to=to, from_="+15551230001", body="x")

    with pytest.raises(TwilioRestException) as invalid:
        await asyncio.to_thread(create, client, "+15005550001")
    with pytest.raises(TwilioRestException) as refused:
        await asyncio.to_thread(create, bad_auth, "+15551230002")

    assert (invalid.value.status, invalid.value.code) == (400, 21211)
    assert (refused.value.status, refused.value.code) == (401, 20003)


async def test_official_client_with_an_api_key(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    key = fake.add_key(account.sid)
    client = official(fake, key.sid, key.secret, account.sid, http_client)
    created = await asyncio.to_thread(
        client.messages.create, to="+15551230002", from_="+15551230001", body="key"
    )
    assert created.account_sid == account.sid
