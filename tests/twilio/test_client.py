"""The Twilio REST client against the fake Twilio (and a few misbehaving servers) on loopback."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.fake_twilio import FakeConfig, FakeTwilio, running_fake_twilio
from bridge.fake_twilio.faults import Fault
from bridge.twilio.client import (
    AccountInfo,
    Credentials,
    ListedMessage,
    MessageState,
    SentMessage,
    TwilioAmbiguous,
    TwilioClient,
    TwilioError,
    TwilioRejected,
    TwilioUnavailable,
    _transport_error,
)
from tests.twilio.helpers import closed_port, exception_texts, json_app, secrets_of, serve

SID = "AC" + "5e" * 16
TOKEN = "token-9f1c2e7ab4d34c0e8a55b1"
CREDS = Credentials(account_sid=SID, username=SID, password=TOKEN)
FROM = "+14155550199"
TO = "+14155550100"
SERVICE = "MG" + "0a" * 16


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    # Callbacks are not under test here; a long delay keeps them from firing at all.
    config = FakeConfig(callback_delay=30.0, slow_delay=0.5)
    async with running_fake_twilio(config, accounts=[(SID, TOKEN)]) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def client(session: aiohttp.ClientSession, fake: FakeTwilio) -> TwilioClient:
    return TwilioClient(session, fake.base_url, total_timeout=3.0)


def only_request(fake: FakeTwilio, operation: str) -> list[tuple[str, str]]:
    """The form of the one request of `operation` the fake received."""
    records = [r for r in fake.state.requests if r.operation == operation]
    assert len(records) == 1
    return records[0].form


@asynccontextmanager
async def raw_server(reply: bytes | None) -> AsyncIterator[str]:
    """A server that reads one request, then writes `reply` verbatim (or nothing) and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


# --- create ---------------------------------------------------------------------------------


async def test_create_returns_the_sent_message(client: TwilioClient, fake: FakeTwilio) -> None:
    sent = await client.create_message(CREDS, to=TO, from_=FROM, body="hello")

    assert isinstance(sent, SentMessage)
    assert sent.sid.startswith("SM") and len(sent.sid) == 34
    assert (sent.status, sent.num_segments, sent.to, sent.from_) == ("queued", 1, TO, FROM)
    assert sent.date_created is not None and sent.date_created.tzinfo is not None
    assert abs(datetime.now(UTC) - sent.date_created) < timedelta(minutes=1)
    assert only_request(fake, "create") == [("To", TO), ("From", FROM), ("Body", "hello")]
    assert fake.state.requests[0].auth_kind == "auth_token"


async def test_create_through_a_messaging_service(client: TwilioClient) -> None:
    sent = await client.create_message(CREDS, to=TO, messaging_service_sid=SERVICE, body="hi")

    assert (sent.status, sent.from_, sent.num_segments) == ("accepted", None, 0)


