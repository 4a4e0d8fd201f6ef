"""The client's number-setup calls (IncomingPhoneNumbers, Messaging Services) against the fake."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import pytest
from aiohttp import web

from bridge.fake_twilio import FakeConfig, FakeTwilio, running_fake_twilio
from bridge.fake_twilio.faults import Fault, FaultKind
from bridge.fake_twilio.numbers import Capabilities
from bridge.twilio.client import (
    Credentials,
    IncomingNumber,
    MessagingService,
    NumberCapabilities,
    ServiceNumber,
    TwilioAmbiguous,
    TwilioClient,
    TwilioError,
    TwilioRejected,
    TwilioUnavailable,
)
from tests.twilio.helpers import closed_port, exception_texts, json_app, secrets_of, serve

SID = "AC" + "6d" * 16
TOKEN = "token-3c8e1f0a9b7d4e2f8a6c5b"
CREDS = Credentials(account_sid=SID, username=SID, password=TOKEN)
MAIN = "+14155550100"
SECOND = "+14155550101"
WEBHOOK = "https://pbx.example.test/sms/twilio/tok/inbound"
UNKNOWN_PN = "PN" + "0" * 32
UNKNOWN_MG = "MG" + "0" * 32


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    async with running_fake_twilio(FakeConfig(), accounts=[(SID, TOKEN)]) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def client(session: aiohttp.ClientSession, fake: FakeTwilio) -> TwilioClient:
    # The fake serves both hosts; tests that need them apart build their own client.
    return TwilioClient(session, fake.base_url, total_timeout=3.0, messaging_api_base=fake.base_url)


def forms(fake: FakeTwilio, method: str) -> list[list[tuple[str, str]]]:
    return [r.form for r in fake.state.requests if r.method == method]


# --- IncomingPhoneNumbers ---------------------------------------------------------------------


async def test_list_follows_pages_and_reads_each_number(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    phones = [f"+1415555010{i}" for i in range(5)]
    numbers = [
        fake.add_number(SID, phone, capabilities=Capabilities(voice=False, mms=False))
        for phone in phones
    ]
    numbers[0].friendly_name = "front desk"
    fake.add_number(SID, "+14155559999", sms_url=WEBHOOK, sms_fallback_url=WEBHOOK + "/fb")

    listed = await client.list_incoming_numbers(CREDS, page_size=2)

    assert [n.phone_number for n in listed] == [*phones, "+14155559999"]
    assert all(isinstance(n, IncomingNumber) for n in listed)
    first, last = listed[0], listed[-1]
    assert first.sid.startswith("PN") and first.friendly_name == "front desk"
    assert first.capabilities == NumberCapabilities(sms=True, mms=False, voice=False)
    assert (first.sms_url, first.sms_method, first.sms_fallback_url) == (None, "POST", None)
    assert (last.sms_url, last.sms_fallback_url) == (WEBHOOK, WEBHOOK + "/fb")
    pages = [r for r in fake.state.requests if r.operation == "numbers"]
    assert len(pages) == 3
    assert pages[0].query == [("PageSize", "2")]


async def test_list_by_phone_number_keeps_only_the_exact_number(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    main = fake.add_number(SID, MAIN)
    # Twilio's filter matches partial numbers: a longer number starting with MAIN matches too.
    fake.add_number(SID, MAIN + "9")
    fake.add_number(SID, SECOND)

    found = await client.list_incoming_numbers(CREDS, phone_number=MAIN)
    missing = await client.list_incoming_numbers(CREDS, phone_number="+14155550199")

    assert [n.sid for n in found] == [main.sid]
    assert missing == []
    queries = [r.query for r in fake.state.requests]
    assert queries[0] == [("PhoneNumber", MAIN), ("PageSize", "50")]


async def test_list_stops_after_max_pages(client: TwilioClient, fake: FakeTwilio) -> None:
    for i in range(5):
        fake.add_number(SID, f"+1415555010{i}")

    listed = await client.list_incoming_numbers(CREDS, page_size=2, max_pages=2)

    assert len(listed) == 4


async def test_fetch_reads_one_number_and_an_unknown_one_is_rejected(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    number = fake.add_number(SID, MAIN, sms_url=WEBHOOK)
    number.sms_method = "GET"

    fetched = await client.fetch_incoming_number(CREDS, number.sid)
    with pytest.raises(TwilioRejected) as caught:
        await client.fetch_incoming_number(CREDS, UNKNOWN_PN)

    assert fetched == IncomingNumber(
        sid=number.sid,
        phone_number=MAIN,
        friendly_name="(415) 555-0100",
        capabilities=NumberCapabilities(sms=True, mms=True, voice=True),
        sms_url=WEBHOOK,
        sms_method="GET",
        sms_fallback_url=None,
    )
    assert (caught.value.http_status, caught.value.twilio_code) == (404, 20404)


async def test_update_points_the_number_and_answers_its_new_state(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    number = fake.add_number(SID, MAIN, sms_url="https://old.example.test/sms")
    number.sms_method = "GET"

    updated = await client.update_incoming_number(
        CREDS, number.sid, sms_url=WEBHOOK, sms_method="POST"
    )
    cleared = await client.update_incoming_number(CREDS, number.sid, sms_fallback_url="")

    assert (updated.sms_url, updated.sms_method) == (WEBHOOK, "POST")
    assert (number.sms_url, number.sms_method) == (WEBHOOK, "POST")
    assert cleared.sms_fallback_url is None and cleared.sms_url == WEBHOOK
    assert forms(fake, "POST") == [
        [("SmsUrl", WEBHOOK), ("SmsMethod", "POST")],
        [("SmsFallbackUrl", "")],
    ]
    with pytest.raises(ValueError, match="nothing to update"):
        await client.update_incoming_number(CREDS, number.sid)


async def test_an_invalid_url_is_rejected_with_twilios_code(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    number = fake.add_number(SID, MAIN)

    with pytest.raises(TwilioRejected) as caught:
        await client.update_incoming_number(CREDS, number.sid, sms_url="pbx.example.test/sms")

    error = caught.value
    assert (error.http_status, error.twilio_code) == (400, 21402)
    assert error.more_info == "https://www.twilio.com/docs/errors/21402"
    assert "21402" in str(error)
    with pytest.raises(TwilioRejected) as missing:
        await client.update_incoming_number(CREDS, UNKNOWN_PN, sms_url=WEBHOOK)
    assert missing.value.twilio_code == 20404


# --- Messaging Services -------------------------------------------------------------------------


async def test_fetch_and_update_a_service(client: TwilioClient, fake: FakeTwilio) -> None:
    service = fake.add_service(SID, numbers=[MAIN], friendly_name="pool")
    service.status_callback = "https://pbx.example.test/status"

    fetched = await client.fetch_service(CREDS, service.sid)
    updated = await client.update_service(
        CREDS,
        service.sid,
        inbound_request_url=WEBHOOK,
        inbound_method="POST",
        use_inbound_webhook_on_number=False,
    )
    deferring = await client.update_service(CREDS, service.sid, use_inbound_webhook_on_number=True)

    assert fetched == MessagingService(
        sid=service.sid,
        friendly_name="pool",
        inbound_request_url=None,
        inbound_method="POST",
        use_inbound_webhook_on_number=False,
        status_callback="https://pbx.example.test/status",
    )
    assert (updated.inbound_request_url, updated.use_inbound_webhook_on_number) == (WEBHOOK, False)
    assert deferring.use_inbound_webhook_on_number is True
    assert service.inbound_request_url == WEBHOOK
    assert forms(fake, "POST") == [
        [
            ("InboundRequestUrl", WEBHOOK),
            ("InboundMethod", "POST"),
            ("UseInboundWebhookOnNumber", "false"),
        ],
        [("UseInboundWebhookOnNumber", "true")],
    ]
    with pytest.raises(ValueError, match="nothing to update"):
        await client.update_service(CREDS, service.sid)


async def test_list_service_numbers_follows_the_meta_links(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    phones = [MAIN, SECOND, "+14155550102"]
    service = fake.add_service(SID, numbers=phones)
    fake.add_number(SID, "+14155550199")

    listed = await client.list_service_numbers(CREDS, service.sid, page_size=1)
    capped = await client.list_service_numbers(CREDS, service.sid, page_size=1, max_pages=2)

    directory = fake.state.directory
    assert listed == [
        ServiceNumber(sid=n.sid, phone_number=n.phone_number, service_sid=service.sid)
        for n in directory.service_numbers(service)
    ]
    assert [n.phone_number for n in listed] == phones
    assert len(capped) == 2
    assert len([r for r in fake.state.requests if r.operation == "services"]) == 5


async def test_unknown_and_foreign_services_are_rejected_404(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    other = fake.add_account()
    theirs = fake.add_service(other.sid)

    for call in (
        client.fetch_service(CREDS, UNKNOWN_MG),
        client.update_service(CREDS, theirs.sid, inbound_request_url=WEBHOOK),
        client.list_service_numbers(CREDS, theirs.sid),
    ):
        with pytest.raises(TwilioRejected) as caught:
            await call
        assert (caught.value.http_status, caught.value.twilio_code) == (404, 20404)
    assert theirs.inbound_request_url is None


async def test_an_invalid_service_update_is_rejected(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    service = fake.add_service(SID)

    with pytest.raises(TwilioRejected) as caught:
        await client.update_service(CREDS, service.sid, inbound_request_url="not a url")

    assert (caught.value.http_status, caught.value.twilio_code) == (400, 20001)


async def test_the_messaging_api_is_reached_on_its_own_host(
    session: aiohttp.ClientSession, fake: FakeTwilio
) -> None:
    service = fake.add_service(SID)
    number = fake.add_number(SID, MAIN)
    nowhere = f"http://127.0.0.1:{closed_port()}"
    messaging_only = TwilioClient(session, nowhere, messaging_api_base=fake.base_url)
    rest_only = TwilioClient(session, fake.base_url, messaging_api_base=nowhere)

    assert (await messaging_only.fetch_service(CREDS, service.sid)).sid == service.sid
    assert (await rest_only.fetch_incoming_number(CREDS, number.sid)).sid == number.sid
    with pytest.raises(TwilioUnavailable):
        await messaging_only.fetch_incoming_number(CREDS, number.sid)
    with pytest.raises(TwilioUnavailable):
        await rest_only.fetch_service(CREDS, service.sid)
    with pytest.raises(ValueError, match="messaging_api_base"):
        TwilioClient(session, fake.base_url, messaging_api_base="messaging.twilio.com")


@pytest.mark.parametrize(
    "link",
    [
        "https://elsewhere.example.test/v1/Services",
        "http://127.0.0.1:1/v1/Services",
        "/v1/Services/MG/PhoneNumbers?Page=1",
        42,
    ],
)
async def test_a_meta_link_off_the_messaging_host_is_not_followed(
    session: aiohttp.ClientSession, link: object
) -> None:
    page = {"phone_numbers": [], "meta": {"key": "phone_numbers", "next_page_url": link}}
    async with serve(json_app(200, page)) as base_url:
        client = TwilioClient(session, base_url, messaging_api_base=base_url)
        with pytest.raises(TwilioAmbiguous):
            await client.list_service_numbers(CREDS, UNKNOWN_MG)


# --- classification, credentials, observation, secrets -----------------------------------------


async def test_wrong_credentials_are_rejected_with_20003(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    service = fake.add_service(SID, numbers=[MAIN])
    wrong = Credentials(SID, SID, "not-the-token")
    calls: list[Awaitable[object]] = [
        client.list_incoming_numbers(wrong),
        client.fetch_incoming_number(wrong, UNKNOWN_PN),
        client.update_incoming_number(wrong, UNKNOWN_PN, sms_url=WEBHOOK),
        client.fetch_service(wrong, service.sid),
        client.update_service(wrong, service.sid, inbound_method="POST"),
        client.list_service_numbers(wrong, service.sid),
    ]

    for call in calls:
        with pytest.raises(TwilioRejected) as caught:
            await call
        assert (caught.value.http_status, caught.value.twilio_code) == (401, 20003)


async def test_a_standard_api_key_may_set_numbers_up(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="standard")
    creds = Credentials(SID, key.sid, key.secret)
    number = fake.add_number(SID, MAIN)
    service = fake.add_service(SID, numbers=[SECOND])

    assert (await client.update_incoming_number(creds, number.sid, sms_url=WEBHOOK)).sms_url
    assert (await client.fetch_service(creds, service.sid)).sid == service.sid
    assert {r.auth_kind for r in fake.state.requests} == {"standard"}


@pytest.mark.parametrize(
    ("kind", "expected", "retry_after"),
    [
        ("429", TwilioUnavailable, 1.0),
        ("429-no-retry-after", TwilioUnavailable, None),
        ("503", TwilioAmbiguous, None),
        ("500", TwilioAmbiguous, None),
    ],
)
async def test_throttling_and_server_errors_are_classified(
    client: TwilioClient,
    fake: FakeTwilio,
    kind: FaultKind,
    expected: type[TwilioError],
    retry_after: float | None,
) -> None:
    number = fake.add_number(SID, MAIN)
    service = fake.add_service(SID, numbers=[SECOND])
    fake.state.faults.add_next(Fault(kind), count=3, operations=("numbers",))
    fake.state.faults.add_next(Fault(kind), count=3, operations=("services",))

    errors: list[TwilioError] = []
    for call in (
        client.list_incoming_numbers(CREDS),
        client.fetch_incoming_number(CREDS, number.sid),
        client.update_incoming_number(CREDS, number.sid, sms_url=WEBHOOK),
        client.fetch_service(CREDS, service.sid),
        client.update_service(CREDS, service.sid, inbound_request_url=WEBHOOK),
        client.list_service_numbers(CREDS, service.sid),
    ):
        with pytest.raises(expected) as caught:
            await call
        errors.append(caught.value)

    assert {type(e) for e in errors} == {expected}
    assert {e.http_status for e in errors} == {int(kind[:3])}
    if expected is TwilioUnavailable:
        assert {getattr(e, "retry_after", None) for e in errors} == {retry_after}
        # A 429 was never processed.
        assert (number.sms_url, service.inbound_request_url) == ("", None)


async def test_an_update_answered_500_may_have_applied_and_is_safe_to_repeat(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    number = fake.add_number(SID, MAIN)
    fake.state.faults.add_next(Fault("500-after-create"), operations=("numbers",))

    with pytest.raises(TwilioAmbiguous):
        await client.update_incoming_number(CREDS, number.sid, sms_url=WEBHOOK)
    assert number.sms_url == WEBHOOK
    again = await client.update_incoming_number(CREDS, number.sid, sms_url=WEBHOOK)
    assert again.sms_url == WEBHOOK


async def test_slow_answers_time_out_as_ambiguous(
    session: aiohttp.ClientSession, fake: FakeTwilio
) -> None:
    service = fake.add_service(SID)
    fake.state.faults.add_next(Fault("slow", delay=0.4), operations=("services",))
    client = TwilioClient(
        session, fake.base_url, total_timeout=0.1, messaging_api_base=fake.base_url
    )

    with pytest.raises(TwilioAmbiguous) as caught:
        await client.fetch_service(CREDS, service.sid)

    assert caught.value.http_status is None


async def test_every_call_is_observed_by_operation(
    session: aiohttp.ClientSession, fake: FakeTwilio
) -> None:
    seen: list[tuple[str, int | None, float]] = []
    client = TwilioClient(
        session, fake.base_url, observe=lambda *a: seen.append(a), messaging_api_base=fake.base_url
    )
    number = fake.add_number(SID, MAIN)
    service = fake.add_service(SID, numbers=[SECOND])

    await client.list_incoming_numbers(CREDS)
    await client.fetch_incoming_number(CREDS, number.sid)
    await client.update_incoming_number(CREDS, number.sid, sms_url=WEBHOOK)
    await client.fetch_service(CREDS, service.sid)
    await client.update_service(CREDS, service.sid, inbound_request_url=WEBHOOK)
    await client.list_service_numbers(CREDS, service.sid)
    with pytest.raises(TwilioRejected):
        await client.fetch_service(CREDS, UNKNOWN_MG)

    assert [s[:2] for s in seen] == [
        ("list_incoming_numbers", 200),
        ("fetch_incoming_number", 200),
        ("update_incoming_number", 200),
        ("fetch_service", 200),
        ("update_service", 200),
        ("list_service_numbers", 200),
        ("fetch_service", 404),
    ]


def echoing_app() -> web.Application:
    """Answers 400 with the caller's own password in the error, as a broken proxy might."""

    async def answer(request: web.Request) -> web.Response:
        encoded = request.headers["Authorization"].removeprefix("Basic ")
        password = base64.b64decode(encoded).decode().partition(":")[2]
        document = {"code": 21402, "message": f"bad {password}", "more_info": password}
        return web.json_response(document, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def test_secrets_never_appear_in_the_new_calls_errors(
    session: aiohttp.ClientSession, client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="standard")
    key_creds = Credentials(SID, key.sid, key.secret)
    wrong_key = Credentials(SID, key.sid, "wrong-secret-5a1e")
    wrong_token = Credentials(SID, SID, "wrong-token-77d0c2")
    errors: list[TwilioError] = []

    async def collect(call: Awaitable[object]) -> None:
        with pytest.raises(TwilioError) as caught:
            await call
        errors.append(caught.value)

    await collect(client.list_incoming_numbers(wrong_key))
    await collect(client.update_service(wrong_token, UNKNOWN_MG, inbound_method="GET"))
    async with serve(echoing_app()) as base_url:
        echoing = TwilioClient(session, base_url, messaging_api_base=base_url)
        await collect(echoing.update_incoming_number(CREDS, UNKNOWN_PN, sms_url=WEBHOOK))
        await collect(echoing.fetch_service(key_creds, UNKNOWN_MG))
        await collect(echoing.list_service_numbers(wrong_token, UNKNOWN_MG))
    nowhere = f"http://127.0.0.1:{closed_port()}"
    refused = TwilioClient(session, fake.base_url, messaging_api_base=nowhere)
    await collect(refused.list_service_numbers(CREDS, UNKNOWN_MG))

    assert len(errors) == 6
    echoed = errors[2:5]
    assert all(e.twilio_code == 21402 and "[redacted]" in str(e) for e in echoed)
    assert all(e.more_info == "[redacted]" for e in echoed)
    all_creds = [CREDS, key_creds, wrong_key, wrong_token]
    secrets = [s for c in all_creds for s in secrets_of(c)]
    for error in errors:
        for text in exception_texts(error):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{type(error).__name__} leaks a secret: {text}"


async def test_paging_arguments_are_checked(client: TwilioClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        await client.list_incoming_numbers(CREDS, page_size=1001)
    with pytest.raises(ValueError, match="max_pages"):
        await client.list_service_numbers(CREDS, UNKNOWN_MG, max_pages=0)
