from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.config import Settings
from bridge.crypto import SecretBox
from bridge.runtime.bootstrap import RuntimeSecrets
from tests.pg import TestPostgres, with_database

ADMIN_TOKEN = "admin-token-for-the-tests-0123456789"
PUBLIC_BASE_URL = "https://pbx.example.test/sms"


@pytest.fixture(scope="session")
def postgres() -> Iterator[TestPostgres]:
    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemps, and with
    # them a running embedded server's data directory.
    scratch = Path(tempfile.mkdtemp(prefix="bridge-test-pg-"))
    server = TestPostgres(scratch)
    try:
        asyncio.run(server.create_template())
        yield server
        asyncio.run(server.drop_template())
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
async def db_dsn(postgres: TestPostgres) -> AsyncIterator[str]:
    name = await postgres.clone()
    yield with_database(postgres.admin_dsn, name)
    await postgres.drop(name)


@pytest.fixture
async def empty_db_dsn(postgres: TestPostgres) -> AsyncIterator[str]:
    name = await postgres.create_empty()
    yield with_database(postgres.admin_dsn, name)
    await postgres.drop(name)


@pytest.fixture
def settings(db_dsn: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_dsn,
        data_dir=tmp_path / "data",
        public_base_url=PUBLIC_BASE_URL,
        public_listen="127.0.0.1:0",
        internal_listen="127.0.0.1:0",
        admin_token=ADMIN_TOKEN,
        log_level="debug",
        log_format="json",
        db_pool_min=1,
        db_pool_max=4,
        run_workers=False,
        media_max_bytes=512 * 1024,
        worker_poll_seconds=0.2,
    )


@pytest.fixture
def runtime_secrets() -> RuntimeSecrets:
    return RuntimeSecrets(admin_token=ADMIN_TOKEN, box=SecretBox(os.urandom(32)))
