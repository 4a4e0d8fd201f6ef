"""Twilio's own Python library, pointed at the fake, must be able to use it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.incoming_phone_number import IncomingPhoneNumberInstance
from twilio.rest.api.v2010.account.message import MessageInstance
from twilio.rest.messaging.v1.service import ServiceInstance
from twilio.rest.messaging.v1.service.phone_number import PhoneNumberInstance

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
    # One fake process stands in for both hosts, api.twilio.com and messaging.twilio.com.
    client.api.base_url = fake.base_url
    client.messaging.base_url = fake.base_url
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


async def test_official_client_lists_fetches_and_updates_incoming_numbers(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    client = official(fake, account.sid, account.auth_token, account.sid, http_client)
    main = fake.add_number(account.sid, "+15551230001")
    for index in range(2, 5):
        fake.add_number(account.sid, f"+1555123000{index}")

    def scenario() -> tuple[
        list[IncomingPhoneNumberInstance],
        list[IncomingPhoneNumberInstance],
        IncomingPhoneNumberInstance,
        IncomingPhoneNumberInstance,
    ]:
        exact = client.incoming_phone_numbers.list(phone_number="+15551230001")
        paged = client.incoming_phone_numbers.list(page_size=3)
        updated = client.incoming_phone_numbers(main.sid).update(
            sms_url="https://pbx.example.test/sms/twilio/tok/inbound", sms_method="POST"
        )
        fetched = client.incoming_phone_numbers(main.sid).fetch()
        return exact, paged, updated, fetched

    exact, paged, updated, fetched = await asyncio.to_thread(scenario)

    assert [n.sid for n in exact] == [main.sid]
    assert len(paged) == 4
    assert exact[0].capabilities == {"voice": True, "sms": True, "mms": True, "fax": False}
    assert updated.sms_url == fetched.sms_url == "https://pbx.example.test/sms/twilio/tok/inbound"
    assert fetched.sms_method == "POST"
    assert fetched.date_updated is not None and fetched.date_updated.tzinfo is not None
    assert main.sms_url == "https://pbx.example.test/sms/twilio/tok/inbound"


async def test_official_client_fetches_and_updates_a_messaging_service(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    client = official(fake, account.sid, account.auth_token, account.sid, http_client)
    service = fake.add_service(
        account.sid, numbers=["+15551230001", "+15551230002"], friendly_name="pool"
    )

    def scenario() -> tuple[ServiceInstance, ServiceInstance, list[PhoneNumberInstance]]:
        fetched = client.messaging.v1.services(service.sid).fetch()
        updated = client.messaging.v1.services(service.sid).update(
            inbound_request_url="https://pbx.example.test/sms/twilio/tok/inbound",
            inbound_method="POST",
            use_inbound_webhook_on_number=False,
        )
        numbers = client.messaging.v1.services(service.sid).phone_numbers.list(page_size=1)
        return fetched, updated, numbers

    fetched, updated, numbers = await asyncio.to_thread(scenario)

    assert (fetched.sid, fetched.friendly_name, fetched.inbound_request_url) == (
        service.sid,
        "pool",
        None,
    )
    assert fetched.date_created is not None and fetched.date_created.tzinfo is not None
    assert updated.inbound_request_url == "https://pbx.example.test/sms/twilio/tok/inbound"
    assert updated.use_inbound_webhook_on_number is False
    assert [n.phone_number for n in numbers] == ["+15551230001", "+15551230002"]
    assert {n.service_sid for n in numbers} == {service.sid}


async def test_official_client_surfaces_number_and_service_errors(
    fake: FakeTwilio, account: Account, http_client: TwilioHttpClient
) -> None:
    client = official(fake, account.sid, account.auth_token, account.sid, http_client)
    number = fake.add_number(account.sid, "+15551230001")

    def fail(call: Callable[[], object]) -> TwilioRestException:
        with pytest.raises(TwilioRestException) as caught:
            call()
        return caught.value

    def scenario() -> list[TwilioRestException]:
        return [
            fail(client.incoming_phone_numbers("PN" + "0" * 32).fetch),
            fail(lambda: client.incoming_phone_numbers(number.sid).update(sms_method="PUT")),
            fail(lambda: client.incoming_phone_numbers(number.sid).update(sms_url="nope")),
            fail(client.messaging.v1.services("MG" + "0" * 32).fetch),
        ]

    errors = await asyncio.to_thread(scenario)

    assert [(e.status, e.code) for e in errors] == [
        (404, 20404),
        (400, 21403),
        (400, 21402),
        (404, 20404),
    ]
