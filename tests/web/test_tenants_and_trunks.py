from __future__ import annotations

from tests import factories
from tests.web.conftest import Api, provision


async def test_tenant_lifecycle(api: Api) -> None:
    created = await api.post("/tenants", {"name": "Acme", "default_country": "gb"})
    assert created.status == 201
    tenant = created.body
    assert tenant["default_country"] == "GB"
    assert tenant["affinity_hours"] == 72
    assert tenant["id"].startswith("ten_")
    assert (await api.get(f"/tenants/{tenant['id']}")).body == tenant
    patched = await api.patch(f"/tenants/{tenant['id']}", {"affinity_hours": 24})
    assert patched.status == 200
    assert patched.body["affinity_hours"] == 24
    assert patched.body["name"] == "Acme"
    assert (await api.delete(f"/tenants/{tenant['id']}")).status == 204
    assert (await api.get(f"/tenants/{tenant['id']}")).status == 404
    assert (await api.delete(f"/tenants/{tenant['id']}")).status == 404


async def test_deleting_a_tenant_removes_everything_it_owns(api: Api) -> None:
    owner = await provision(api, "A")
    assert (await api.delete(f"/tenants/{owner.id}")).status == 204
    # Its numbers are free again for another tenant.
    other = await provision(api, "B")
    body = factories.sms_config(other.trunk_id, numbers=[{"number": owner.number}])
    await api.delete(f"/tenants/{other.id}/sms-configs/{other.config['id']}")
    assert (await api.post(f"/tenants/{other.id}/sms-configs", body)).status == 201
    # And its token is gone with it.
    assert (await api.get(f"/tenants/{owner.id}", token=owner.token)).status == 401


async def test_tenant_list_pages_with_a_cursor(api: Api) -> None:
    ids = [(await api.post("/tenants", {"name": f"T{i}"})).body["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await api.get("/tenants" + query)
        assert page.status == 200
        assert len(page.body["items"]) <= 2
        seen += [t["id"] for t in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)


async def test_bad_paging_parameters(api: Api) -> None:
    for query in ("?limit=0", "?limit=501", "?limit=x"):
        reply = await api.get("/tenants" + query)
        assert reply.status == 422
        assert reply.body["error"]["details"][0]["field"] == "limit"


async def test_malformed_json_is_400_and_changes_nothing(api: Api) -> None:
    before = await api.get("/tenants")
    reply = await api.call("POST", "/api/v1/tenants", raw=b'{"name": ')
    assert reply.status == 400
    assert reply.body["error"]["code"] == "malformed_request"
    assert (await api.get("/tenants")).body == before.body


async def test_validation_errors_name_the_field(api: Api) -> None:
    reply = await api.post("/tenants", {"name": "", "default_country": "XX", "affinity_hours": -1})
    assert reply.status == 422
    fields = {d["field"] for d in reply.body["error"]["details"]}
    assert fields == {"name", "default_country", "affinity_hours"}
    assert reply.body["error"]["code"] == "validation_error"


async def test_a_body_that_is_not_an_object(api: Api) -> None:
    reply = await api.post("/tenants", ["not", "an", "object"])
    assert reply.status == 422
    assert reply.body["error"]["details"][0]["field"] == "body"


async def test_trunk_lifecycle(api: Api) -> None:
    tid = (await api.post("/tenants", {"name": "A"})).body["id"]
    trunk = await api.post(f"/tenants/{tid}/trunks", {"name": "Main"})
    assert trunk.status == 201
    trunk_id = trunk.body["id"]
    renamed = await api.patch(f"/tenants/{tid}/trunks/{trunk_id}", {"name": "Primary"})
    assert renamed.body["name"] == "Primary"
    listed = await api.get(f"/tenants/{tid}/trunks")
    assert [t["name"] for t in listed.body["items"]] == ["Primary"]
    assert (await api.delete(f"/tenants/{tid}/trunks/{trunk_id}")).status == 204
    assert (await api.get(f"/tenants/{tid}/trunks/{trunk_id}")).status == 404


async def test_a_trunk_in_use_cannot_be_deleted(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.delete(f"/tenants/{owner.id}/trunks/{owner.trunk_id}")
    assert reply.status == 409
    assert reply.body["error"]["code"] == "in_use"
    await api.delete(f"/tenants/{owner.id}/sms-configs/{owner.config['id']}")
    reply = await api.delete(f"/tenants/{owner.id}/trunks/{owner.trunk_id}")
    assert reply.status == 409, "the outbound rule still names it"
    await api.put(f"/tenants/{owner.id}/outbound-rules", [])
    assert (await api.delete(f"/tenants/{owner.id}/trunks/{owner.trunk_id}")).status == 204


async def test_unknown_tenant_is_404_for_admin(api: Api) -> None:
    for path in ("/tenants/ten_nope", "/tenants/ten_nope/trunks", "/tenants/ten_nope/extensions"):
        reply = await api.get(path)
        assert reply.status == 404, path
        assert reply.body["error"]["code"] == "not_found"


async def test_delivery_target_secret_is_write_only(api: Api) -> None:
    tid = (await api.post("/tenants", {"name": "A"})).body["id"]
    assert (await api.get(f"/tenants/{tid}/delivery")).status == 404
    secret = factories.hex32()
    put = await api.put(
        f"/tenants/{tid}/delivery", {"url": "https://pbx.example.test/sms", "secret": secret}
    )
    assert put.status == 200
    got = await api.get(f"/tenants/{tid}/delivery")
    assert got.body["url"] == "https://pbx.example.test/sms"
    assert got.body["secret_set"] is True
    assert "secret" not in got.body
    bad = await api.put(f"/tenants/{tid}/delivery", {"url": "https://x.example", "secret": "x"})
    assert bad.status == 422
    assert (await api.get(f"/tenants/{tid}/delivery")).body == got.body


async def test_unknown_route_and_method(api: Api) -> None:
    assert (await api.get("/nothing-here")).status == 404
    reply = await api.call("PUT", "/api/v1/tenants", {})
    assert reply.status == 405
    assert reply.body["error"]["code"] == "method_not_allowed"


async def test_nul_characters_are_refused_not_stored(api: Api) -> None:
    reply = await api.post("/tenants", {"name": "bad\u0000name"})
    assert reply.status == 400
    for path in ("/tenants/ten%00x", "/tenants?cursor=%00", "/tenants/x/messages?status=%00"):
        assert (await api.get(path)).status == 400, path
    assert (await api.get("/tenants")).body["items"] == []


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    reply = await api.call("POST", "/api/v1/tenants", raw=b'{"name": "' + b"x" * 1_000_000 + b'"}')
    assert reply.status == 413
    assert reply.body["error"]["code"] == "body_too_large"
