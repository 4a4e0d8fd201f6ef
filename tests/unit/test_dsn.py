"""Reading PostgreSQL URLs: one URL per host, connect_timeout, and passwords kept out of logs."""

from __future__ import annotations

import pytest

from bridge.config import Settings
from bridge.dsn import DEFAULT_CONNECT_TIMEOUT, parse_dsn, safe_dsn

HA = "postgresql://bridge:p%40ss@db1:5432,db2:5433/bridge?target_session_attrs=read-write"


def test_several_hosts_become_one_url_each_in_order() -> None:
    parsed = parse_dsn(HA + "&connect_timeout=2.5&sslmode=require")
    assert parsed.hosts == ("db1:5432", "db2:5433")
    assert parsed.urls == (
        "postgresql://bridge:p%40ss@db1:5432/bridge?target_session_attrs=read-write&sslmode=require",
        "postgresql://bridge:p%40ss@db2:5433/bridge?target_session_attrs=read-write&sslmode=require",
    )
    assert parsed.connect_timeout == 2.5


def test_one_host_or_a_socket_directory_stays_as_written() -> None:
    embedded = "postgresql://postgres:@/postgres?host=/var/lib/sms-bridge/postgres"
    assert parse_dsn(embedded).urls == (embedded,)
    assert parse_dsn("postgresql://db/bridge").connect_timeout == DEFAULT_CONNECT_TIMEOUT


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://db1,db2/bridge", "names several hosts"),
        ("postgresql://db1,db2/bridge?target_session_attrs=any", "names several hosts"),
        ("postgresql:///bridge?host=db1,db2", "names several hosts"),
        ("postgresql://db1,,db2/b?target_session_attrs=primary", "empty host"),
        ("postgresql://db1:54x2/bridge", "no valid port"),
        ("postgresql://db/bridge?connect_timeout=0", "connect_timeout"),
        ("postgresql://db/bridge?connect_timeout=nan", "connect_timeout"),
        ("postgresql://db/bridge?target_session_attrs=master", "target_session_attrs"),
        ("mysql://db/bridge", "postgresql://"),
    ],
)
def test_what_cannot_work_is_refused(dsn: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_dsn(dsn)


def test_passwords_are_hidden_wherever_they_are() -> None:
    assert safe_dsn(HA) == (
        "postgresql://bridge:***@db1:5432,db2:5433/bridge?target_session_attrs=read-write"
    )
    assert safe_dsn("postgresql://db/b?user=u&password=hunter2") == (
        "postgresql://db/b?user=u&password=***"
    )
    settings = Settings(database_url="postgresql://db/b?password=hunter2%21")
    assert {"hunter2!", "hunter2%21"} <= set(settings.secret_values())