async def test_repeated_media_urls_and_status_callback_reach_twilio(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    media = ["https://media.example.test/a.jpg", "https://media.example.test/b.png"]
    callback = "https://pbx.example.test/sms/twilio/status?tenant=7"

    sent = await client.create_message(
        CREDS, to=TO, from_=FROM, media_urls=media, status_callback=callback
    )

    form = only_request(fake, "create")
    assert [v for k, v in form if k == "MediaUrl"] == media
    assert ("StatusCallback", callback) in form
    assert "Body" not in dict(form)
    stored = fake.state.messages[sent.sid]
    assert sent.sid.startswith("MM")
    assert [m.source_url for m in stored.media] == media
    assert stored.status_callback == callback


async def test_requests_carry_json_accept_user_agent_and_basic_auth(
    session: aiohttp.ClientSession,
) -> None:
    seen: list[web.Request] = []

    async def create(request: web.Request) -> web.Response:
        seen.append(request)
        await request.read()
        return web.json_response({"sid": "SM" + "1" * 32, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", create)
    async with serve(app) as base_url:
        sent = await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    assert (sent.sid, sent.to, sent.from_, sent.num_segments) == ("SM" + "1" * 32, TO, None, None)
    headers = seen[0].headers
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"].startswith("pbx-sms-bridge/")
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", f"{SID}:{TOKEN}")


# --- classification of create failures -------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "from_", "code"),
    [
        ("+15005550001", FROM, 21211),
        ("+15005550003", FROM, 21408),
        ("+15005550004", FROM, 21610),
        ("+15005550002", FROM, 21612),
        ("+15005550009", FROM, 21614),
        (TO, "+15005550001", 21212),
    ],
)
async def test_invalid_requests_are_rejected_with_twilios_code(
    client: TwilioClient, to: str, from_: str, code: int
) -> None:
    with pytest.raises(TwilioRejected) as caught:
        await client.create_message(CREDS, to=to, from_=from_, body="x")

    error = caught.value
    assert (error.http_status, error.twilio_code) == (400, code)
    assert error.more_info == f"https://www.twilio.com/docs/errors/{code}"
    assert str(code) in str(error)
    assert error.code == "twilio_rejected"


@pytest.mark.parametrize(("to", "retry_after"), [("+15005550429", 1.0), ("+15005550430", None)])
async def test_too_many_requests_is_unavailable(
    client: TwilioClient, fake: FakeTwilio, to: str, retry_after: float | None
) -> None:
    with pytest.raises(TwilioUnavailable) as caught:
        await client.create_message(CREDS, to=to, from_=FROM, body="x")

    error = caught.value
    assert (error.http_status, error.twilio_code, error.retry_after) == (429, 20429, retry_after)
    assert await client.list_messages(CREDS, to=to) == []


@pytest.mark.parametrize(
    ("to", "status", "created"),
    [("+15005550500", 500, False), ("+15005550503", 503, False), ("+15005550501", 500, True)],
)
async def test_server_errors_are_ambiguous(
    client: TwilioClient, to: str, status: int, created: bool
) -> None:
    with pytest.raises(TwilioAmbiguous) as caught:
        await client.create_message(CREDS, to=to, from_=FROM, body="x")

    assert caught.value.http_status == status
    # Only reconciliation tells the two cases apart, which is why they are not "unavailable".
    listed = await client.list_messages(CREDS, to=to)
    assert [m.body for m in listed] == (["x"] if created else [])


async def test_an_answer_slower_than_the_total_timeout_is_ambiguous(
    session: aiohttp.ClientSession, fake: FakeTwilio
) -> None:
    seen: list[tuple[str, int | None, float]] = []
    client = TwilioClient(
        session, fake.base_url, total_timeout=0.15, observe=lambda *a: seen.append(a)
    )
    slow_to = "+15005550504"

    with pytest.raises(TwilioAmbiguous) as caught:
        await client.create_message(CREDS, to=slow_to, from_=FROM, body="slow")

    assert caught.value.http_status is None
    assert seen[0][:2] == ("create_message", None)
    assert [m.body for m in await client.list_messages(CREDS, to=slow_to)] == ["slow"]


async def test_injected_faults_classify_reads_too(client: TwilioClient, fake: FakeTwilio) -> None:
    fake.state.faults.add_next(Fault("503"), operations=("list",))
    fake.state.faults.add_next(Fault("429"), operations=("account",))

    with pytest.raises(TwilioAmbiguous):
        await client.list_messages(CREDS, to=TO)
    with pytest.raises(TwilioUnavailable) as caught:
        await client.fetch_account(CREDS)
    assert caught.value.retry_after == 1.0


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, int | None, float]] = []
    client = TwilioClient(
        session, f"http://127.0.0.1:{closed_port()}", observe=lambda *a: seen.append(a)
    )

    with pytest.raises(TwilioUnavailable) as caught:
        await client.create_message(CREDS, to=TO, from_=FROM, body="x")

    assert (caught.value.http_status, caught.value.retry_after) == (None, None)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert seen[0][:2] == ("create_message", None)


class NoDNS(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_a_dns_failure_is_unavailable() -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=NoDNS())) as http:
        client = TwilioClient(http, "https://api.twilio.invalid")
        with pytest.raises(TwilioUnavailable):
            await client.create_message(CREDS, to=TO, from_=FROM, body="x")


async def test_a_connection_lost_after_sending_is_ambiguous(
    session: aiohttp.ClientSession,
) -> None:
    async with raw_server(None) as base_url:
        with pytest.raises(TwilioAmbiguous) as caught:
            await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    assert caught.value.http_status is None


