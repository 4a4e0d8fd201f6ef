from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings
from bridge.crypto import SecretBox
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.web.keys import RUNTIME
from tests.conftest import ADMIN_TOKEN, PUBLIC_BASE_URL
from tests.web.conftest import Api, SecretWatch, provision


async def post_public(port: int, url: str) -> aiohttp.ClientResponse:
    """POST to the public listener the path Twilio would use for ``url``."""
    path = url.removeprefix(PUBLIC_BASE_URL.removesuffix("/sms"))
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"http://127.0.0.1:{port}{path}", data={"Body": "x"})
        await response.read()
        return response


async def test_unknown_webhook_tokens_answer_a_bare_404(api: Api) -> None:
    for path in ("/sms/twilio/nope/inbound", "/sms/twilio/nope/status", "/sms/anything", "/"):
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"http://127.0.0.1:{api.public_port}{path}")
            assert response.status == 404
            assert await response.read() == b""


async def test_the_public_listener_serves_no_api(api: Api) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/tenants", "/health", "/metrics", "/sms/api/v1/tenants"):
            response = await session.get(
                f"http://127.0.0.1:{api.public_port}{path}",
                headers={"Authorization": "Bearer admin-token-for-the-tests-0123456789"},
            )
            assert response.status == 404, path


async def test_known_tokens_are_recognised(api: Api) -> None:
    owner = await provision(api, "A")
    response = await post_public(api.public_port, owner.config["webhook_url"])
    assert response.status != 404


async def test_rotated_tokens_work_for_the_grace_period(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/sms-configs/{owner.config['id']}/rotate-webhook"
    rotated = (await api.post(path)).body
    for url in (
        owner.config["webhook_url"],
        rotated["webhook_url"],
        rotated["status_callback_url"],
    ):
        assert (await post_public(api.public_port, url)).status != 404, url


@pytest.fixture
async def no_grace_api(
    settings: Settings, runtime_secrets: RuntimeSecrets, secret_watch: SecretWatch, log_output: None
) -> Any:
    app = create_app(settings.model_copy(update={"webhook_grace_hours": 0}), runtime_secrets)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Api(client, secret_watch)
    await client.close()


async def test_rotated_tokens_stop_after_the_grace_period(no_grace_api: Api) -> None:
    api = no_grace_api
    owner = await provision(api, "A")
    await api.post(f"/tenants/{owner.id}/sms-configs/{owner.config['id']}/rotate-webhook")
    port = api.client.app[RUNTIME].public_port if api.client.app else None
    assert port is not None
    assert (await post_public(port, owner.config["webhook_url"])).status == 404


async def test_an_unexpected_failure_is_a_bare_500_from_the_error_table(
    api: Api, settings: Settings, secret_watch: SecretWatch, log_output: None
) -> None:
    """A bridge restarted with another secret key, the old one not given as previous: the
    stored auth token cannot be opened. That is the operator's to fix, and the listener must
    answer it as any other failure (logged, a bare 500), not with aiohttp's own error page."""
    owner = await provision(api, "A")
    other_key = RuntimeSecrets(admin_token=ADMIN_TOKEN, box=SecretBox(os.urandom(32)))
    app = create_app(settings, other_key)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        port = client.app[RUNTIME].public_port if client.app else None
        assert port is not None
        response = await post_public(port, owner.config["webhook_url"])
        assert response.status == 500
        assert response.content_length in (0, None)
        assert "text/plain" not in response.headers.get("Content-Type", "")
    finally:
        await client.close()


async def test_a_client_gone_mid_body_is_one_quiet_line_and_nothing_stored(
    api: Api, capfd: pytest.CaptureFixture[str], secret_watch: SecretWatch
) -> None:
    owner = await provision(api, "A")
    path = owner.config["webhook_url"].removeprefix(PUBLIC_BASE_URL.removesuffix("/sms"))
    _, writer = await asyncio.open_connection("127.0.0.1", api.public_port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: pbx.example.test\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Content-Length: 1000\r\n\r\nBody=half".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    out, err = capfd.readouterr()
    assert not secret_watch.leaks_in(out + err)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    gone = [e for e in events if e["event"] == "http.client_gone"]
    assert [(e["level"], e["method"]) for e in gone] == [("info", "POST")]
    assert not [e for e in events if e["level"] in ("error", "critical")]
    listed = await api.get(f"/tenants/{owner.id}/messages")
    assert listed.status == 200 and listed.body["items"] == []
