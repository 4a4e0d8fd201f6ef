"""What the benchmark's phases share: output, child processes, and reading the fake Twilio."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def process(
    args: list[str], log: Path, cwd: Path = ROOT, stop: int = signal.SIGTERM
) -> Iterator[subprocess.Popen[bytes]]:
    """A child for the length of the block, its output in ``log``; ended with ``stop`` (SIPp
    ends cleanly, its last screen written, on SIGINT)."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )
    try:
        yield child
    finally:
        child.send_signal(stop)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def wait_http(url: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {limit:.0f} s")


async def fake_requests(fake: str, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """The creates the fake Twilio took (201), oldest first."""
    async with session.get(fake + "/_fake/requests?operation=create") as response:
        records: list[dict[str, Any]] = (await response.json())["requests"]
    return [r for r in records if r["status"] == 201]


async def fake_count(fake: str, session: aiohttp.ClientSession) -> int:
    """How many messages the fake has created: cheap to ask while a run goes, unlike the list
    (the fake would spend its loop encoding thousands of records, and answer the bridge late)."""
    async with session.get(fake + "/_fake/state") as response:
        count: int = (await response.json())["counts"]["messages"]
    return count


class Api:
    """The bridge's internal API, failing loudly: a benchmark's set-up must not half-work."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def __call__(self, method: str, path: str, body: object = None) -> Any:
        async with self.session.request(method, self.base + path, json=body) as response:
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()

    async def sms_config(
        self, tenant: str, trunk: str, name: str, account_sid: str, auth_token: str, **fields: Any
    ) -> Any:
        """A US-only SMS configuration on ``trunk``, with an auth token, and ``fields``."""
        body = {
            "trunk_id": trunk,
            "name": name,
            "account_sid": account_sid,
            "credential": {"type": "auth_token", "auth_token": auth_token},
            "allowed_countries": ["US"],
            **fields,
        }
        return await self("POST", f"/tenants/{tenant}/sms-configs", body)


def form_value(record: dict[str, Any], name: str) -> str:
    return str(next(v for k, v in record["form"] if k == name))
