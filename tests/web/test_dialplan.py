from __future__ import annotations

from tests import factories
from tests.web.conftest import Api, provision


async def test_extensions_replace_all_and_keep_order(api: Api) -> None:
    owner = await provision(api, "A")
    path = f"/tenants/{owner.id}/extensions"
    body = [
        {"extension": "102", "name": "Sales", "dids": [owner.number]},
        {"extension": "101", "name": "Front", "dids": [owner.number], "default_did": owner.number},
    ]
    reply = await api.put(path, body)
    assert reply.status == 200, reply.body
    assert [e["extension"] for e in reply.body["items"]] == ["102", "101"]
    assert (await api.get(path)).body == reply.body


async def test_extension_dids_must_be_the_tenants_numbers(api: Api) -> None:
    owner = await provision(api, "A")
    other = await provision(api, "B")
    path = f"/tenants/{owner.id}/extensions"
    before = await api.get(path)
    reply = await api.put(path, [{"extension": "101", "dids": [owner.number, other.number]}])
    assert reply.status == 422
    assert [d["field"] for d in reply.body["error"]["details"]] == ["[0].dids[1]"]
    assert (await api.get(path)).body == before.body


async def test_duplicate_extensions_are_refused(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.put(
        f"/tenants/{owner.id}/extensions", [{"extension": "101"}, {"extension": "101"}]
    )
    assert reply.status == 422
    assert reply.body["error"]["details"][0]["field"] == "[1].extension"


async def test_extensions_named_by_rules_cannot_be_removed(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.put(f"/tenants/{owner.id}/extensions", [{"extension": "200"}])
    assert reply.status == 409
    assert reply.body["error"]["code"] == "in_use"


async def test_inbound_rules_round_trip(api: Api) -> None:
    owner = await provision(api, "A")
    rules = [
        {
            "name": "sales line",
            "trunk_id": owner.trunk_id,
            "did": owner.number,
            "from": "+1555*",
            "extensions": ["101"],
            "enabled": True,
        },
        {"name": "range", "did": "+15550000000-+15559999999", "extensions": ["101"]},
        {"name": "fallback", "did": "*", "extensions": ["101"], "enabled": False},
    ]
    reply = await api.put(f"/tenants/{owner.id}/inbound-rules", rules)
    assert reply.status == 200, reply.body
    items = reply.body["items"]
    assert items[0] == rules[0]
    assert items[1]["from"] is None and items[1]["trunk_id"] is None and items[1]["enabled"]
    assert items[2]["enabled"] is False
    assert (await api.get(f"/tenants/{owner.id}/inbound-rules")).body == reply.body


async def test_inbound_rules_check_references(api: Api) -> None:
    owner = await provision(api, "A")
    other = await provision(api, "B")
    path = f"/tenants/{owner.id}/inbound-rules"
    before = await api.get(path)
    reply = await api.put(
        path,
        [
            {"name": "x", "did": "*", "extensions": ["101", "999"]},
            {"name": "y", "trunk_id": other.trunk_id, "did": "*", "extensions": ["101"]},
        ],
    )
    assert reply.status == 422
    fields = [d["field"] for d in reply.body["error"]["details"]]
    assert fields == ["[0].extensions[1]", "[1].trunk_id"]
    assert (await api.get(path)).body == before.body


async def test_inbound_rule_patterns_are_validated(api: Api) -> None:
    owner = await provision(api, "A")
    reply = await api.put(
        f"/tenants/{owner.id}/inbound-rules",
        [{"name": "x", "did": "+1555999-+1555000", "extensions": ["101"]}],
    )
    assert reply.status == 422
    assert reply.body["error"]["details"][0]["field"] == "[0].did"


async def test_outbound_rules_round_trip_and_references(api: Api) -> None:
    owner = await provision(api, "A")
    other = await provision(api, "B")
    path = f"/tenants/{owner.id}/outbound-rules"
    rule = {
        "name": "UK",
        "from_extensions": ["1*"],
        "prefix": "0044",
        "min_length": 10,
        "max_length": 16,
        "strip": 4,
        "prepend": "+44",
        "trunks": [owner.trunk_id],
        "sender": "ACME",
        "enabled": True,
    }
    reply = await api.put(path, [rule])
    assert reply.status == 200, reply.body
    assert reply.body["items"] == [rule]
    bad = await api.put(
        path,
        [
            {**rule, "trunks": [other.trunk_id]},
            {**rule, "sender": other.number},
            {**rule, "sender": factories.number()},
        ],
    )
    assert bad.status == 422
    fields = [d["field"] for d in bad.body["error"]["details"]]
    assert fields == ["[0].trunks[0]", "[1].sender", "[2].sender"]
    assert (await api.get(path)).body["items"] == [rule]