async def test_a_truncated_success_is_ambiguous(session: aiohttp.ClientSession) -> None:
    reply = (
        b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{"s'
    )
    async with raw_server(reply) as base_url:
        with pytest.raises(TwilioAmbiguous) as caught:
            await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    assert caught.value.http_status == 201


async def test_a_garbled_answer_is_ambiguous(session: aiohttp.ClientSession) -> None:
    async with raw_server(b"HTTP/1.1 2x1 Huh\r\n\r\n") as base_url:
        with pytest.raises(TwilioAmbiguous) as caught:
            await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        (400, "text/plain", "Bad Request", TwilioRejected),
        (404, "application/json", '{"status": 404, "message": "not here"}', TwilioRejected),
        (502, "text/html", "<html><body>Bad Gateway</body></html>", TwilioAmbiguous),
        (503, "application/json", '["not", "an", "object"]', TwilioAmbiguous),
        (201, "text/html", "<html>created?</html>", TwilioAmbiguous),
        (201, "application/json", '{"status": "queued"}', TwilioAmbiguous),
        (307, "text/plain", "", TwilioAmbiguous),
    ],
)
async def test_odd_answers_are_classified_without_quoting_the_body(
    session: aiohttp.ClientSession,
    status: int,
    content_type: str,
    body: str,
    expected: type[TwilioError],
) -> None:
    followed: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        headers = {"Location": "/elsewhere"} if status == 307 else None
        return web.Response(status=status, text=body, content_type=content_type, headers=headers)

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response({"sid": "SM" + "2" * 32, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_post("/elsewhere", elsewhere)
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serve(app) as base_url:
        with pytest.raises(expected) as caught:
            await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    error = caught.value
    assert type(error) is expected
    assert (error.http_status, followed) == (status, [])
    assert error.twilio_code is None
    assert "html" not in str(error)
    if status == 404:
        assert "not here" in str(error)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2.5", 2.5), ("+30", 30.0), ("-30", 0.0), ("soon", None)],
)
async def test_retry_after_in_seconds_or_as_a_date(
    session: aiohttp.ClientSession, header: str, expected: float | None
) -> None:
    if header[0] in "+-":
        # An HTTP-date, made now rather than at collection so the suite's run time is no factor.
        when = datetime.now(UTC) + timedelta(seconds=float(header))
        header = format_datetime(when, usegmt=True)
    app = json_app(429, {"code": 20429, "status": 429}, {"Retry-After": header})
    async with serve(app) as base_url:
        with pytest.raises(TwilioUnavailable) as caught:
            await TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x")

    got = caught.value.retry_after
    assert got == expected if expected is None else got == pytest.approx(expected, abs=2.0)


@pytest.mark.parametrize(
    ("exc", "status", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), None, TwilioUnavailable),
        (aiohttp.SocketTimeoutError("Timeout on reading data"), None, TwilioAmbiguous),
        (TimeoutError(), None, TwilioAmbiguous),
        (aiohttp.ServerDisconnectedError(), None, TwilioAmbiguous),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), None, TwilioAmbiguous),
        (aiohttp.ClientPayloadError("Response payload is not completed"), 200, TwilioAmbiguous),
        (aiohttp.ClientPayloadError("Response payload is not completed"), 429, TwilioUnavailable),
        (aiohttp.ClientPayloadError("Response payload is not completed"), 400, TwilioRejected),
    ],
)
def test_transport_failures_are_classified_by_whether_the_request_left(
    exc: BaseException, status: int | None, expected: type[TwilioError]
) -> None:
    # A connect timeout cannot be provoked reliably on loopback, so the table is checked here.
    error = _transport_error("create_message", exc, status, "3")
    assert type(error) is expected
    assert error.http_status == status


# --- credentials ----------------------------------------------------------------------------


async def test_a_wrong_token_is_rejected_with_20003(client: TwilioClient) -> None:
    wrong = Credentials(SID, SID, "not-the-token")

    with pytest.raises(TwilioRejected) as caught:
        await client.create_message(wrong, to=TO, from_=FROM, body="x")

    assert (caught.value.http_status, caught.value.twilio_code) == (401, 20003)


async def test_fetch_account_with_token_and_main_key(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="main")

    by_token = await client.fetch_account(CREDS)
    by_key = await client.fetch_account(Credentials(SID, key.sid, key.secret))

    assert by_token == by_key == AccountInfo(SID, "active", "Full", "Fake account")
    assert TOKEN not in repr(by_token)


