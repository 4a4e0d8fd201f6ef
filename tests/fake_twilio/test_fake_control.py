"""The JSON control API under /_fake/, driven over HTTP as the e2e tests and demos use it."""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
from twilio.request_validator import RequestValidator

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import TWIML_EMPTY, Sink, TwilioApi, basic

SID = "AC" + "12" * 16
TOKEN = "f" * 32


async def call(
    http: aiohttp.ClientSession, fake: FakeTwilio, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, f"{fake.base_url}/_fake{path}", json=body) as response:
        payload = await response.json() if response.content_type == "application/json" else None
        return response.status, payload


async def test_register_account_and_key_then_use_them(
    fake: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    status, account = await call(http, fake, "POST", "/accounts", {"sid": SID, "auth_token": TOKEN})
    key_status, key = await call(http, fake, "POST", f"/accounts/{SID}/keys", {"kind": "main"})
    unknown_status, _ = await call(http, fake, "POST", f"/accounts/AC{'0' * 32}/keys", {})

    assert (status, account["sid"], account["auth_token"]) == (201, SID, TOKEN)
    assert key_status == 201
    assert key["sid"].startswith("SK") and key["kind"] == "main" and key["secret"]
    assert unknown_status == 404
    url = f"{fake.base_url}/2010-04-01/Accounts/{SID}.json"
    async with http.get(url, headers=basic(key["sid"], key["secret"])) as response:
        assert response.status == 200


async def test_invalid_bodies_get_422(fake: FakeTwilio, http: aiohttp.ClientSession) -> None:
    bad_sid, details = await call(http, fake, "POST", "/accounts", {"sid": "XX1"})
    unknown_field, _ = await call(http, fake, "PATCH", "/config", {"nope": 1})
    bad_fault, _ = await call(http, fake, "POST", "/faults", {"next": [{"kind": "418"}]})
    assert (bad_sid, unknown_field, bad_fault) == (422, 422, 422)
    assert details["details"][0]["loc"] == "sid"


async def test_requests_record_form_params_and_auth(
    api: TwilioApi, fake: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    await api.create(
        ("To", "+15551230002"),
        ("From", "+15551230001"),
        ("MediaUrl", "https://m.example.test/1.png"),
        ("MediaUrl", "https://m.example.test/2.png"),
    )
    await api.list(("PageSize", "5"))

    _, created = await call(http, fake, "GET", "/requests?operation=create")
    _, everything = await call(http, fake, "GET", "/requests")

    (record,) = created["requests"]
    assert record["form"] == [
        ["To", "+15551230002"],
        ["From", "+15551230001"],
        ["MediaUrl", "https://m.example.test/1.png"],
        ["MediaUrl", "https://m.example.test/2.png"],
    ]
    assert record["auth"] == {"username": api.account.sid, "kind": "auth_token"}
    assert record["status"] == 201
    assert record["message_sid"].startswith("MM")
    assert [r["operation"] for r in everything["requests"]] == ["create", "list"]
    assert everything["requests"][1]["query"] == [["PageSize", "5"]]


async def test_config_patch_and_fault_injection_over_http(
    api: TwilioApi, fake: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    status, config = await call(http, fake, "PATCH", "/config", {"retry_after": 3})
    _, pending = await call(http, fake, "POST", "/faults", {"next": [{"kind": "429", "count": 2}]})
    first, second, third = [(await api.send()) for _ in range(3)]

    assert status == 200 and config["retry_after"] == 3 and config["callback_delay"] == 0.005
    assert pending == {"pending": 2}
    assert [first.status, second.status, third.status] == [429, 429, 201]
    assert first.headers["Retry-After"] == "3"

    await call(http, fake, "POST", "/faults", {"random": {"probability": 1, "kinds": ["500"]}})
    assert (await api.send()).status == 500
    await call(http, fake, "POST", "/faults", {"random": None})
    assert (await api.send()).status == 201
    await call(http, fake, "POST", "/faults", {"next": [{"kind": "503"}]})
    cleared, _ = await call(http, fake, "DELETE", "/faults")
    assert cleared == 204
    assert (await api.send()).status == 201


async def test_messages_and_callbacks_views(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    sid = (await api.send(StatusCallback=sink.url("/status"))).json["sid"]
    await fake.wait_callbacks(2)

    _, messages = await call(http, fake, "GET", "/messages")
    _, one = await call(http, fake, "GET", f"/messages/{sid}")
    _, callbacks = await call(http, fake, "GET", f"/callbacks?message_sid={sid}")

    assert [m["sid"] for m in messages["messages"]] == [sid]
    assert one["status_callback"] == sink.url("/status")
    assert one["status"] == "delivered"
    hooks = callbacks["webhooks"]
    assert [h["message_status"] for h in hooks] == ["sent", "delivered"]
    assert [h["answer"]["status"] for h in hooks] == [204, 204]
    assert all(h["signature"] and h["idempotency_token"] for h in hooks)


async def test_manual_callback_and_resend(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    sid = (await api.send(StatusCallback=sink.url("/status"))).json["sid"]
    await fake.wait_callbacks(2)

    status, record = await call(
        http, fake, "POST", f"/messages/{sid}/callbacks", {"status": "read"}
    )
    resend_status, resent = await call(http, fake, "POST", "/webhooks/0/resend")

    assert status == 200 and record["message_status"] == "read"
    assert (await api.fetch(sid)).json["status"] == "read"
    assert resend_status == 200 and resent["duplicate"] is True
    statuses = [r.form["MessageStatus"] for r in await sink.wait(4, "/status")]
    assert statuses == ["sent", "delivered", "read", "sent"]
    no_callback = (await api.send()).json["sid"]
    conflict, _ = await call(
        http, fake, "POST", f"/messages/{no_callback}/callbacks", {"status": "sent"}
    )
    assert conflict == 409


async def test_inbound_over_http_reports_the_answer(
    fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    await call(http, fake, "POST", "/accounts", {"sid": SID, "auth_token": TOKEN})
    body = {
        "account_sid": SID,
        "url": sink.url("/in"),
        "from": "+15557770000",
        "to": "+15551230001",
        "body": "hi",
        "media": [
            {"content_type": "image/gif", "data_base64": base64.b64encode(b"GIF89a").decode()}
        ],
    }

    status, result = await call(http, fake, "POST", "/inbound", body)

    assert status == 200
    assert result["twiml_ok"] is True
    assert result["answer"] == {
        "status": 200,
        "content_type": "text/xml; charset=utf-8",
        "body": TWIML_EMPTY,
        "error": None,
        "authorized": False,
    }
    assert result["message_sid"].startswith("MM")
    request = (await sink.wait(1, "/in"))[0]
    assert request.form["MediaUrl0"].startswith(fake.base_url)
    assert RequestValidator(TOKEN).validate(
        sink.url("/in"), request.form, request.headers["X-Twilio-Signature"]
    )


async def test_inbound_answer_that_is_not_twiml_is_flagged(
    fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    from aiohttp import web

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(text="thanks!")

    sink.responders["/plain"] = plain
    await call(http, fake, "POST", "/accounts", {"sid": SID, "auth_token": TOKEN})
    body = {"url": sink.url("/plain"), "from": "+15557770000", "to": "+15551230001"}

    status, result = await call(http, fake, "POST", "/inbound", body)
    missing_status, _ = await call(
        http, fake, "POST", "/inbound", {**body, "account_sid": "AC" + "9" * 32}
    )
    bad_media, _ = await call(
        http,
        fake,
        "POST",
        "/inbound",
        {**body, "media": [{"content_type": "image/png", "data_base64": "***"}]},
    )

    assert status == 200
    assert result["twiml_ok"] is False
    assert result["answer"]["content_type"].startswith("text/plain")
    assert (missing_status, bad_media) == (404, 422)


async def test_reset_forgets_messages_but_keeps_accounts_unless_asked(
    api: TwilioApi, fake: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    await api.send()
    status, _ = await call(http, fake, "POST", "/reset", {})
    _, state = await call(http, fake, "GET", "/state")
    assert status == 204
    assert state["counts"]["messages"] == 0
    assert [a["sid"] for a in state["accounts"]] == [api.account.sid]
    assert (await api.list()).status == 200

    await call(http, fake, "POST", "/reset", {"keep_accounts": False})
    assert (await api.list()).status == 401


async def test_numbers_and_services_are_provisioned_over_http(
    fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    await call(http, fake, "POST", "/accounts", {"sid": SID, "auth_token": TOKEN})
    number_body = {
        "account_sid": SID,
        "phone_number": "+15551230001",
        "capabilities": {"mms": False},
        "sms_url": sink.url("/number"),
        "sms_method": "GET",
    }
    service_body = {
        "account_sid": SID,
        "sid": "MG" + "ab" * 16,
        "friendly_name": "pool",
        "inbound_request_url": sink.url("/service"),
        "numbers": ["+15551230001", "+15551230002"],
    }

    status, number = await call(http, fake, "POST", "/numbers", number_body)
    service_status, service = await call(http, fake, "POST", "/services", service_body)
    _, numbers = await call(http, fake, "GET", f"/numbers?account_sid={SID}")
    _, services = await call(http, fake, "GET", "/services")
    _, state = await call(http, fake, "GET", "/state")

    assert status == 201
    assert number["sid"].startswith("PN") and number["messaging_service_sid"] is None
    assert number["capabilities"] == {"voice": True, "sms": True, "mms": False, "fax": False}
    assert (number["sms_url"], number["sms_method"]) == (sink.url("/number"), "GET")
    assert service_status == 201
    assert (service["sid"], service["numbers"]) == (service_body["sid"], service_body["numbers"])
    assert service["url"] == f"{fake.base_url}/v1/Services/{service['sid']}"
    assert [n["messaging_service_sid"] for n in numbers["numbers"]] == [service["sid"]] * 2
    assert [s["sid"] for s in services["services"]] == [service["sid"]]
    assert (state["counts"]["numbers"], state["counts"]["services"]) == (2, 1)
    assert state["accounts"][0]["numbers"] == ["+15551230001", "+15551230002"]
    url = f"{fake.base_url}/2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json"
    async with http.get(url, headers=basic(SID, TOKEN)) as response:
        listed = await response.json()
    assert [n["sid"] for n in listed["incoming_phone_numbers"]] == [
        n["sid"] for n in numbers["numbers"]
    ]


async def test_provisioning_mistakes_are_refused(
    fake: FakeTwilio, http: aiohttp.ClientSession
) -> None:
    await call(http, fake, "POST", "/accounts", {"sid": SID, "auth_token": TOKEN})
    await call(http, fake, "POST", "/numbers", {"account_sid": SID, "phone_number": "+15551230001"})
    nobody = "AC" + "9" * 32

    cases = [
        ("/numbers", {"account_sid": SID, "phone_number": "5551230001"}, 422),
        (
            "/numbers",
            {"account_sid": SID, "phone_number": "+15551230002", "sms_method": "PUT"},
            422,
        ),
        ("/numbers", {"account_sid": nobody, "phone_number": "+15551230002"}, 404),
        ("/numbers", {"account_sid": SID, "phone_number": "+15551230001"}, 409),
        (
            "/numbers",
            {"account_sid": SID, "phone_number": "+15551230002", "messaging_service_sid": "MGx"},
            404,
        ),
        ("/services", {"account_sid": nobody}, 404),
        ("/services", {"account_sid": SID, "numbers": ["PN" + "0" * 32]}, 404),
        ("/services", {"account_sid": SID, "numbers": ["not-a-number"]}, 422),
        ("/services", {"account_sid": SID, "sid": "XX"}, 422),
    ]
    for path, body, expected in cases:
        status, answer = await call(http, fake, "POST", path, body)
        assert status == expected, (path, body, answer)
    await call(http, fake, "POST", "/services", {"account_sid": SID, "numbers": ["+15551230001"]})
    status, _ = await call(
        http, fake, "POST", "/services", {"account_sid": SID, "numbers": ["+15551230001"]}
    )
    assert status == 409


async def test_reset_keeps_numbers_with_their_accounts(
    fake: FakeTwilio, account: Account, http: aiohttp.ClientSession
) -> None:
    fake.add_service(account.sid, numbers=["+15551230001"])

    await call(http, fake, "POST", "/reset", {})
    _, kept = await call(http, fake, "GET", "/state")
    await call(http, fake, "POST", "/reset", {"keep_accounts": False})
    _, gone = await call(http, fake, "GET", "/state")

    assert (kept["counts"]["numbers"], kept["counts"]["services"]) == (1, 1)
    assert (gone["counts"]["numbers"], gone["counts"]["services"]) == (0, 0)
