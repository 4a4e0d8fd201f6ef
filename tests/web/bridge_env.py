"""The bridge app with its workers, a fake Twilio and a PBX sink, wired as in production."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge.fake_twilio import FakeTwilio
from tests.sink import Sink
from tests.web.conftest import Api

# The bridge of tests/web with SIP on a loopback port and a quick store-and-forward.
SIP_SETTINGS: dict[str, Any] = {
    "sip_listen": "127.0.0.1:0",
    "sip_retry_base_seconds": 0.3,
    "sip_retry_cap_seconds": 1.0,
    "worker_poll_seconds": 0.2,
}


@dataclass
class Env:
    api: Api
    fake: FakeTwilio
    sink: Sink
    tenant_id: str
    config: dict[str, Any]
    number: str
    account_sid: str
    auth_token: str

    def public_url(self, twilio_url: str) -> str:
        """Where Twilio's request for ``twilio_url`` lands: here the public base is real."""
        return twilio_url

    async def fake_control(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.fake.base_url}/_fake{path}", json=body) as r,
        ):
            assert r.status < 300, await r.text()
            return await r.json() if r.content_type == "application/json" else None

    async def wait_fake_messages(self, count: int, within: float = 10.0) -> None:
        """Until the fake Twilio holds ``count`` outbound messages."""
        state = self.fake.state

        def enough() -> bool:
            return sum(m.direction != "inbound" for m in state.messages.values()) >= count

        await self.fake.wait_for(enough, within)

    async def fake_messages(self) -> list[dict[str, Any]]:
        """Every outbound message the fake Twilio stored, oldest first."""
        found = await self.fake_control("GET", "/messages")
        return [m for m in found["messages"] if m["direction"] != "inbound"]

    async def text_in(self, body: str = "hello", *, from_: str = "+15557654321", **kw: Any) -> Any:
        """The fake Twilio sends a signed inbound text to this configuration's webhook."""
        return await self.fake.send_inbound(
            self.public_url(self.config["webhook_url"]),
            from_=from_,
            to=kw.pop("to", self.number),
            body=body,
            sign_url=self.config["webhook_url"],
            **kw,
        )

    async def post_public(
        self, twilio_url: str, data: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.public_url(twilio_url), data=data, headers=headers or {}) as r,
        ):
            return r.status, r.headers.get("Content-Type", ""), await r.read()
