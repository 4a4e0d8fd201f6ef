from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.config import Settings
from bridge.fake_twilio import running_fake_twilio
from bridge.log import configure_logging
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.web.keys import RUNTIME
from tests import factories
from tests.conftest import ADMIN_TOKEN
from tests.daemon import free_port
from tests.sink import running_sink

if TYPE_CHECKING:
    from tests.web.bridge_env import Env

SECRET_FIELDS = (
    "auth_token",
    "api_key_secret",
    "secret",
    "token",
    "auth_password",
    "inbound_password",
)


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: dict[str, str]
    raw: bytes = b""


@dataclass
class SecretWatch:
    """Every secret the tests send or are issued, to look for later where it must not be."""

    seen: set[str] = field(default_factory=lambda: {ADMIN_TOKEN})

    def collect(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SECRET_FIELDS and isinstance(item, str) and len(item) >= 8:
                    self.seen.add(item)
                else:
                    self.collect(item)
        elif isinstance(value, list):
            for item in value:
                self.collect(item)

    def leaks_in(self, text: str) -> list[str]:
        return [s for s in self.seen if s in text]


class Api:
    """The internal API over real HTTP, as the PBX portal would call it."""

    def __init__(self, client: TestClient[Any, Any], watch: SecretWatch) -> None:
        self.client = client
        self.watch = watch
        self.token = ADMIN_TOKEN

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        bearer = self.token if token == "default" else token
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        if raw is not None:
            data: bytes | None = raw
        elif body is not None:
            data = json.dumps(body).encode()
            self.watch.collect(body)
        else:
            data = None
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.client.request(method, path, data=data, headers=sent) as resp:
            raw_body = await resp.read()
            text = raw_body.decode("utf-8", errors="replace")
            parsed = json.loads(text) if resp.content_type == "application/json" and text else None
            issued = method == "POST" and path.endswith("/tokens") and resp.status == 201 and parsed
            if issued:
                self.watch.seen.add(parsed["token"])
            else:
                leaks = self.watch.leaks_in(text)
                assert not leaks, f"{method} {path} answered with a secret"
            return Reply(resp.status, parsed, text, dict(resp.headers), raw_body)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", "/api/v1" + path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", "/api/v1" + path, body if body is not None else {}, **kw)

    async def put(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.call("PUT", "/api/v1" + path, body, **kw)

    async def patch(self, path: str, body: Any, **kw: Any) -> Reply:
        return await self.call("PATCH", "/api/v1" + path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", "/api/v1" + path, **kw)

    @property
    def public_port(self) -> int:
        port = self.client.app[RUNTIME].public_port if self.client.app else None
        assert port is not None
        return port


@pytest.fixture(scope="session")
def secret_watch() -> SecretWatch:
    """Shared by the whole API test run, so a secret from one test is looked for in all."""
    return SecretWatch()


@pytest.fixture
def log_output(capfd: pytest.CaptureFixture[str], secret_watch: SecretWatch) -> Iterator[None]:
    configure_logging("debug", "json")
    yield
    out, err = capfd.readouterr()
    leaks = secret_watch.leaks_in(out + err)
    assert not leaks, "a secret was written to the log"


@pytest.fixture
async def api(
    settings: Settings,
    runtime_secrets: RuntimeSecrets,
    secret_watch: SecretWatch,
    log_output: None,
) -> AsyncIterator[Api]:
    app = create_app(settings, runtime_secrets)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, secret_watch)
    finally:
        await client.close()


@dataclass
class TenantSetup:
    """A tenant with one of everything, and a token of its own."""

    id: str
    token: str
    trunk_id: str
    config: dict[str, Any]
    number: str


async def provision(api: Api, name: str) -> TenantSetup:
    return await provision_tenant(api, name)


async def provision_tenant(
    api: Api,
    name: str,
    *,
    delivery_url: str = "http://127.0.0.1:9/hook",
    delivery_secret: str | None = None,
    **config: Any,
) -> TenantSetup:
    tenant = await api.post("/tenants", {"name": name})
    assert tenant.status == 201, tenant.body
    tid = tenant.body["id"]
    token = await api.post(f"/tenants/{tid}/tokens", {"label": "portal"})
    assert token.status == 201
    trunk = await api.post(f"/tenants/{tid}/trunks", {"name": "Main"})
    assert trunk.status == 201
    body = factories.sms_config(trunk.body["id"], **config)
    config = await api.post(f"/tenants/{tid}/sms-configs", body)
    assert config.status == 201, config.body
    number = config.body["numbers"][0]["number"]
    ext = await api.put(
        f"/tenants/{tid}/extensions",
        [{"extension": "101", "name": "Front desk", "dids": [number], "default_did": number}],
    )
    assert ext.status == 200, ext.body
    rules = await api.put(
        f"/tenants/{tid}/inbound-rules", [{"name": "all", "did": "*", "extensions": ["101"]}]
    )
    assert rules.status == 200, rules.body
    out = await api.put(
        f"/tenants/{tid}/outbound-rules", [{"name": "all", "trunks": [trunk.body["id"]]}]
    )
    assert out.status == 200, out.body
    delivery = await api.put(
        f"/tenants/{tid}/delivery",
        {"url": delivery_url, "secret": delivery_secret or factories.hex32()},
    )
    assert delivery.status == 200, delivery.body
    return TenantSetup(tid, token.body["token"], trunk.body["id"], config.body, number)


@pytest.fixture
def env_overrides() -> dict[str, Any]:
    """Settings a test module changes for its bridge (override this fixture there)."""
    return {}


@pytest.fixture
async def env(
    env_overrides: dict[str, Any],
    settings: Settings,
    runtime_secrets: RuntimeSecrets,
    secret_watch: SecretWatch,
    log_output: None,
) -> AsyncIterator[Env]:
    account_sid, auth_token = factories.account_sid(), factories.hex32()
    secret_watch.seen.add(auth_token)
    async with (
        running_fake_twilio(accounts=[(account_sid, auth_token)]) as fake,
        running_sink(factories.hex32()) as sink,
    ):
        secret_watch.seen.add(sink.secret)
        # Twilio's callbacks must reach us: the public base URL is the real listener here.
        port = free_port()
        app = create_app(
            settings.model_copy(
                update={
                    "twilio_api_base": fake.base_url,
                    "twilio_messaging_api_base": fake.base_url,
                    "run_workers": True,
                    "public_listen": f"127.0.0.1:{port}",
                    "public_base_url": f"http://127.0.0.1:{port}/sms",
                    **env_overrides,
                }
            ),
            runtime_secrets,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            api = Api(client, secret_watch)
            tenant = await provision_tenant(
                api,
                "Acme",
                credential={"type": "auth_token", "auth_token": auth_token},
                account_sid=account_sid,
                delivery_url=sink.url,
                delivery_secret=sink.secret,
            )
            from tests.web.bridge_env import Env

            yield Env(
                api,
                fake,
                sink,
                tenant.id,
                tenant.config,
                tenant.number,
                account_sid,
                auth_token,
            )
        finally:
            await client.close()
