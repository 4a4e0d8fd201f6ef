from __future__ import annotations

import asyncpg
import pytest

from bridge.config import Settings
from tests import factories
from tests.web.conftest import Api, provision


async def tenant_with_trunk(api: Api, name: str = "A") -> tuple[str, str]:
    tid = (await api.post("/tenants", {"name": name})).body["id"]
    trunk = (await api.post(f"/tenants/{tid}/trunks", {"name": "Main"})).body["id"]
    return tid, trunk


async def test_create_returns_urls_and_no_secret(api: Api) -> None:
    tid, trunk = await tenant_with_trunk(api)
    body = factories.sms_config(trunk, sender_id="ACME Corp")
    reply = await api.post(f"/tenants/{tid}/sms-configs", body)
    assert reply.status == 201
    config = reply.body
    token = body["credential"]["auth_token"]
    assert config["credential"] == {
        "type": "auth_token",
        "api_key_sid": None,
        "auth_token_last4": token[-4:],
    }
    assert config["sender_id"] == "ACME Corp"
    base = "https://pbx.example.test/sms/twilio/"
    assert config["webhook_url"].startswith(base) and config["webhook_url"].endswith("/inbound")
    webhook_token = config["webhook_url"][len(base) : -len("/inbound")]
    assert len(webhook_token) >= 22  # 128 bits in URL-safe base64
    assert config["status_callback_url"] == f"{base}{webhook_token}/status"
    assert (await api.get(f"/tenants/{tid}/sms-configs/{config['id']}")).body == config


async def test_api_key_credential(api: Api) -> None:
    tid, trunk = await tenant_with_trunk(api)
    credential = factories.api_key_credential()
    reply = await api.post(
        f"/tenants/{tid}/sms-configs", factories.sms_config(trunk, credential=credential)
    )
    assert reply.status == 201
    assert reply.body["credential"] == {
        "type": "api_key",
        "api_key_sid": credential["api_key_sid"],
        "auth_token_last4": credential["auth_token"][-4:],
    }


async def test_secrets_are_encrypted_at_rest(api: Api, settings: Settings) -> None:
    tid, trunk = await tenant_with_trunk(api)
    credential = factories.api_key_credential()
    await api.post(
        f"/tenants/{tid}/sms-configs", factories.sms_config(trunk, credential=credential)
    )
    delivery_secret = factories.hex32()
    await api.put(
        f"/tenants/{tid}/delivery", {"url": "https://pbx.example.test/h", "secret": delivery_secret}
    )
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        dump = ""
        for table in ("sms_configs", "delivery_targets"):
            rows = await conn.fetch(f"SELECT * FROM {table}")
            dump += repr([dict(r) for r in rows])
    finally:
        await conn.close()
    for secret in (credential["auth_token"], credential["api_key_secret"], delivery_secret):
        assert secret not in dump
        assert secret.encode().hex() not in dump


async def test_allowed_countries_default_to_the_tenants_country(api: Api) -> None:
    tid = (await api.post("/tenants", {"name": "A", "default_country": "GB"})).body["id"]
    trunk = (await api.post(f"/tenants/{tid}/trunks", {"name": "Main"})).body["id"]
    body = factories.sms_config(trunk)
    del body["allowed_countries"]
    reply = await api.post(f"/tenants/{tid}/sms-configs", body)
    assert reply.body["allowed_countries"] == ["GB"]


async def test_numbers_are_normalised_in_the_tenants_country(api: Api) -> None:
    tid, trunk = await tenant_with_trunk(api)
    body = factories.sms_config(trunk, numbers=[{"number": "(555) 010-4242"}])
    reply = await api.post(f"/tenants/{tid}/sms-configs", body)
    assert reply.status == 201, reply.body
    assert reply.body["numbers"] == [
        {
            "number": "+15550104242",
            "type": "long_code",
            "mms": True,
            "mps": None,
            "channels": ["sms"],
        }
    ]


