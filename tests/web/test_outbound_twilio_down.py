"""Twilio unreachable: accepted texts wait and retry; none fails for it, none is lost."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bridge.config import Settings
from tests.daemon import free_port
from tests.waiting import eventually
from tests.web.bridge_env import Env
from tests.web.test_outbound import US_MOBILE, message, send


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    return {"twilio_api_base": f"http://127.0.0.1:{free_port()}"}


async def test_connection_refused_is_retried_not_failed(env: Env, settings: Settings) -> None:
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "patience"})
    assert reply.status == 202
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:

        async def retried_and_cleared() -> bool:
            # Between attempts, not during one: an attempt in progress carries the mark until
            # its refusal is recorded. A mark that survives a refusal is never seen cleared.
            return bool(
                await conn.fetchval(
                    "SELECT attempts >= 2 AND attempt_started_at IS NULL AND state = 'queued' "
                    "AND last_error LIKE '%could not connect%' FROM sends"
                )
            )

        await eventually(retried_and_cleared)
    finally:
        await conn.close()
    assert (await message(env, reply.body["id"]))["status"] == "accepted"


async def test_deleting_the_configuration_fails_queued_texts(env: Env) -> None:
    reply = await send(env, {"from_extension": "101", "to": US_MOBILE, "body": "orphan"})
    path = f"/tenants/{env.tenant_id}/sms-configs/{env.config['id']}"
    assert (await env.api.delete(path)).status == 204
    gone = await message(env, reply.body["id"])
    assert gone["status"] == "failed"
    assert gone["error_message"] == "the SMS configuration was deleted before this text was sent"
    await env.sink.wait_for(lambda: len(env.sink.acknowledged) == 1)
    assert env.sink.acknowledged[0].body["message"]["status"] == "failed"
