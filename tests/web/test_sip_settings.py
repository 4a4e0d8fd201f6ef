"""A tenant's SIP settings (design §10): write-only passwords, validation, tenant scope."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Api, provision

SIP = {
    "enabled": True,
    "domain": "Acme.PBX.example.com",
    "proxy": "sip:10.0.0.5:5060;transport=udp",
    "allowed_sources": ["10.0.0.5", "10.1.0.0/16"],
    "auth_username": "bridge",
    "auth_password": "outbound-digest-password-1",
    "inbound_password": "inbound-digest-password-1",
}


async def put_sip(api: Api, tenant: str, body: dict[str, Any], **kw: Any) -> Any:
    return await api.put(f"/tenants/{tenant}/sip", body, **kw)


async def test_settings_round_trip_without_their_passwords(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await put_sip(api, owner.id, SIP)
    assert reply.status == 200, reply.body
    shown = reply.body
    assert shown["domain"] == "acme.pbx.example.com"
    assert shown["allowed_sources"] == ["10.0.0.5/32", "10.1.0.0/16"]
    assert shown["auth_password_set"] is True and shown["inbound_password_set"] is True
    assert "auth_password" not in shown and "inbound_password" not in shown
    assert shown["max_age_hours"] == 72 and shown["notify_failures"] is True
    assert shown["inbound_digest"] == ["SHA-256", "MD5"]
    md5_first = await put_sip(api, owner.id, {**SIP, "inbound_digest": ["MD5", "SHA-256"]})
    assert md5_first.body["inbound_digest"] == ["MD5", "SHA-256"]
    shown = md5_first.body
    assert (await api.get(f"/tenants/{owner.id}/sip")).body == shown


async def test_a_password_left_out_is_kept_and_null_removes_it(api: Api) -> None:
    owner = await provision(api, "A")
    await put_sip(api, owner.id, SIP)
    kept = {k: v for k, v in SIP.items() if k not in ("auth_password", "inbound_password")}
    reply = await put_sip(api, owner.id, {**kept, "proxy": "sip:pbx.example.com;transport=tcp"})
    assert reply.status == 200
    assert reply.body["proxy"] == "sip:pbx.example.com;transport=tcp"
    assert reply.body["auth_password_set"] and reply.body["inbound_password_set"]
    cleared = await put_sip(api, owner.id, {**kept, "inbound_password": None})
    assert cleared.body["auth_password_set"] and not cleared.body["inbound_password_set"]


async def test_bad_settings_name_the_field_and_change_nothing(api: Api) -> None:
    owner = await provision(api, "A")
    await put_sip(api, owner.id, SIP)
    before = (await api.get(f"/tenants/{owner.id}/sip")).body
    for field, value in (
        ("domain", "not a host!"),
        ("proxy", "http://10.0.0.5"),
        ("proxy", "sip:10.0.0.5:99999"),
        ("allowed_sources", ["10.0.0.300"]),
        ("allowed_sources", []),
        ("max_age_hours", 0),
        ("inbound_digest", ["MD5", "MD5"]),
        ("inbound_digest", ["SHA-512"]),
        ("inbound_digest", []),
        ("auth_password", "two\r\nlines"),
    ):
        reply = await put_sip(api, owner.id, {**SIP, field: value})
        assert reply.status == 422, (field, value, reply.body)
        assert reply.body["error"]["details"][0]["field"].startswith(field)
    assert (await api.get(f"/tenants/{owner.id}/sip")).body == before


async def test_a_domain_belongs_to_one_tenant(api: Api) -> None:
    owner = await provision(api, "A")
    other = await provision(api, "B")
    assert (await put_sip(api, owner.id, SIP)).status == 200
    taken = await put_sip(api, other.id, {**SIP, "domain": "acme.pbx.EXAMPLE.com"})
    assert taken.status == 409
    assert owner.id not in taken.text


async def test_tenants_see_only_their_own_settings(api: Api) -> None:
    owner = await provision(api, "A")
    other = await provision(api, "B")
    await put_sip(api, owner.id, SIP)
    assert (await api.get(f"/tenants/{owner.id}/sip", token=other.token)).status == 404
    assert (await put_sip(api, owner.id, SIP, token=other.token)).status == 404
    assert (await api.get(f"/tenants/{owner.id}/sip", token=owner.token)).status == 200


async def test_deleting_turns_sip_off(api: Api) -> None:
    owner = await provision(api, "A")
    assert (await api.get(f"/tenants/{owner.id}/sip")).status == 404
    await put_sip(api, owner.id, SIP)
    assert (await api.delete(f"/tenants/{owner.id}/sip")).status == 204
    assert (await api.get(f"/tenants/{owner.id}/sip")).status == 404
    assert (await api.delete(f"/tenants/{owner.id}/sip")).status == 404


async def test_extensions_carry_their_sip_address_and_may_opt_out(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/extensions"
    body = [
        {"extension": "101", "sip_uri": "sip:front-desk@10.0.0.7:5062;transport=tcp"},
        {"extension": "102", "sip": False},
    ]
    reply = await api.put(path, body)
    assert reply.status == 200, reply.body
    got = {e["extension"]: e for e in reply.body["items"]}
    assert got["101"]["sip_uri"] == "sip:front-desk@10.0.0.7:5062;transport=tcp"
    assert got["101"]["sip"] is True
    assert got["102"]["sip"] is False and got["102"]["sip_uri"] is None
    bad = await api.put(path, [{"extension": "101", "sip_uri": "front desk"}])
    assert bad.status == 422
    assert bad.body["error"]["details"][0]["field"] == "[0].sip_uri"


async def test_sip_retry_makes_nothing_due_when_nothing_waits(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.post(f"/tenants/{owner.id}/extensions/101/sip-retry")
    assert reply.status == 200
    assert reply.body == {"extension": "101", "due_now": 0}
