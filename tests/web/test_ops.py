from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from openapi_spec_validator import validate as validate_openapi

from bridge.config import Settings
from bridge.db.migrate import code_version
from bridge.web.api import PREFIX, ROUTES
from tests import factories
from tests.web.conftest import Api, provision


async def test_health(api: Api) -> None:
    reply = await api.call("GET", "/health", token=None)
    assert reply.body == {"status": "ok"}


async def test_ready_reports_the_schema(api: Api, settings: Settings) -> None:
    reply = await api.call("GET", "/ready", token=None)
    assert reply.status == 200
    assert reply.body == {"status": "ready", "schema_version": code_version()}
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'newer')", code_version() + 1
        )
    finally:
        await conn.close()
    reply = await api.call("GET", "/ready", token=None)
    assert reply.status == 503
    assert reply.body["reason"] == "schema"


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    owner = await provision(api, "A")
    await api.get(f"/tenants/{owner.id}")
    await api.get("/tenants/ten_missing")
    text = (await api.call("GET", "/metrics", token=None)).text
    assert (
        'bridge_http_requests_total{listener="internal",method="GET",'
        'route="/api/v1/tenants/{tenant_id}",status="200"} 1.0'
    ) in text
    assert 'route="/api/v1/tenants/{tenant_id}",status="404"} 1.0' in text
    assert owner.id not in text, "metrics must use route templates, not concrete paths"
    assert "bridge_http_request_duration_seconds_bucket" in text
    assert 'bridge_db_pool_connections{state="max"} 4.0' in text
    assert "\nprocess_resident_memory_bytes " in text
    assert "\nprocess_open_fds " in text


async def test_openapi_lists_every_route_with_its_schemas(api: Api) -> None:
    reply = await api.call("GET", PREFIX + "/openapi.json", token=None)
    doc = reply.body
    validate_openapi(doc)
    for route in ROUTES:
        operation = doc["paths"][PREFIX + route.path][route.method.lower()]
        assert str(route.status) in operation["responses"]
        assert ("requestBody" in operation) is (route.body is not None)
    schemas = doc["components"]["schemas"]
    config = schemas["SmsConfigCreate"]["properties"]
    assert {"trunk_id", "account_sid", "credential", "numbers"} <= set(config)
    out = schemas["SmsConfig"]["properties"]
    assert "webhook_url" in out
    assert "auth_token" not in out["credential"].get("properties", {})
    assert "from" in schemas["InboundRule"]["properties"]
    # WhatsApp (design §12): the channel of a text and of a number, and templates.
    assert schemas["Message"]["properties"]["channel"]["enum"] == ["sms", "whatsapp", "rcs"]
    send = schemas["SendRequest"]["properties"]
    assert {"channel", "content_sid", "content_variables"} <= set(send)
    assert "^HX[0-9a-fA-F]{32}$" in json.dumps(send["content_sid"])
    assert "channels" in schemas["SmsNumber"]["properties"]
    assert "channel" in schemas["OptOut"]["properties"]


def named(schema: dict[str, Any]) -> bool:
    """A component, a union of components, or a page/list of one: what a generated client
    turns into a class of that name (not an ...Response200 of free-form dicts)."""
    if "$ref" in schema:
        return True
    if "oneOf" in schema or "anyOf" in schema:
        return all(named(s) for s in schema.get("oneOf", schema.get("anyOf", [])))
    return schema.get("type") == "array" and named(schema["items"])


