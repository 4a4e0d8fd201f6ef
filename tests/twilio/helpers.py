"""Loopback servers and secret checks shared by the Twilio client's tests."""

from __future__ import annotations

import socket
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from bridge.twilio.client import Credentials


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on an ephemeral loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def json_app(
    status: int, document: object, headers: dict[str, str] | None = None
) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response(document, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def secrets_of(creds: Credentials) -> list[str]:
    header = aiohttp.encode_basic_auth(creds.username, creds.password)
    return [creds.password, header, header.removeprefix("Basic ")]


def exception_texts(error: BaseException) -> Iterator[str]:
    yield "".join(traceback.format_exception(error))
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield repr(current.args)
        yield repr(vars(current))
        current = current.__cause__ or current.__context__
