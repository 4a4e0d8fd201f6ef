from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon import Daemon


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()