async def test_openapi_types_every_parameter_and_names_every_answer(api: Api) -> None:
    """The rules every route follows (new ones too): typed, described parameters; JSON
    answers that are named schemas; and union tags a generated client need not pass."""
    doc = (await api.call("GET", PREFIX + "/openapi.json", token=None)).body
    params: dict[tuple[str, str], dict[str, Any]] = {}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for param in operation["parameters"]:
                assert param["description"], (where, param["name"])
                assert param["schema"].get("type") in ("string", "integer", "boolean"), where
                params[(param["in"], param["name"])] = param["schema"]
            for status, answer in operation["responses"].items():
                json_answer = answer.get("content", {}).get("application/json")
                if status.startswith("2") and json_answer:
                    assert named(json_answer["schema"]), where
    assert params[("query", "limit")] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 100,
    }
    assert params[("query", "cursor")]["type"] == "string"
    assert params[("query", "direction")]["enum"] == ["inbound", "outbound"]
    assert "unroutable" in params[("query", "status")]["enum"]
    assert params[("query", "channel")]["enum"] == ["sms", "whatsapp", "rcs"]
    assert params[("path", "index")] == {"type": "integer", "minimum": 0, "maximum": 1000}
    assert params[("header", "Idempotency-Key")]["maxLength"] == 200
    assert ("header", "Last-Event-ID") in params

    schemas = doc["components"]["schemas"]
    for model, tag, value in (
        ("AuthTokenCredential", "type", "auth_token"),
        ("ApiKeyCredential", "type", "api_key"),
        ("InboundExplainRequest", "direction", "inbound"),
        ("OutboundExplainRequest", "direction", "outbound"),
    ):
        assert tag not in schemas[model]["required"], model
        assert schemas[model]["properties"][tag] | {"title": ""} == {
            "const": value,
            "default": value,
            "type": "string",
            "title": "",
        }
    ops = doc["paths"]
    explain = ops[PREFIX + "/tenants/{tenant_id}/routing/explain"]["post"]["responses"]["200"]
    assert {s["$ref"] for s in explain["content"]["application/json"]["schema"]["oneOf"]} == {
        "#/components/schemas/InboundExplanation",
        "#/components/schemas/OutboundExplanation",
    }
    validate = ops[PREFIX + "/tenants/{tenant_id}/sms-configs/{config_id}/validate"]["post"]
    assert validate["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CredentialsCheck"
    }
    events = ops[PREFIX + "/tenants/{tenant_id}/events"]["get"]["responses"]["200"]
    assert "text/event-stream" in events["content"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=1e2", "limit"),
        ("limit=", "limit"),
        ("direction=sideways", "direction"),
        ("status=lost", "status"),
        ("number=" + "1" * 41, "number"),
    ],
)
async def test_the_server_refuses_what_the_document_does_not_allow(
    api: Api, query: str, field: str
) -> None:
    owner = await provision(api, "A")
    reply = await api.get(f"/tenants/{owner.id}/messages?{query}")
    assert reply.status == 422, reply.body
    assert [d["field"] for d in reply.body["error"]["details"]] == [field]


async def test_a_credential_or_question_may_leave_its_tag_out(api: Api) -> None:
    """As the document says (each variant's tag is its default): the shape tells them apart."""
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/sms-configs/{owner.config['id']}"
    token = factories.hex32()
    changed = await api.patch(path, {"credential": {"auth_token": token}})
    assert changed.status == 200, changed.body
    assert changed.body["credential"]["type"] == "auth_token"
    key = factories.api_key_credential()
    del key["type"]
    changed = await api.patch(path, {"credential": key})
    assert changed.status == 200, changed.body
    assert changed.body["credential"]["type"] == "api_key"
    wrong = await api.patch(path, {"credential": {"type": "password", "auth_token": token}})
    assert wrong.status == 422
    assert wrong.body["error"]["details"][0] == {
        "field": "credential",
        "message": "type must be one of api_key, auth_token",
    }
    explain = f"/tenants/{owner.id}/routing/explain"
    inbound = await api.post(explain, {"to": owner.number, "from": "+15557654321"})
    assert (inbound.status, inbound.body["direction"]) == (200, "inbound")
    outbound = await api.post(explain, {"from_extension": "101", "to": "+15557654321"})
    assert (outbound.status, outbound.body["direction"]) == (200, "outbound")
