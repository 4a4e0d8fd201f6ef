"""Who may call what: every route of the table, every kind of caller."""

from __future__ import annotations

import re

import pytest

from bridge.web.api import ROUTES, ApiRoute
from tests.web.conftest import Api, TenantSetup, provision


def fill(route: ApiRoute, owner: TenantSetup) -> str:
    values = {
        "tenant_id": owner.id,
        "trunk_id": owner.trunk_id,
        "config_id": owner.config["id"],
        "token_id": "tok_does_not_matter",
        "message_id": "msg_does_not_matter",
        "index": "0",
        "extension": "101",
    }
    return re.sub(r"{(\w+)}", lambda m: values[m[1]], route.path)


def sample_body(route: ApiRoute) -> object:
    if route.method in ("PUT",) and route.path.endswith(("extensions", "rules")):
        return []
    if route.path.endswith("/routing/explain"):
        return {"direction": "inbound", "to": "+15550001111", "from": "+15550002222"}
    return {} if route.method in ("POST", "PUT", "PATCH") else None


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_no_token_or_unknown_token_is_401(api: Api, route: ApiRoute) -> None:
    owner = await provision(api, "A")
    for token in (None, "sbt_not-a-real-token-at-all-0000000000", "Bearer", ""):
        reply = await api.call(
            route.method, "/api/v1" + fill(route, owner), sample_body(route), token=token
        )
        assert reply.status == 401, (token, reply.body)
        assert reply.body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if "{tenant_id}" in r.path], ids=lambda r: f"{r.method} {r.path}"
)
async def test_another_tenants_resources_do_not_exist(api: Api, route: ApiRoute) -> None:
    owner = await provision(api, "A")
    stranger = await provision(api, "B")
    path = "/api/v1" + fill(route, owner)
    before = await api.call("GET", "/api/v1" + f"/tenants/{owner.id}/sms-configs")
    reply = await api.call(route.method, path, sample_body(route), token=stranger.token)
    expected = 403 if route.admin_only else 404
    assert reply.status == expected, reply.body
    assert owner.id not in reply.text
    after = await api.call("GET", "/api/v1" + f"/tenants/{owner.id}/sms-configs")
    assert after.body == before.body, "a refused call changed something"


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.admin_only], ids=lambda r: f"{r.method} {r.path}"
)
async def test_tenant_tokens_cannot_use_admin_routes_even_for_their_own_tenant(
    api: Api, route: ApiRoute
) -> None:
    owner = await provision(api, "A")
    reply = await api.call(
        route.method, "/api/v1" + fill(route, owner), sample_body(route), token=owner.token
    )
    assert reply.status == 403
    assert reply.body["error"]["code"] == "forbidden"


async def test_a_tenant_token_works_inside_its_tenant(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.get(f"/tenants/{owner.id}/sms-configs", token=owner.token)
    assert reply.status == 200
    assert [c["id"] for c in reply.body["items"]] == [owner.config["id"]]
    trunk = await api.post(f"/tenants/{owner.id}/trunks", {"name": "Second"}, token=owner.token)
    assert trunk.status == 201


async def test_revoked_tokens_stop_working(api: Api) -> None:
    owner = await provision(api, "A")
    tokens = await api.get(f"/tenants/{owner.id}/tokens")
    assert tokens.status == 200
    assert "token" not in tokens.body["items"][0]
    token_id = tokens.body["items"][0]["id"]
    assert (await api.get(f"/tenants/{owner.id}", token=owner.token)).status == 200
    assert (await api.delete(f"/tenants/{owner.id}/tokens/{token_id}")).status == 204
    assert (await api.get(f"/tenants/{owner.id}", token=owner.token)).status == 401
    listed = await api.get(f"/tenants/{owner.id}/tokens")
    assert listed.body["items"][0]["revoked_at"] is not None
    assert (await api.delete(f"/tenants/{owner.id}/tokens/tok_nope")).status == 404


async def test_public_operational_routes_need_no_token(api: Api) -> None:
    for path in ("/health", "/ready", "/metrics", "/api/v1/openapi.json"):
        reply = await api.call("GET", path, token=None)
        assert reply.status == 200, path
