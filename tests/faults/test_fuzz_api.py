"""The internal API, fuzzed from its own OpenAPI document over real HTTP: no answer is a 5xx."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from bridge.config import Settings
from bridge.fake_twilio import running_fake_twilio
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.faults.harness import (
    ADMIN,
    Tenant,
    inbound_params,
    post_signed,
    provision,
    report,
    running_bridge,
)
from tests.sink import running_sink

# Per operation; with ~35 operations this keeps the run well under a minute on two cores.
EXAMPLES = 80
AUTH = {"Authorization": f"Bearer {ADMIN}"}
# The smallest PNG there is (1x1, transparent).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
# A server-sent event stream never ends: it is no request/response to fuzz.
SKIPPED = {("GET", "/api/v1/tenants/{tenant_id}/events")}


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    calls: int = 0


def real_ids(tenant: Tenant, ids: dict[str, str]) -> dict[str, str]:
    """Path parameters that name things that exist, so requests get past the 404s."""
    return {"tenant_id": tenant.id, "config_id": tenant.config_id, "index": "0", **ids}


Operation = APIOperation[Any, Any, Any, Any]


def strategy(operation: Operation, ids: dict[str, str]) -> st.SearchStrategy[Case[Any]]:
    """Valid and invalid requests as the administrator on real resources, the administrator
    on made-up ids, and anything at all (random or missing tokens) as anyone."""
    known = {name: value for name, value in ids.items() if f"{{{name}}}" in operation.path}
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known, headers=AUTH),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=known, headers=AUTH),
        operation.as_strategy(GenerationMode.POSITIVE, headers=AUTH),
        operation.as_strategy(GenerationMode.POSITIVE),
    )


def fuzz(operations: list[Operation], ids: dict[str, str], base_url: str) -> Tally:
    """Blocking (schemathesis sends with requests): run in a thread while the loop serves."""
    outcome = Tally()
    with requests.Session() as http:
        for operation in operations:

            @given(case=strategy(operation, ids))
            @settings(
                max_examples=EXAMPLES,
                derandomize=True,  # the same requests every run
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Case[Any]) -> None:
                response = case.call(base_url=base_url, session=http, timeout=30)
                outcome.calls += 1
                outcome.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    outcome.server_errors.append(
                        f"{response.status_code} {case.as_curl_command(base_url=base_url)}"
                    )

            run()
    return outcome


async def test_the_internal_api_answers_no_5xx_to_anything_its_schema_allows(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    account_sid, auth_token = factories.account_sid(), factories.hex32()
    async with (
        running_fake_twilio(accounts=[(account_sid, auth_token)]) as fake,
        running_sink(factories.hex32()) as sink,
        running_bridge(settings, runtime_secrets, twilio_api_base=fake.base_url) as bridge,
        aiohttp.ClientSession(headers=AUTH) as session,
    ):
        tenant = await provision(
            bridge.api, sink, account_sid=account_sid, auth_token=auth_token, senders=2
        )
        ids = real_ids(tenant, await existing_ids(session, bridge.api, tenant, bridge.public_base))
        async with session.get(bridge.api + "/openapi.json") as r:
            document = await r.json()
        schema = schemathesis.openapi.from_dict(document)
        loaded = list(schema.get_all_operations())
        operations = [
            r.ok()
            for r in loaded
            if isinstance(r, Ok) and (r.ok().method.upper(), r.ok().path) not in SKIPPED
        ]
        assert all(isinstance(r, Ok) for r in loaded), "schemathesis reads every operation"
        # Deleting comes last, the tenant itself very last: everything before runs on
        # resources that still exist.
        operations.sort(
            key=lambda o: (o.method.upper() == "DELETE", o.path == "/api/v1/tenants/{tenant_id}")
        )
        outcome = await asyncio.to_thread(fuzz, operations, ids, bridge.internal)

    report(
        "internal API fuzz",
        requests={"operations": len(operations), "sent": outcome.calls},
        answered={
            "2xx": sum(n for s, n in outcome.statuses.items() if s < 300),
            "4xx": sum(n for s, n in outcome.statuses.items() if 400 <= s < 500),
            "5xx": len(outcome.server_errors),
        },
    )
    assert outcome.server_errors == []
    # The fuzz reached past the door: real resources were read and changed, not only refused.
    assert sum(n for s, n in outcome.statuses.items() if s < 300) > len(operations)
    assert {401, 404, 422} <= set(outcome.statuses)


async def existing_ids(
    session: aiohttp.ClientSession, api: str, tenant: Tenant, public_base: str
) -> dict[str, str]:
    """One of each thing a path can name: a token, a trunk, a text with a picture (and an
    inbound one, for the lists)."""
    base = f"{api}/tenants/{tenant.id}"
    async with session.post(base + "/tokens", json={"label": "fuzz"}) as r:
        token_id = (await r.json())["id"]
    async with session.get(base + "/trunks") as r:
        trunk_id = (await r.json())["items"][0]["id"]
    picture = {"content_type": "image/png", "data_base64": base64.b64encode(PNG).decode()}
    send = {"from_extension": "200", "to": "+15557654321", "body": "hi", "media": [picture]}
    async with session.post(base + "/messages", json=send) as r:
        assert r.status == 202, await r.text()
        message_id = (await r.json())["id"]
    hook = tenant.hook_at(public_base)
    params = inbound_params(tenant, 1, "+15557654321", "hello to the fuzz")
    assert await post_signed(session, hook, params, tenant.auth_token) == 200
    return {"token_id": token_id, "trunk_id": trunk_id, "message_id": message_id}
