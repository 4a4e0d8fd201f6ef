from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.crypto import generate_key
from bridge.errors import ConfigError
from tests.daemon import run_cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def test_defaults_need_nothing_set() -> None:
    settings = load_settings()
    assert settings.database_url.get_secret_value() == ""
    assert settings.public_listen == "0.0.0.0:8080"
    assert settings.internal_listen == "127.0.0.1:8081"
    assert settings.twilio_api_base == "https://api.twilio.com"
    assert settings.webhook_grace_hours == 24


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_PUBLIC_BASE_URL", "https://pbx.example.com/sms/")
    monkeypatch.setenv("BRIDGE_INTERNAL_LISTEN", "[::1]:9000")
    monkeypatch.setenv("BRIDGE_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.public_base_url == "https://pbx.example.com/sms"
    assert settings.public_path_prefix == "/sms"
    assert settings.internal_address == ("::1", 9000)
    assert settings.log_level == "debug"


def test_toml_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('public_base_url = "https://a.example.com"\nlog_level = "warning"\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(config))
    monkeypatch.setenv("BRIDGE_LOG_LEVEL", "error")
    settings = load_settings()
    assert settings.public_base_url == "https://a.example.com"
    assert settings.log_level == "error"


def test_the_example_file_is_valid_and_names_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).parents[2] / "config" / "bridge.example.toml"
    monkeypatch.setenv("BRIDGE_CONFIG", str(example))
    settings = load_settings()
    text = example.read_text()
    for key in type(settings).model_fields:
        assert f"{key} =" in text, f"{key} is not documented in the example file"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("BRIDGE_PUBLIC_BASE_URL", "ftp://x", "public_base_url"),
        ("BRIDGE_PUBLIC_BASE_URL", "https://x.example/?a=1", "public_base_url"),
        ("BRIDGE_PUBLIC_LISTEN", "8080", "public_listen"),
        ("BRIDGE_INTERNAL_LISTEN", "host:99999", "internal_listen"),
        ("BRIDGE_ADMIN_TOKEN", "short", "admin_token"),
        ("BRIDGE_ADMIN_TOKEN", "REPLACE-ME-with-a-long-random-token", "admin_token"),
        ("BRIDGE_SECRET_KEY", "not-base64-32-bytes", "secret_key"),
        ("BRIDGE_DATABASE_URL", "mysql://db/x", "database_url"),
        ("BRIDGE_LOG_LEVEL", "loud", "log_level"),
        ("BRIDGE_LOG_FORMAT", "xml", "log_format"),
        ("BRIDGE_WEBHOOK_GRACE_HOURS", "-1", "webhook_grace_hours"),
        ("BRIDGE_DB_POOL_MAX", "zero", "db_pool_max"),
        ("BRIDGE_NO_SUCH_KEY", "1", None),
    ],
)
def test_bad_values_name_their_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str | None
) -> None:
    monkeypatch.setenv(variable, value)
    if named is None:
        load_settings()  # unknown BRIDGE_ variables in the environment are not ours to judge
        return
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"{named} (BRIDGE_{named.upper()})" in caught.value.message
    assert "\n" not in caught.value.message


def test_unknown_keys_in_the_file_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('public_base_ur = "https://typo.example.com"\n')
    monkeypatch.setenv("BRIDGE_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "public_base_ur" in caught.value.message


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="BRIDGE_CONFIG"):
        load_settings()


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def bound_by_file_modes() -> None:
    """In the child, before exec: root keeps its uid but loses the capabilities that let it
    read any file, so modes stop it as they stop the service's own user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("locked", ["file", "directory"])
def test_an_unreadable_config_file_is_one_line_naming_it(tmp_path: Path, locked: str) -> None:
    # As the README's systemd install once did: root-only, the service runs as its own user.
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "bridge.toml"
    config.write_text('log_level = "info"\n')
    (config if locked == "file" else etc).chmod(0)
    env = {"BRIDGE_CONFIG": str(config), "BRIDGE_DATA_DIR": str(tmp_path / "d")}
    try:
        checked = run_cli("check-config", env=env, preexec_fn=bound_by_file_modes)
        served = run_cli("serve", env=env, preexec_fn=bound_by_file_modes)
    finally:
        etc.chmod(0o700)
        config.chmod(0o600)
    assert checked.returncode == served.returncode == 2
    assert checked.stderr == served.stderr
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1, checked.stderr
    assert lines[0].startswith("sms-bridge: invalid configuration: config (BRIDGE_CONFIG): ")
    assert f"{config} cannot be read by user " in lines[0]
    assert "permission denied" in lines[0]
    assert not (tmp_path / "d").exists()


def test_pool_bounds_are_consistent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_DB_POOL_MIN", "20")
    monkeypatch.setenv("BRIDGE_DB_POOL_MAX", "10")
    with pytest.raises(ConfigError, match="db_pool_min"):
        load_settings()


def test_generated_keys_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("BRIDGE_SECRET_KEY", key)
    monkeypatch.setenv("BRIDGE_PREVIOUS_SECRET_KEYS", f'["{generate_key()}"]')
    settings = load_settings()
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == key
    assert len(settings.previous_secret_keys) == 1


def test_check_config_prints_one_line_and_fails(tmp_path: Path) -> None:
    result = run_cli(
        "check-config",
        env={"BRIDGE_PUBLIC_BASE_URL": "nope", "BRIDGE_DATA_DIR": str(tmp_path / "d")},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "public_base_url (BRIDGE_PUBLIC_BASE_URL)" in lines[0]
    assert not (tmp_path / "d").exists(), "check-config must change nothing"


def test_check_config_accepts_good_config(tmp_path: Path) -> None:
    result = run_cli("check-config", env={"BRIDGE_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_serve_refuses_bad_config_with_the_same_line(tmp_path: Path) -> None:
    env = {"BRIDGE_ADMIN_TOKEN": "short", "BRIDGE_DATA_DIR": str(tmp_path / "d")}
    served = run_cli("serve", env=env)
    checked = run_cli("check-config", env=env)
    assert served.returncode == checked.returncode == 2
    assert served.stderr == checked.stderr
    assert "admin_token (BRIDGE_ADMIN_TOKEN)" in served.stderr
