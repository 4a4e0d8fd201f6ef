"""An integrator's client, generated from the live OpenAPI document with openapi-python-client,
driving the real app over loopback: a tenant, a configuration, a send and an explain."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bridge.web.api import PREFIX
from tests import factories
from tests.waiting import eventually
from tests.web.bridge_env import Env

PACKAGE = "bridge_client"
# No formatter hooks (ruff need not be on PATH), one package name whatever the title says.
CONFIG = f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n"


async def generate(document: bytes, where: Path) -> None:
    """``openapi-python-client generate`` in a child process, from a file (no network)."""
    spec, config = where / "openapi.json", where / "config.yaml"
    spec.write_bytes(document)
    config.write_text(CONFIG)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(spec),
        "--output-path",
        str(where / PACKAGE),
        "--meta",
        "none",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, out.decode()
    # A schema the generator could not read is a warning, and a missing function or model.
    assert b"Warning" not in out, out.decode()


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class Generated:
    """The generated package: ``ops.create_tenant`` etc., ``models.TenantCreate`` etc."""

    def __init__(self) -> None:
        self.package = importlib.import_module(PACKAGE)
        self.models = importlib.import_module(PACKAGE + ".models")
        self.types = importlib.import_module(PACKAGE + ".types")

    def op(self, name: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.api.default.{name}")

    def client(self, base_url: str, token: str) -> Any:
        return self.package.AuthenticatedClient(base_url=base_url, token=token)


async def test_a_generated_client_drives_the_api(env: Env, importable: Path) -> None:
    started = time.monotonic()
    reply = await env.api.call("GET", PREFIX + "/openapi.json", token=None)
    await generate(reply.raw, importable)
    gen = Generated()
    m = gen.models
    base = str(env.api.client.make_url("/")).rstrip("/")

    async with gen.client(base, env.api.token) as admin:
        tenant = await gen.op("create_tenant").asyncio(
            client=admin, body=m.TenantCreate(name="Generated Co")
        )
        assert isinstance(tenant, m.Tenant), tenant
        assert (tenant.default_country, tenant.affinity_hours) == ("US", 72)
        tid = tenant.id
        trunk = await gen.op("create_trunk").asyncio(
            tid, client=admin, body=m.TrunkCreate(name="Main")
        )
        number = factories.number()
        # No `type`: the class already says which credential it is.
        credential = m.AuthTokenCredential(auth_token=env.auth_token)
        config = await gen.op("create_config").asyncio(
            tid,
            client=admin,
            body=m.SmsConfigCreate(
                trunk_id=trunk.id,
                name="Generated",
                account_sid=env.account_sid,
                credential=credential,
                numbers=[m.SmsNumber(number=number)],
            ),
        )
        assert isinstance(config, m.SmsConfig), config
        assert config.credential.type_ == m.CredentialOutType.AUTH_TOKEN
        assert config.credential.auth_token_last4 == env.auth_token[-4:]
        assert config.webhook_url.endswith("/inbound")

        checked = await gen.op("validate_config").asyncio(tid, config.id, client=admin)
        assert isinstance(checked, m.CredentialsCheck), checked
        assert checked.ok is True
        assert checked.account.sid == env.account_sid

        await gen.op("put_extensions").asyncio(
            tid,
            client=admin,
            body=[m.Extension(extension="101", name="Front desk", dids=[number])],
        )
        await gen.op("put_inbound_rules").asyncio(
            tid, client=admin, body=[m.InboundRule(name="Main", did=number, extensions=["101"])]
        )
        rules = await gen.op("put_outbound_rules").asyncio(
            tid, client=admin, body=[m.OutboundRule(name="US", trunks=[trunk.id])]
        )
        assert [r.name for r in rules.items] == ["US"]

        # Neither question names its direction: the class does.
        explain = gen.op("explain")
        inbound = await explain.asyncio(
            tid, client=admin, body=m.InboundExplainRequest(to=number, from_="+15557654321")
        )
        assert isinstance(inbound, m.InboundExplanation), inbound
        assert inbound.decision == m.InboundExplanationDecision.RULE
        assert (inbound.extensions, inbound.rule, inbound.config_id) == (
            ["101"],
            "Main",
            config.id,
        )
        outbound = await explain.asyncio(
            tid,
            client=admin,
            body=m.OutboundExplainRequest(from_extension="101", to="555 765 4321"),
        )
        assert isinstance(outbound, m.OutboundExplanation), outbound
        assert (outbound.decision, outbound.to, outbound.sender) == (
            "send",
            "+15557654321",
            number,
        )

        send = gen.op("send_message")
        body = m.SendRequest(from_extension="101", to="+15557654321", body="Hello from a client")
        sent = await send.asyncio_detailed(
            tid, client=admin, body=body, idempotency_key="generated-1"
        )
        assert sent.status_code == 202, sent.content
        message = sent.parsed
        assert isinstance(message, m.Message)
        assert message.status == m.MessageStatus.ACCEPTED
        again = await send.asyncio(tid, client=admin, body=body, idempotency_key="generated-1")
        assert again.id == message.id

        read = gen.op("get_message")
        latest: list[Any] = []

        async def delivered() -> bool:
            latest.append(await read.asyncio(tid, message.id, client=admin))
            return bool(latest[-1].status == m.MessageStatus.DELIVERED)

        await eventually(delivered, within=15)
        done = latest[-1]
        assert done.twilio_sid.startswith("SM")
        assert done.status_history[0].status == m.StatusChangeStatus.ACCEPTED

        listed = await gen.op("list_messages").asyncio(
            tid, client=admin, limit=1, direction=m.ListMessagesDirection.OUTBOUND
        )
        assert isinstance(listed, m.PageMessage)
        assert [x.id for x in listed.items] == [message.id]
        assert isinstance(listed.next_cursor, gen.types.Unset) or listed.next_cursor is None

        # Outside the documented bounds: the answer is the documented error, parsed.
        refused = await gen.op("list_messages").asyncio_detailed(tid, client=admin, limit=0)
        assert refused.status_code == 422
        assert refused.parsed.error.details[0].field == "limit"

    sent_to_twilio = await env.fake_messages()
    assert [(x["from"], x["body"]) for x in sent_to_twilio] == [(number, "Hello from a client")]
    assert time.monotonic() - started < 30
