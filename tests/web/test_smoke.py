from __future__ import annotations

from tests import factories
from tests.web.conftest import Api


async def test_walkthrough_of_the_readme(api: Api) -> None:
    tenant = await api.post("/tenants", {"name": "Acme"})
    assert tenant.status == 201, tenant.body
    tid = tenant.body["id"]
    trunk = await api.post(f"/tenants/{tid}/trunks", {"name": "Main"})
    assert trunk.status == 201
    config = await api.post(f"/tenants/{tid}/sms-configs", factories.sms_config(trunk.body["id"]))
    assert config.status == 201, config.body
    assert config.body["webhook_url"].startswith("https://pbx.example.test/sms/twilio/")
    assert config.body["webhook_url"].endswith("/inbound")
