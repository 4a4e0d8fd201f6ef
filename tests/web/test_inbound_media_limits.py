"""Inbound MMS limits: the message reaches the PBX with what could be stored, never held forever."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.bridge_env import Env


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return {"media_max_items": 2, "media_max_bytes": 4096, "media_fetch_attempts": 2}


async def delivered_media(env: Env) -> list[tuple[int, str]]:
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1, within=20)
    return [(m["index"], m["status"]) for m in env.sink.acknowledged[0].body["message"]["media"]]


async def test_items_over_the_count_are_marked_and_not_fetched(env: Env) -> None:
    items = [("text/plain", f"item {i}".encode()) for i in range(3)]
    await env.text_in("three things", media=items)
    assert await delivered_media(env) == [(0, "stored"), (1, "stored"), (2, "failed")]
    fetched = [r for r in env.fake.state.requests if r.operation == "media"]
    assert len(fetched) == 2


async def test_an_item_over_the_size_limit_is_not_retried(env: Env) -> None:
    await env.text_in("big", media=[("image/jpeg", b"j" * 5000), ("text/plain", b"small")])
    assert await delivered_media(env) == [(0, "failed"), (1, "stored")]
    fetched = [r for r in env.fake.state.requests if r.operation == "media"]
    assert len(fetched) == 2


async def test_fetches_that_keep_failing_give_up_and_let_the_message_go(env: Env) -> None:
    await env.fake_control(
        "POST", "/faults", {"next": [{"kind": "500", "count": 10, "operations": ["media"]}]}
    )
    await env.text_in("unlucky", media=[("image/png", b"png")])
    assert await delivered_media(env) == [(0, "failed")]
    fetched = [r for r in env.fake.state.requests if r.operation == "media"]
    assert len(fetched) == 2, "media_fetch_attempts"
