"""The design's floor: acknowledge each webhook, then POST it to the PBX sink as JSON.

    python -m bench.forward --port PORT --sink URL

What one Python process on aiohttp (and uvloop, as the daemon runs) can take in and pass on
per second when it does nothing else: no signature check, no database, no routing, no order.
The bridge does all of that on top, so this rate, not the bare handler's, is what it can
approach; the table prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
import uvloop
from aiohttp import web

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def serve(port: int, sink: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    posting: set[asyncio.Task[None]] = set()

    async def forward(form: dict[str, str]) -> None:
        body = json.dumps({"type": "message.received", "message": form}).encode()
        headers = {"Content-Type": "application/json"}
        async with session.post(sink, data=body, headers=headers) as response:
            await response.read()

    async def webhook(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        if "MessageSid" not in form:
            return web.Response(status=400)
        task = asyncio.create_task(forward(form))
        posting.add(task)
        task.add_done_callback(posting.discard)
        return web.Response(body=TWIML, content_type="text/xml", charset="utf-8")

    app = web.Application()
    app.router.add_post("/{tail:.*}", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sink", required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.sink))


if __name__ == "__main__":
    main()
