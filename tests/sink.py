"""A PBX stand-in: records the bridge's deliveries, checks their signatures, fails on demand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Delivery:
    event_id: str
    timestamp: int
    body: dict[str, Any]
    signature_ok: bool
    answered: int
    at: float


@dataclass
class Sink:
    """Answers 200 unless told to fail; keeps every attempt it saw."""

    secret: str
    attempts: list[Delivery] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    down: bool = False
    url: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def acknowledged(self) -> list[Delivery]:
        return [d for d in self.attempts if 200 <= d.answered < 300]

    def event_ids(self) -> list[str]:
        return [d.event_id for d in self.acknowledged]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        timestamp = request.headers.get("X-Bridge-Timestamp", "0")
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256
        ).hexdigest()
        signature_ok = hmac.compare_digest(
            request.headers.get("X-Bridge-Signature", ""), "v1=" + expected
        )
        status = 200
        if self.down:
            status = 503
        elif self.fail_next > 0:
            self.fail_next -= 1
            status = self.fail_status
        self.attempts.append(
            Delivery(
                event_id=request.headers.get("X-Bridge-Event-Id", ""),
                timestamp=int(timestamp),
                body=json.loads(raw),
                signature_ok=signature_ok,
                answered=status,
                at=time.monotonic(),
            )
        )
        self._changed.set()
        return web.Response(status=status)


@asynccontextmanager
async def running_sink(secret: str) -> AsyncIterator[Sink]:
    sink = Sink(secret)
    app = web.Application()
    app.router.add_post("/events", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sink.url = f"http://127.0.0.1:{port}/events"
    try:
        yield sink
    finally:
        await runner.cleanup()


async def _serve(port: int, secret: str) -> None:
    sink = Sink(secret)
    app = web.Application()

    async def show(request: web.Request) -> web.Response:
        response = await sink.handle(request)
        last = sink.attempts[-1]
        message = last.body.get("message", {})
        print(
            f"{last.body.get('type')} {last.event_id} signature_ok={last.signature_ok} "
            f"extensions={last.body.get('extensions')} status={message.get('status')} "
            f"from={message.get('from')} to={message.get('to')} body={message.get('body')!r}",
            flush=True,
        )
        return response

    app.router.add_post("/events", show)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"PBX sink on http://127.0.0.1:{port}/events", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A PBX stand-in that prints what it receives")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True)
    options = parser.parse_args()
    asyncio.run(_serve(options.port, options.secret))
