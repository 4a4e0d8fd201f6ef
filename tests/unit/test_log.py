from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import structlog

from bridge import cli
from bridge.log import REDACTED, Redactor, configure_logging

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"


def test_secret_fields_are_redacted_by_name() -> None:
    redactor = Redactor()
    event = redactor(
        None,
        "info",
        {
            "event": "x",
            "auth_token": "anything",
            "api_key_secret": "anything",
            "Authorization": "Bearer abc",
            "nested": {"secret": "s3", "ok": "visible"},
            "tenant_token": "sbt_whatever",
        },
    )
    assert event["auth_token"] == REDACTED
    assert event["api_key_secret"] == REDACTED
    assert event["Authorization"] == REDACTED
    assert event["tenant_token"] == REDACTED
    assert event["nested"] == {"secret": REDACTED, "ok": "visible"}


@pytest.mark.parametrize(
    "text",
    [
        f"token is {AUTH_TOKEN} here",
        "header Authorization: Bearer sbt_abcdefghijklmnopqrstuvwxyz",
        "tenant token sbt_abcdefghijklmnopqrstuvwxyz0123456789",
        "postgresql://bridge:hunter2hunter2@db.example.com/bridge",
        "Basic QUMxMjM6c2VjcmV0",
    ],
)
def test_secret_shapes_are_redacted_inside_strings(text: str) -> None:
    cleaned = Redactor().scrub(text)
    assert REDACTED in cleaned
    for secret in (
        AUTH_TOKEN,
        "sbt_abcdefghijklmnopqrstuvwxyz",
        "hunter2hunter2",
        "QUMxMjM6c2VjcmV0",
    ):
        assert secret not in cleaned


def test_message_sids_are_not_mistaken_for_tokens() -> None:
    sid = "SM" + AUTH_TOKEN
    assert Redactor().scrub(f"sent {sid}") == f"sent {sid}"


def test_known_secret_values_are_redacted_anywhere() -> None:
    redactor = Redactor(["my-admin-token-value"])
    assert "my-admin-token-value" not in redactor.scrub("got my-admin-token-value!")


def test_stdlib_and_structlog_share_one_redacting_json_pipeline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json", Redactor(["known-secret-123"]))
    logging.getLogger("aiohttp.server").warning("failed with Bearer known-secret-123")
    structlog.stdlib.get_logger("bridge.test").info("test.event", auth_token=AUTH_TOKEN)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["logger"] for line in lines] == ["aiohttp.server", "bridge.test"]
    assert "known-secret-123" not in json.dumps(lines)
    assert AUTH_TOKEN not in json.dumps(lines)
    assert lines[1]["event"] == "test.event"
    assert lines[1]["level"] == "info"


def test_the_cli_redacts_the_configured_secrets_from_every_log_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The CLI's logging knows the secrets the settings hold (shapeless ones too, which no
    pattern would catch), so no code path can log them by mistake, at debug level or above."""
    admin = "correct horse battery staple admin"
    password = "pg pass word/with:odd@chars"
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BRIDGE_ADMIN_TOKEN", admin)
    monkeypatch.setenv(
        "BRIDGE_DATABASE_URL", f"postgresql://bridge:{quote(password, safe='')}@db.invalid/x"
    )
    monkeypatch.setenv("BRIDGE_LOG_LEVEL", "debug")
    monkeypatch.setenv("BRIDGE_LOG_FORMAT", "json")
    monkeypatch.setenv("BRIDGE_DATA_DIR", str(tmp_path))
    assert cli.main(["check-config"]) == 0
    log = structlog.stdlib.get_logger("bridge.test")
    log.debug("probe", note=f"the admin token is {admin}", other=f"password {password}")
    logging.getLogger("asyncpg").error("connect failed for %s", password)
    out = capsys.readouterr().out
    assert "probe" in out and "connect failed" in out
    assert admin not in out and password not in out
    assert out.count(REDACTED) >= 3
