"""Media by URL from a PBX that serves it on a private address, as the operator allowed."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.web.bridge_env import Env
from tests.web.test_outbound import US_MOBILE, send


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return {"media_url_allow_private": True}


async def test_media_given_by_url_is_stored_and_offered(env: Env) -> None:
    jpeg = b"\xff\xd8\xff" + b"j" * 3000

    async def picture(request: web.Request) -> web.Response:
        return web.Response(body=jpeg, content_type="image/jpeg")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("/pic.jpg")

    app = web.Application()
    app.router.add_get("/pic.jpg", picture)
    app.router.add_get("/moved.jpg", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reply = await send(
            env,
            {
                "from_extension": "101",
                "to": US_MOBILE,
                "media": [{"url": f"http://127.0.0.1:{port}/moved.jpg"}],
            },
        )
        missing = await send(
            env,
            {
                "from_extension": "101",
                "to": US_MOBILE,
                "media": [{"url": f"http://127.0.0.1:{port}/nothing.jpg"}],
            },
        )
    finally:
        await runner.cleanup()
    assert reply.status == 202, reply.body
    assert reply.body["media"][0]["content_type"] == "image/jpeg"
    assert reply.body["media"][0]["size"] == len(jpeg)
    assert missing.status == 422
    assert missing.body["error"]["code"] == "media_unavailable"
    await env.wait_fake_messages(1)
    [created] = await env.fake_messages()
    [url] = [value for name, value in created["params"] if name == "MediaUrl"]
    async with aiohttp.ClientSession() as session, session.get(url) as got:
        assert await got.read() == jpeg
