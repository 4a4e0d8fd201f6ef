from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bridge.fake_twilio import FakeConfig, FakeTwilio, running_fake_twilio
from bridge.fake_twilio.state import Account
from tests.fake_twilio.helpers import (
    NUMBERS_SPEC_PATH,
    SERVICES_SPEC_PATH,
    Sink,
    TwilioApi,
    load_spec,
)


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="session")
def numbers_spec() -> dict[str, Any]:
    return load_spec(NUMBERS_SPEC_PATH)


@pytest.fixture(scope="session")
def services_spec() -> dict[str, Any]:
    return load_spec(SERVICES_SPEC_PATH)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilio]:
    config = FakeConfig(callback_delay=0.005, slow_delay=0.3, webhook_timeout=5.0)
    async with running_fake_twilio(config) as server:
        yield server


@pytest.fixture
def account(fake: FakeTwilio) -> Account:
    return fake.add_account()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(http: aiohttp.ClientSession, fake: FakeTwilio, account: Account) -> TwilioApi:
    return TwilioApi(http, fake, account)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()
