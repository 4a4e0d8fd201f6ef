"""Twilio set up from the bridge, and the diagnosis of why texts don't arrive (design §11)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from twilio.request_validator import RequestValidator

from tests import factories
from tests.waiting import eventually
from tests.web.bridge_env import Env
from tests.web.test_outbound import send, wait_status

ELSEWHERE = "https://old-pbx.example.net/sms/in"


def config_path(env: Env, suffix: str = "") -> str:
    return f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}{suffix}"


async def with_numbers(env: Env, *numbers: str) -> None:
    reply = await env.api.patch(
        config_path(env), {"numbers": [{"number": n} for n in (env.number, *numbers)]}
    )
    assert reply.status == 200, reply.body


async def test_the_state_of_each_number_is_read_from_twilio(env: Env) -> None:
    pointed, empty, missing = "+15557001001", "+15557001002", "+15557001003"
    await with_numbers(env, pointed, empty, missing)
    env.fake.add_number(env.account_sid, env.number, sms_url=env.config["webhook_url"])
    env.fake.add_number(env.account_sid, pointed, sms_url=ELSEWHERE)
    env.fake.add_number(env.account_sid, empty)
    reply = await env.api.get(config_path(env, "/twilio-setup"))
    assert reply.status == 200, reply.body
    states = {n["number"]: n for n in reply.body["numbers"]}
    assert states[env.number]["state"] == "ok"
    assert states[pointed]["state"] == "points_elsewhere"
    assert states[pointed]["sms_url"] == ELSEWHERE
    assert ELSEWHERE in states[pointed]["detail"]
    assert states[empty]["state"] == "empty" and states[empty]["sms_url"] is None
    assert states[missing] == {**states[missing], "state": "not_on_account", "found": False}
    assert states[env.number]["capabilities"] == {"sms": True, "mms": True}
    assert reply.body["webhook_url"] == env.config["webhook_url"]


async def test_setup_points_the_numbers_and_says_what_they_were(env: Env) -> None:
    other = "+15557001011"
    await with_numbers(env, other)
    env.fake.add_number(env.account_sid, env.number, sms_url=ELSEWHERE, sms_method="GET")
    env.fake.add_number(env.account_sid, other)
    reply = await env.api.post(config_path(env, "/twilio-setup"), {"numbers": "all"})
    assert reply.status == 200, reply.body
    changes = {(c["number"], c["field"]): c for c in reply.body["changes"]}
    assert changes[(env.number, "SmsUrl")]["previous"] == ELSEWHERE
    assert changes[(env.number, "SmsMethod")]["previous"] == "GET"
    assert changes[(other, "SmsUrl")]["previous"] is None
    assert all(c["new"] in (env.config["webhook_url"], "POST") for c in reply.body["changes"])
    assert {n["state"] for n in reply.body["setup"]["numbers"]} == {"ok"}
    # Twilio now sends the number's texts to the bridge by itself.
    result = await env.fake.send_inbound(None, from_="+15557654321", to=other, body="hello")
    assert result.webhook.answer.status == 200
    again = await env.api.post(config_path(env, "/twilio-setup"), {"numbers": [other]})
    assert again.body["changes"] == []


async def test_a_number_twilio_does_not_know_is_refused_by_name(env: Env) -> None:
    missing = "+15557001021"
    await with_numbers(env, missing)
    env.fake.add_number(env.account_sid, env.number, sms_url=ELSEWHERE)
    reply = await env.api.post(config_path(env, "/twilio-setup"), {"numbers": [missing]})
    assert reply.status == 422
    assert missing in reply.body["error"]["message"]
    not_ours = await env.api.post(config_path(env, "/twilio-setup"), {"numbers": ["+15550000000"]})
    assert not_ours.status == 422
    assert not_ours.body["error"]["details"][0]["field"] == "numbers"
    # Nothing was changed at Twilio for the number that was not asked for.
    setup = await env.api.get(config_path(env, "/twilio-setup"))
    assert {n["number"]: n["state"] for n in setup.body["numbers"]}[env.number] == (
        "points_elsewhere"
    )


async def test_a_service_that_receives_for_its_numbers_is_pointed_instead(env: Env) -> None:
    env.fake.add_number(env.account_sid, env.number, sms_url=env.config["webhook_url"])
    service = env.fake.add_service(
        env.account_sid, numbers=[env.number], inbound_request_url=ELSEWHERE
    )
    reply = await env.api.patch(config_path(env), {"messaging_service_sid": service.sid})
    assert reply.status == 200, reply.body
    setup = (await env.api.get(config_path(env, "/twilio-setup"))).body
    assert setup["numbers"][0]["state"] == "service_overrides"
    assert setup["messaging_service"]["inbound_request_url"] == ELSEWHERE
    assert setup["messaging_service"]["numbers"] == [env.number]
    applied = (await env.api.post(config_path(env, "/twilio-setup"), {})).body
    assert applied["changes"] == [
        {
            "target": "messaging_service",
            "sid": service.sid,
            "number": None,
            "field": "InboundRequestUrl",
            "previous": ELSEWHERE,
            "new": env.config["webhook_url"],
        }
    ]
    assert applied["setup"]["numbers"][0]["state"] == "ok"


def sms_url_of(env: Env, number: str) -> str:
    [found] = [
        n
        for n in env.fake.state.directory.account_numbers(env.account_sid)
        if n.phone_number == number
    ]
    return found.sms_url


async def test_auto_setup_points_the_numbers_on_create_and_after_rotation(env: Env) -> None:
    trunk = await env.api.post(f"/tenants/{env.tenant_id}/trunks", {"name": "Second"})
    number = "+15557001031"
    env.fake.add_number(env.account_sid, number, sms_url=ELSEWHERE)
    body = factories.sms_config(trunk.body["id"], account_sid=env.account_sid)
    body["credential"] = {"type": "auth_token", "auth_token": env.auth_token}
    body["numbers"] = [{"number": number}]
    body["auto_setup"] = True
    created = await env.api.post(f"/tenants/{env.tenant_id}/sms-configs", body)
    assert created.status == 201, created.body
    assert created.body["twilio_setup"]["ok"] is True
    assert created.body["twilio_setup"]["changes"][0]["previous"] == ELSEWHERE
    assert sms_url_of(env, number) == created.body["webhook_url"]
    path = f"/tenants/{env.tenant_id}/sms-configs/{created.body['id']}"
    rotated = await env.api.post(path + "/rotate-webhook")
    assert rotated.body["twilio_setup"]["changes"][0]["previous"] == created.body["webhook_url"]
    assert sms_url_of(env, number) == rotated.body["webhook_url"]
    assert (await env.api.get(path)).body.get("twilio_setup") is None


async def test_wrong_credentials_are_a_clear_refusal(env: Env) -> None:
    reply = await env.api.patch(
        config_path(env), {"credential": {"type": "auth_token", "auth_token": factories.hex32()}}
    )
    assert reply.status == 200
    setup = await env.api.get(config_path(env, "/twilio-setup"))
    assert setup.status == 422
    message = setup.body["error"]["message"]
    assert "20003" in message and env.number in message and "Account SID" in message


def signed_as(env: Env, url: str, params: dict[str, str], token: str | None = None) -> Any:
    signature = RequestValidator(token or env.auth_token).compute_signature(url, params)
    return urlencode(params), {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def params(env: Env, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + factories.hex32(),
        "AccountSid": env.account_sid,
        "From": "+15557654321",
        "To": env.number,
        "Body": "hi",
        **extra,
    }


async def diagnosis(env: Env, **query: str) -> dict[str, Any]:
    suffix = "/diagnosis" + ("?" + urlencode(query) if query else "")
    reply = await env.api.get(config_path(env, suffix))
    assert reply.status == 200, reply.body
    return dict(reply.body)


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        (lambda p: p._replace(scheme="https"), "scheme_mismatch"),
        (
            lambda p: p._replace(netloc=p.netloc.replace("127.0.0.1", "pbx.example.com")),
            "host_mismatch",
        ),
        (lambda p: p._replace(netloc=f"{p.hostname}:8443"), "port_mismatch"),
        (lambda p: p._replace(path=p.path.removeprefix("/sms")), "path_mismatch"),
    ],
)
async def test_a_signature_failure_says_which_url_twilio_signed(
    env: Env, change: Any, cause: str
) -> None:
    url = env.config["webhook_url"]
    twilio_signed = urlunsplit(change(urlsplit(url)))
    body, headers = signed_as(env, twilio_signed, params(env))
    headers["Host"] = urlsplit(twilio_signed).netloc
    status, _, _ = await env.post_public(url, body, headers)
    assert status == 403

    async def recorded() -> bool:
        return bool((await diagnosis(env))["inbound"]["signature_failures"])

    await eventually(recorded, within=10)
    found = await diagnosis(env)
    failure = found["inbound"]["signature_failures"][0]
    assert failure["cause"] == cause
    assert twilio_signed in failure["detail"] and url in failure["detail"]
    assert found["inbound"]["last_24h"]["bad_signature"] == 1
    assert twilio_signed in found["problems"][0]
    assert found["inbound"]["last_24h"]["accepted"] == 0


async def test_a_wrong_auth_token_is_named_when_no_url_variant_matches(env: Env) -> None:
    body, headers = signed_as(env, env.config["webhook_url"], params(env), factories.hex32())
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 403

    async def recorded() -> bool:
        return bool((await diagnosis(env))["inbound"]["signature_failures"])

    await eventually(recorded, within=10)
    found = await diagnosis(env)
    assert found["inbound"]["signature_failures"][0]["cause"] == "wrong_auth_token"
    assert "auth token" in found["problems"][0]


async def test_the_counts_of_the_day(env: Env) -> None:
    sid = "SM" + factories.hex32()
    for _ in range(2):  # Twilio retrying: the second is a duplicate
        body, headers = signed_as(env, env.config["webhook_url"], params(env, MessageSid=sid))
        assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 200
    body, headers = signed_as(env, env.config["webhook_url"], params(env, To="+15559990000"))
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 200
    missing = {"MessageSid": "SM" + factories.hex32(), "From": "+15557654321"}
    body, headers = signed_as(env, env.config["webhook_url"], missing)
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 400

    async def counted() -> bool:
        return bool((await diagnosis(env))["inbound"]["last_24h"]["refused"])

    await eventually(counted, within=10)
    found = await diagnosis(env)
    assert found["inbound"]["last_24h"] == {
        "accepted": 2,
        "duplicate": 1,
        "bad_signature": 0,
        "unknown_number": 1,
        "refused": 1,
    }
    assert found["inbound"]["last_webhook_at"] is not None
    assert any(
        "+15559990000" not in p and "not this configuration's" in p for p in found["problems"]
    )


async def test_failed_sends_are_counted_by_code_with_meaning_and_advice(env: Env) -> None:
    replies = [
        await send(env, {"from_extension": "101", "to": "+15005553003", "body": f"n{i}"})
        for i in range(2)
    ]
    for reply in replies:
        await wait_status(env, reply.body["id"], "undelivered", within=20)
    found = await diagnosis(env)
    [failure] = found["outbound"]["failed_last_24h"]
    assert failure["code"] == 30003 and failure["count"] == 2
    assert failure["meaning"] == "unreachable destination handset"
    assert failure["advice"]
    assert any("(30003)" in p for p in found["problems"])


async def test_diagnosis_checks_twilio_only_when_asked(env: Env) -> None:
    env.fake.add_number(env.account_sid, env.number, sms_url=ELSEWHERE)
    assert (await diagnosis(env))["twilio"] is None
    found = await diagnosis(env, check_twilio="true")
    assert found["twilio"]["numbers"][0]["state"] == "points_elsewhere"
    assert found["problems"][0].startswith(env.number)
    assert "twilio-setup" in found["problems"][0]


async def test_the_tenant_diagnosis_adds_tenant_wide_problems(env: Env) -> None:
    assert (await env.api.put(f"/tenants/{env.tenant_id}/inbound-rules", [])).status == 200
    await env.api.post(f"/tenants/{env.tenant_id}/trunks", {"name": "spare"})
    reply = await env.api.get(f"/tenants/{env.tenant_id}/diagnosis")
    assert reply.status == 200, reply.body
    assert reply.body["config_ids"] == [env.config["id"]]
    assert any("no enabled inbound rule" in p for p in reply.body["problems"])
    bad = await env.api.get(f"/tenants/{env.tenant_id}/diagnosis?check_twilio=maybe")
    assert bad.status == 422


async def test_nothing_of_a_refused_body_is_kept(env: Env) -> None:
    secret_body = "the refused text " + factories.hex32()
    body, headers = signed_as(
        env, env.config["webhook_url"], params(env, Body=secret_body), factories.hex32()
    )
    assert (await env.post_public(env.config["webhook_url"], body, headers))[0] == 403
    await asyncio.sleep(1.5)
    found = await diagnosis(env)
    assert secret_body not in str(found)