async def test_fetch_account_with_a_standard_key_is_refused(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="standard")

    with pytest.raises(TwilioRejected) as caught:
        await client.fetch_account(Credentials(SID, key.sid, key.secret))
    assert caught.value.http_status == 401


async def test_check_credentials_reads_the_account_when_it_may(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="main")

    assert await client.check_credentials(CREDS) == AccountInfo(
        SID, "active", "Full", "Fake account"
    )
    assert await client.check_credentials(Credentials(SID, key.sid, key.secret)) is not None
    assert [r.operation for r in fake.state.requests] == ["account", "account"]


async def test_check_credentials_falls_back_to_a_list_for_a_standard_key(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="standard")

    assert await client.check_credentials(Credentials(SID, key.sid, key.secret)) is None

    calls = [(r.operation, r.status, r.query) for r in fake.state.requests]
    assert calls == [("account", 401, []), ("list", 200, [("PageSize", "1")])]


@pytest.mark.parametrize("use_key", [False, True])
async def test_check_credentials_rejects_wrong_secrets(
    client: TwilioClient, fake: FakeTwilio, use_key: bool
) -> None:
    key = fake.add_key(SID, kind="standard")
    wrong = Credentials(SID, key.sid if use_key else SID, "wrong-secret")

    with pytest.raises(TwilioRejected) as caught:
        await client.check_credentials(wrong)

    assert (caught.value.http_status, caught.value.twilio_code) == (401, 20003)
    # The auth token itself gets no second try: a 401 can only mean it is wrong.
    assert len(fake.state.requests) == (2 if use_key else 1)


# --- list -----------------------------------------------------------------------------------


async def test_list_follows_pages_and_filters_by_to(client: TwilioClient, fake: FakeTwilio) -> None:
    sent = [await client.create_message(CREDS, to=TO, from_=FROM, body=f"m{i}") for i in range(7)]
    await client.create_message(CREDS, to="+14155550111", from_=FROM, body="other")
    fake.state.messages[sent[0].sid].error_code = 30007

    listed = await client.list_messages(CREDS, to=TO, page_size=3)

    assert all(isinstance(m, ListedMessage) for m in listed)
    assert [m.sid for m in listed] == [m.sid for m in reversed(sent)]
    assert {(m.to, m.from_) for m in listed} == {(TO, FROM)}
    assert [m.body for m in listed] == [f"m{i}" for i in reversed(range(7))]
    assert [m.error_code for m in listed] == [None] * 6 + [30007]
    assert all(m.date_created is not None for m in listed)
    pages = [r for r in fake.state.requests if r.operation == "list"]
    assert len(pages) == 3
    assert all(("To", TO) in r.query for r in pages)


async def test_list_stops_after_max_pages(client: TwilioClient, fake: FakeTwilio) -> None:
    for i in range(5):
        await client.create_message(CREDS, to=TO, from_=FROM, body=f"m{i}")

    listed = await client.list_messages(CREDS, to=TO, page_size=2, max_pages=2)

    assert [m.body for m in listed] == ["m4", "m3", "m2", "m1"]


async def test_list_filters_by_sender_and_sent_date(client: TwilioClient, fake: FakeTwilio) -> None:
    await client.create_message(CREDS, to=TO, from_=FROM, body="mine")
    await client.create_message(CREDS, to=TO, from_="+14155550198", body="theirs")
    today = datetime.now(UTC).date()

    recent = await client.list_messages(CREDS, to=TO, from_=FROM, sent_after=today - timedelta(1))
    future = await client.list_messages(CREDS, to=TO, sent_after=today + timedelta(1))

    assert [m.body for m in recent] == ["mine"]
    assert future == []
    queries = [r.query for r in fake.state.requests if r.operation == "list"]
    assert ("DateSent>", (today - timedelta(1)).isoformat()) in queries[0]
    assert ("From", FROM) in queries[0]


async def test_list_refuses_to_follow_a_link_off_the_api_host(
    session: aiohttp.ClientSession,
) -> None:
    page = {"messages": [], "next_page_uri": "https://elsewhere.example.test/steal"}
    async with serve(json_app(200, page)) as base_url:
        with pytest.raises(TwilioAmbiguous):
            await TwilioClient(session, base_url).list_messages(CREDS, to=TO)


