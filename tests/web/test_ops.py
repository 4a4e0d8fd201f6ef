from __future__ import annotations

import asyncpg
from openapi_spec_validator import validate as validate_openapi

from bridge.config import Settings
from bridge.db.migrate import code_version
from bridge.web.api import PREFIX, ROUTES
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
