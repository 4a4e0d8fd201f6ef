"""Message list: filters, Twilio's page keys, and paging that walks every message exactly once."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.fake_twilio.helpers import MESSAGES_PATH, TwilioApi, schema_errors


def list_schema(spec: dict[str, Any]) -> dict[str, Any]:
    get = spec["paths"][MESSAGES_PATH]["get"]
    schema: dict[str, Any] = get["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


async def send_many(api: TwilioApi, count: int) -> list[str]:
    sids = []
    for index in range(count):
        to = "+1555123000" + ("2" if index % 2 == 0 else "3")
        reply = await api.send(to=to, body=f"message {index}")
        assert reply.status == 201
        sids.append(reply.json["sid"])
    return sids


async def test_paging_walks_all_messages_newest_first(api: TwilioApi, spec: dict[str, Any]) -> None:
    sids = await send_many(api, 7)
    seen: list[str] = []
    pages: list[dict[str, Any]] = []

    reply = await api.list(("PageSize", "3"))
    while True:
        assert reply.status == 200
        page = reply.json
        assert schema_errors(page, list_schema(spec), spec) == []
        assert set(page) == set(list_schema(spec)["properties"])
        pages.append(page)
        seen.extend(m["sid"] for m in page["messages"])
        if page["next_page_uri"] is None:
            break
        assert page["next_page_uri"].startswith(api.path("/Messages.json?"))
        reply = await api.request("GET", page["next_page_uri"])

    assert seen == list(reversed(sids))
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert [len(p["messages"]) for p in pages] == [3, 3, 1]
    assert [(p["start"], p["end"]) for p in pages] == [(0, 2), (3, 5), (6, 6)]
    assert {p["page_size"] for p in pages} == {3}
    assert pages[0]["previous_page_uri"] is None
    assert pages[1]["previous_page_uri"] is not None
    assert {p["first_page_uri"] for p in pages} == {api.path("/Messages.json?PageSize=3&Page=0")}
    assert pages[0]["uri"] == api.path("/Messages.json?PageSize=3&Page=0")
    token = dict(parse_qsl(urlsplit(pages[0]["next_page_uri"]).query))["PageToken"]
    assert token == "PA" + seen[2]


async def test_previous_page_uri_leads_back(api: TwilioApi) -> None:
    await send_many(api, 5)
    first = (await api.list(("PageSize", "2"))).json
    second = (await api.request("GET", first["next_page_uri"])).json

    back = (await api.request("GET", second["previous_page_uri"])).json

    assert back["page"] == 0
    assert [m["sid"] for m in back["messages"]] == [m["sid"] for m in first["messages"]]


async def test_default_page_size_and_empty_list(api: TwilioApi) -> None:
    page = (await api.list()).json
    assert page["page_size"] == 50
    assert page["messages"] == []
    assert (page["start"], page["end"], page["next_page_uri"]) == (0, 0, None)


@pytest.mark.parametrize("size", ["0", "1001", "ten", "-1"])
async def test_page_size_out_of_range_is_refused(api: TwilioApi, size: str) -> None:
    reply = await api.list(("PageSize", size))
    assert reply.status == 400
    assert set(reply.json) == {"code", "message", "more_info", "status"}


async def test_legacy_page_number_without_token_offsets(api: TwilioApi) -> None:
    sids = await send_many(api, 5)
    page = (await api.list(("PageSize", "2"), ("Page", "1"))).json
    assert [m["sid"] for m in page["messages"]] == list(reversed(sids))[2:4]


async def test_to_and_from_filters(api: TwilioApi) -> None:
    await send_many(api, 4)
    await api.create(("To", "+15551230002"), ("From", "+15551230009"), ("Body", "other sender"))

    to_two = (await api.list(("To", "+15551230002"))).json["messages"]
    from_nine = (await api.list(("From", "+15551230009"))).json["messages"]
    both = (await api.list(("To", "+15551230003"), ("From", "+15551230009"))).json["messages"]

    assert len(to_two) == 3
    assert {m["to"] for m in to_two} == {"+15551230002"}
    assert [m["body"] for m in from_nine] == ["other sender"]
    assert both == []


async def test_date_sent_filters_compare_whole_gmt_days(api: TwilioApi) -> None:
    sids = await send_many(api, 2)
    # The message's own date, so a run across midnight GMT cannot flake.
    sent = parsedate_to_datetime((await api.fetch(sids[0])).json["date_sent"])
    today = sent.date()
    day = timedelta(days=1)

    async def count(name: str, value: str) -> int:
        reply = await api.list((name, value))
        assert reply.status == 200
        return len(reply.json["messages"])

    assert await count("DateSent", today.isoformat()) == 2
    assert await count("DateSent", (today - day).isoformat()) == 0
    assert await count("DateSent>", today.isoformat()) == 2
    assert await count("DateSent>", (today + day).isoformat()) == 0
    assert await count("DateSent<", today.isoformat()) == 2
    assert await count("DateSent<", (today - day).isoformat()) == 0
    rfc = (sent - day).strftime("%a, %d %b %Y %H:%M:%S -0000")
    assert await count("DateSent>", rfc) == 2


async def test_filters_are_echoed_in_page_uris_like_the_spec(api: TwilioApi) -> None:
    reply = await api.list(
        ("To", "+123456789"), ("From", "+987654321"), ("DateSent>", "2008-01-02"), ("PageSize", "2")
    )
    assert reply.json["uri"] == api.path(
        "/Messages.json?To=%2B123456789&From=%2B987654321&DateSent%3E=2008-01-02&PageSize=2&Page=0"
    )


async def test_bad_date_is_refused(api: TwilioApi) -> None:
    reply = await api.list(("DateSent", "yesterday-ish"))
    assert reply.status == 400


async def test_inbound_messages_are_listed_too(api: TwilioApi, sink: Any) -> None:
    await api.send()
    result = await api.fake.send_inbound(sink.url("/in"), from_="+15557770000", to="+15551230001")
    page = (await api.list()).json
    assert [m["direction"] for m in page["messages"]] == ["inbound", "outbound-api"]
    assert page["messages"][0]["sid"] == result.message.sid
    assert page["messages"][0]["status"] == "received"
