from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator

import pytest
import structlog

from bridge.log import configure_logging
from tests.daemon import Daemon


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One test process runs the fault suite, one test after another (`make test` runs two):
    each test loads the machine on purpose, and two at once would measure each other."""
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("faults"))


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test started; each is stopped (or killed) afterwards, whatever happened."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        with contextlib.suppress(subprocess.TimeoutExpired):  # stop() killed it then
            daemon.stop()


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """An in-process bridge under fault load logs a line per request; only errors matter here
    (they are what a failure needs explained). Whatever logging was set up before comes back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    configure_logging("error", "json")
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