async def test_a_number_belongs_to_one_configuration_in_the_whole_system(api: Api) -> None:
    owner = await provision(api, "A")
    tid, trunk = await tenant_with_trunk(api, "B")
    body = factories.sms_config(trunk, numbers=[{"number": owner.number}])
    reply = await api.post(f"/tenants/{tid}/sms-configs", body)
    assert reply.status == 409
    assert owner.id not in reply.text and "A" not in reply.body["error"]["message"].split()
    assert (await api.get(f"/tenants/{tid}/sms-configs")).body["items"] == []
    # Nor through a PATCH of an existing configuration.
    ok = await api.post(f"/tenants/{tid}/sms-configs", factories.sms_config(trunk))
    patched = await api.patch(
        f"/tenants/{tid}/sms-configs/{ok.body['id']}", {"numbers": [{"number": owner.number}]}
    )
    assert patched.status == 409
    again = await api.get(f"/tenants/{tid}/sms-configs/{ok.body['id']}")
    assert again.body == ok.body


async def test_one_configuration_per_trunk(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.post(f"/tenants/{owner.id}/sms-configs", factories.sms_config(owner.trunk_id))
    assert reply.status == 409


async def test_trunk_must_belong_to_the_tenant(api: Api) -> None:
    other = await provision(api, "A")
    tid, _ = await tenant_with_trunk(api, "B")
    reply = await api.post(f"/tenants/{tid}/sms-configs", factories.sms_config(other.trunk_id))
    assert reply.status == 422
    assert reply.body["error"]["details"][0]["field"] == "trunk_id"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account_sid": "AC123"}, "account_sid"),
        ({"sender_id": "123456"}, "sender_id"),
        ({"sender_id": "Way Too Long Name"}, "sender_id"),
        ({"messaging_service_sid": "MGxyz"}, "messaging_service_sid"),
        ({"numbers": [{"number": "hello"}]}, "numbers[0]"),
        ({"numbers": [{"number": "+15550001111", "type": "fax"}]}, "numbers[0].type"),
        ({"allowed_countries": ["ZZ"]}, "allowed_countries[0]"),
        ({"credential": {"type": "auth_token", "auth_token": "nope"}}, "credential.auth_token"),
    ],
)
async def test_bad_fields_are_named(api: Api, change: dict[str, object], field: str) -> None:
    tid, trunk = await tenant_with_trunk(api)
    reply = await api.post(f"/tenants/{tid}/sms-configs", factories.sms_config(trunk, **change))
    assert reply.status == 422, reply.body
    assert [d["field"] for d in reply.body["error"]["details"]] == [field]
    assert (await api.get(f"/tenants/{tid}/sms-configs")).body["items"] == []


async def test_patch_changes_only_what_it_names(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/sms-configs/{owner.config['id']}"
    new_token = factories.hex32()
    reply = await api.patch(
        path,
        {
            "enabled": False,
            "sender_id": "ACME",
            "credential": {"type": "auth_token", "auth_token": new_token},
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["enabled"] is False
    assert reply.body["sender_id"] == "ACME"
    assert reply.body["credential"]["auth_token_last4"] == new_token[-4:]
    assert reply.body["numbers"] == owner.config["numbers"]
    assert reply.body["webhook_url"] == owner.config["webhook_url"]
    cleared = await api.patch(path, {"sender_id": None})
    assert cleared.body["sender_id"] is None
    assert cleared.body["enabled"] is False
    bad = await api.patch(path, {"enabled": "maybe"})
    assert bad.status == 422
    assert (await api.get(path)).body == cleared.body


async def test_rotate_webhook(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/sms-configs/{owner.config['id']}"
    rotated = await api.post(path + "/rotate-webhook")
    assert rotated.status == 200
    assert rotated.body["webhook_url"] != owner.config["webhook_url"]
    assert rotated.body["status_callback_url"] != owner.config["status_callback_url"]
    assert rotated.body["previous_webhook_valid_until"] is not None
    assert (await api.get(path)).body["webhook_url"] == rotated.body["webhook_url"]


async def test_delete_configuration(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/sms-configs/{owner.config['id']}"
    assert (await api.delete(path)).status == 204
    assert (await api.get(path)).status == 404
    assert (await api.delete(path)).status == 404