# --- fetch ----------------------------------------------------------------------------------


async def test_fetch_tells_where_a_message_stands_now(
    client: TwilioClient, fake: FakeTwilio
) -> None:
    sent = await client.create_message(CREDS, to=TO, from_=FROM, body="hello")
    fake.dispatcher.apply_status(fake.state.messages[sent.sid], "undelivered", 30003)

    state = await client.fetch_message(CREDS, sent.sid)

    assert state == MessageState(sent.sid, "undelivered", 30003, state.error_message)
    assert state.error_message
    with pytest.raises(TwilioRejected) as caught:
        await client.fetch_message(CREDS, "SM" + "0" * 32)
    assert caught.value.http_status == 404


# --- observation and secrets ----------------------------------------------------------------


async def test_every_call_is_observed_and_a_broken_observer_is_harmless(
    session: aiohttp.ClientSession, fake: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, int | None, float]] = []
    client = TwilioClient(session, fake.base_url, observe=lambda *a: seen.append(a))
    await client.create_message(CREDS, to=TO, from_=FROM, body="x")
    with pytest.raises(TwilioRejected):
        await client.create_message(CREDS, to="+15005550001", from_=FROM, body="x")
    await client.fetch_account(CREDS)

    assert [s[:2] for s in seen] == [
        ("create_message", 201),
        ("create_message", 400),
        ("fetch_account", 200),
    ]
    assert all(0 <= s[2] < 5 for s in seen)

    def broken(operation: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    sent = await TwilioClient(session, fake.base_url, observe=broken).create_message(
        CREDS, to=TO, from_=FROM, body="x"
    )
    assert sent.status == "queued"
    assert "twilio.observe_failed" in caplog.text


async def test_secrets_never_appear_in_errors_or_credentials(
    session: aiohttp.ClientSession, client: TwilioClient, fake: FakeTwilio
) -> None:
    key = fake.add_key(SID, kind="standard")
    key_creds = Credentials(SID, key.sid, key.secret)
    wrong = Credentials(SID, SID, "wrong-token-0b9d1f")
    echoing = json_app(400, {"code": 21211, "message": f"bad {TOKEN}", "more_info": TOKEN})
    errors: list[TwilioError] = []

    async def collect(call: Awaitable[object]) -> None:
        with pytest.raises(TwilioError) as caught:
            await call
        errors.append(caught.value)

    await collect(client.create_message(wrong, to=TO, from_=FROM, body="x"))
    await collect(client.fetch_account(key_creds))
    await collect(client.check_credentials(Credentials(SID, key.sid, "nope-7c1")))
    for to in ("+15005550001", "+15005550429", "+15005550500", "+15005550501"):
        await collect(client.create_message(CREDS, to=to, from_=FROM, body="x"))
    slow = TwilioClient(session, fake.base_url, total_timeout=0.1)
    await collect(slow.create_message(CREDS, to="+15005550504", from_=FROM, body="x"))
    refused = TwilioClient(session, f"http://127.0.0.1:{closed_port()}")
    await collect(refused.create_message(CREDS, to=TO, body="x"))
    async with serve(echoing) as base_url:
        await collect(TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x"))
    for reply in (None, b"HTTP/1.1 2x1 Huh\r\n\r\n"):
        async with raw_server(reply) as base_url:
            await collect(TwilioClient(session, base_url).create_message(CREDS, to=TO, body="x"))
    with pytest.raises(TwilioRejected) as colon:
        await client.fetch_account(Credentials(SID, "a:b", TOKEN))
    errors.append(colon.value)

    assert len(errors) == 13
    assert errors[-4].twilio_code == 21211 and "[redacted]" in str(errors[-4])
    all_creds = [CREDS, key_creds, wrong, Credentials(SID, key.sid, "nope-7c1")]
    secrets = [s for c in all_creds for s in secrets_of(c)]
    for error in errors:
        for text in exception_texts(error):
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{type(error).__name__} leaks a secret: {text}"
    for creds in all_creds:
        assert creds.password not in repr(creds)
        assert creds.password not in str(creds)
        assert creds.username in repr(creds)


async def test_bad_construction_is_refused(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="http"):
        TwilioClient(session, "api.twilio.com")


async def test_list_arguments_are_checked(client: TwilioClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        await client.list_messages(CREDS, to=TO, page_size=0)
