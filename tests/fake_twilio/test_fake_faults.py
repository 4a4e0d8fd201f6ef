"""Magic destination numbers and the fault injector (queued and seeded-random faults)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.faults import Fault
from tests.fake_twilio.helpers import Sink, TwilioApi

ERROR_KEYS = {"code", "message", "more_info", "status"}


@pytest.mark.parametrize(
    ("to", "status", "code", "retry_after", "stored"),
    [
        ("+15005550001", 400, 21211, None, False),
        ("+15005550002", 400, 21612, None, False),
        ("+15005550003", 400, 21408, None, False),
        ("+15005550004", 400, 21610, None, False),
        ("+15005550009", 400, 21614, None, False),
        ("+15005550429", 429, 20429, "1", False),
        ("+15005550430", 429, 20429, None, False),
        ("+15005550500", 500, 20500, None, False),
        ("+15005550501", 500, 20500, None, True),
        ("+15005550503", 503, 20503, None, False),
    ],
)
async def test_magic_destinations_answer_like_twilio(
    api: TwilioApi,
    fake: FakeTwilio,
    to: str,
    status: int,
    code: int,
    retry_after: str | None,
    stored: bool,
) -> None:
    reply = await api.send(to=to)

    assert reply.status == status
    assert set(reply.json) == ERROR_KEYS
    assert (reply.json["code"], reply.json["status"]) == (code, status)
    assert reply.headers.get("Retry-After") == retry_after
    listed = (await api.list(("To", to))).json["messages"]
    assert len(listed) == (1 if stored else 0)


@pytest.mark.parametrize(
    ("sender", "code"), [("+15005550001", 21212), ("+15005550007", 21606), ("+15005550008", 21611)]
)
async def test_magic_senders(api: TwilioApi, sender: str, code: int) -> None:
    reply = await api.create(("To", "+15551230002"), ("From", sender), ("Body", "x"))
    assert (reply.status, reply.json["code"]) == (400, code)


async def test_retry_after_value_is_configurable(api: TwilioApi, fake: FakeTwilio) -> None:
    fake.state.config.retry_after = 7
    reply = await api.send(to="+15005550429")
    assert reply.headers["Retry-After"] == "7"


async def test_slow_destination_is_created_before_the_late_answer(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    started = time.monotonic()
    create = asyncio.create_task(api.send(to="+15005550504"))
    await fake.wait_for(lambda: len(fake.state.messages) == 1)
    listed_while_waiting = (await api.list(("To", "+15005550504"))).json["messages"]

    reply = await create

    assert reply.status == 201
    assert time.monotonic() - started >= 0.3
    assert [m["sid"] for m in listed_while_waiting] == [reply.json["sid"]]


@pytest.mark.parametrize(
    ("to", "statuses", "code"),
    [
        ("+15005553001", ["failed"], "30001"),
        ("+15005553003", ["sent", "undelivered"], "30003"),
        ("+15005553005", ["sent", "undelivered"], "30005"),
        ("+15005553007", ["sent", "undelivered"], "30007"),
        ("+15005552161", ["failed"], "21610"),
        ("+15551230002", ["sent", "delivered"], None),
    ],
)
async def test_magic_outcomes_arrive_by_callback(
    api: TwilioApi,
    fake: FakeTwilio,
    sink: Sink,
    to: str,
    statuses: list[str],
    code: str | None,
    spec: dict[str, Any],
) -> None:
    reply = await api.send(to=to, StatusCallback=sink.url("/status"))
    assert reply.status == 201

    received = await sink.wait(len(statuses), "/status")
    await fake.idle()

    assert [r.form["MessageStatus"] for r in received] == statuses
    assert set(statuses) <= set(spec["components"]["schemas"]["message_enum_status"]["enum"])
    assert [r.form.get("ErrorCode") for r in received][-1] == code
    assert all("ErrorCode" not in r.form for r in received[:-1])
    fetched = (await api.fetch(reply.json["sid"])).json
    assert fetched["status"] == statuses[-1]
    assert fetched["error_code"] == (None if code is None else int(code))
    assert (fetched["error_message"] is None) == (code is None)


async def test_next_faults_hit_only_the_next_matching_requests(
    api: TwilioApi, fake: FakeTwilio
) -> None:
    fake.state.faults.add_next(Fault("429"), count=2)
    fake.state.faults.add_next(Fault("503"), count=1)

    listed = await api.list()
    statuses = [(await api.send()).status for _ in range(4)]

    assert listed.status == 200
    assert statuses == [429, 429, 503, 201]
    assert len(fake.state.messages) == 1
    faults = [r.fault for r in fake.state.requests if r.operation == "create"]
    assert faults == ["429", "429", "503", None]


async def test_faults_can_target_other_operations(api: TwilioApi, fake: FakeTwilio) -> None:
    sid = (await api.send()).json["sid"]
    fake.state.faults.add_next(Fault("500"), operations=("fetch", "list"))
    fake.state.faults.add_next(Fault("429-no-retry-after"), operations=("list",))

    fetched = await api.fetch(sid)
    listed = await api.list()
    again = await api.fetch(sid)

    assert (fetched.status, fetched.json["code"]) == (500, 20500)
    assert (listed.status, listed.json["code"], listed.headers.get("Retry-After")) == (
        429,
        20429,
        None,
    )
    assert again.status == 200


async def test_500_after_create_keeps_the_message(api: TwilioApi, fake: FakeTwilio) -> None:
    fake.state.faults.add_next(Fault("500-after-create"))
    reply = await api.send(to="+15551239999")
    assert reply.status == 500
    assert len((await api.list(("To", "+15551239999"))).json["messages"]) == 1


async def test_slow_fault_delays_the_answer(api: TwilioApi, fake: FakeTwilio) -> None:
    fake.state.faults.add_next(Fault("slow", delay=0.25))
    started = time.monotonic()
    reply = await api.send()
    assert reply.status == 201
    assert time.monotonic() - started >= 0.25


async def test_global_latency_applies_to_every_request(api: TwilioApi, fake: FakeTwilio) -> None:
    fake.state.config.latency = 0.2
    started = time.monotonic()
    await api.list()
    assert time.monotonic() - started >= 0.2


async def random_run(api: TwilioApi, fake: FakeTwilio, seed: int) -> list[int]:
    fake.state.reset()
    fake.state.faults.set_random(0.3, ["429", "500", "503"], seed=seed)
    return [(await api.send()).status for _ in range(40)]


async def test_random_faults_are_reproducible_with_a_seed(api: TwilioApi, fake: FakeTwilio) -> None:
    first = await random_run(api, fake, seed=42)
    second = await random_run(api, fake, seed=42)
    other = await random_run(api, fake, seed=7)

    assert first == second
    assert first != other
    failures = sum(status != 201 for status in first)
    assert 3 <= failures <= 25
    assert set(first) <= {201, 429, 500, 503}


async def test_random_mode_extremes_and_validation(api: TwilioApi, fake: FakeTwilio) -> None:
    fake.state.faults.set_random(1.0, ["503"])
    assert (await api.send()).status == 503
    fake.state.faults.set_random(0.0, ["503"])
    assert (await api.send()).status == 201
    with pytest.raises(ValueError):
        fake.state.faults.set_random(1.5, ["503"])
    with pytest.raises(ValueError):
        fake.state.faults.set_random(0.5, [])
