"""Media: 307 to a signed CDN URL that refuses credentials, metadata, and outbound media fetches."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from bridge.fake_twilio import FakeTwilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import Sink, TwilioApi, schema_errors

PNG = b"\x89PNG\r\n\x1a\nfake-image"


async def inbound_media_url(fake: FakeTwilio, sink: Sink) -> tuple[str, str]:
    result = await fake.send_inbound(
        sink.url("/in"),
        from_="+15557770000",
        to="+15551230001",
        media=[("image/png", PNG), ("text/vcard", b"BEGIN:VCARD\r\nEND:VCARD\r\n")],
    )
    form = (await sink.wait(1, "/in"))[0].form
    return result.message.sid, form["MediaUrl0"]


async def test_media_url_redirects_to_a_cdn_that_refuses_credentials(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    _, media_url = await inbound_media_url(fake, sink)

    async with http.get(media_url, headers=api.auth, allow_redirects=False) as redirect:
        assert redirect.status == 307
        location = redirect.headers["Location"]
    assert location.startswith(f"{fake.base_url}/cdn/media/")
    async with http.get(location) as anonymous:
        assert anonymous.status == 200
        assert anonymous.headers["Content-Type"] == "image/png"
        assert await anonymous.read() == PNG
    async with http.get(location, headers=api.auth) as with_credentials:
        assert with_credentials.status == 403
    # A client that follows the redirect and keeps its Authorization header is refused.
    async with http.get(media_url, headers=api.auth) as naive:
        assert naive.status == 403
    async with http.head(location) as head:
        assert (head.status, head.headers["Content-Type"]) == (200, "image/png")


async def test_media_url_needs_credentials_and_the_cdn_token_cannot_be_forged(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    _, media_url = await inbound_media_url(fake, sink)

    async with http.get(media_url, allow_redirects=False) as anonymous:
        assert anonymous.status == 401
        assert (await anonymous.json())["code"] == 20003
    async with http.get(media_url, headers=api.auth, allow_redirects=False) as redirect:
        location = redirect.headers["Location"]
    _, expires, mac = location.rsplit("/", 1)[1].split(".")
    forged = [
        location.replace(mac, "0" * len(mac)),
        location.replace(f".{expires}.", f".{int(expires) + 60}."),
        location.replace(f".{expires}.", ".1."),
    ]
    for url in forged:
        async with http.get(url) as refused:
            assert refused.status == 403


async def test_media_auth_can_be_switched_off(
    fake: FakeTwilio, account: Account, sink: Sink, http: aiohttp.ClientSession
) -> None:
    fake.state.config.media_auth = False
    _, media_url = await inbound_media_url(fake, sink)
    async with http.get(media_url) as response:
        assert response.status == 200
        assert await response.read() == PNG


async def test_media_metadata_and_list_match_the_spec(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, spec: dict[str, Any]
) -> None:
    message_sid, media_url = await inbound_media_url(fake, sink)
    path = media_url.removeprefix(fake.base_url)

    single = await api.request("GET", f"{path}.json")
    listing = await api.request("GET", api.path(f"/Messages/{message_sid}/Media.json"))

    schema = spec["components"]["schemas"]["api.v2010.account.message.media"]
    assert single.status == 200
    assert schema_errors(single.json, schema, spec) == []
    assert set(single.json) == set(schema["properties"])
    assert single.json["parent_sid"] == message_sid
    assert single.json["uri"] == f"{path}.json"
    assert [m["content_type"] for m in listing.json["media_list"]] == ["image/png", "text/vcard"]
    assert listing.json["next_page_uri"] is None


async def test_deleting_media_removes_it(api: TwilioApi, fake: FakeTwilio, sink: Sink) -> None:
    _, media_url = await inbound_media_url(fake, sink)
    path = media_url.removeprefix(fake.base_url)

    deleted = await api.request("DELETE", f"{path}.json")

    assert deleted.status == 204
    assert (await api.request("GET", f"{path}.json")).status == 404
    assert (await api.request("GET", path)).status == 404


async def serve_media(sink: Sink, head_type: str, get_type: str, status: int = 200) -> None:
    async def media(request: web.Request) -> web.StreamResponse:
        content_type = head_type if request.method == "HEAD" else get_type
        return web.Response(status=status, body=PNG, headers={"Content-Type": content_type})

    sink.responders["/media/1"] = media


async def test_outbound_media_is_fetched_like_twilio_when_enabled(
    api: TwilioApi, fake: FakeTwilio, sink: Sink, http: aiohttp.ClientSession
) -> None:
    fake.state.config.fetch_media = True
    await serve_media(sink, "image/png", "image/png")
    reply = await api.send(MediaUrl=sink.url("/media/1"), StatusCallback=sink.url("/status"))

    received = await sink.wait(2, "/status")

    assert [r.form["MessageStatus"] for r in received] == ["sent", "delivered"]
    assert [r.method for r in sink.at("/media/1")] == ["HEAD", "GET"]
    fetches = fake.state.media_fetches
    assert [(f.method, f.status, f.content_type) for f in fetches] == [
        ("HEAD", 200, "image/png"),
        ("GET", 200, "image/png"),
    ]
    media = (await api.request("GET", reply.json["subresource_uris"]["media"])).json
    content_path = media["media_list"][0]["uri"].removesuffix(".json")
    async with (
        http.get(fake.base_url + content_path, headers=api.auth, allow_redirects=False) as redirect,
        http.get(redirect.headers["Location"]) as cdn,
    ):
        assert await cdn.read() == PNG


async def test_unreachable_media_fails_the_message_with_11200(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.fetch_media = True
    await serve_media(sink, "image/png", "image/png", status=404)
    await api.send(MediaUrl=sink.url("/media/1"), StatusCallback=sink.url("/status"))
    received = await sink.wait(1, "/status")
    assert received[0].form["MessageStatus"] == "failed"
    assert received[0].form["ErrorCode"] == "11200"


async def test_mismatched_media_content_type_fails_with_12300(
    api: TwilioApi, fake: FakeTwilio, sink: Sink
) -> None:
    fake.state.config.fetch_media = True
    await serve_media(sink, "image/png", "image/jpeg")
    await api.send(MediaUrl=sink.url("/media/1"), StatusCallback=sink.url("/status"))
    received = await sink.wait(1, "/status")
    assert (received[0].form["MessageStatus"], received[0].form["ErrorCode"]) == ("failed", "12300")
