"""Settings: one model, loaded once in the CLI from a TOML file and BRIDGE_* variables."""

from __future__ import annotations

import base64
import binascii
import os
import pwd
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, unquote_plus, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.dsn import parse_dsn
from bridge.errors import ConfigError

ENV_PREFIX = "BRIDGE_"
PLACEHOLDER_MARK = "REPLACE-ME"


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8081")
    return host.strip("[]"), int(port)


def _reject_placeholder(value: SecretStr | None) -> SecretStr | None:
    if value is not None and PLACEHOLDER_MARK in value.get_secret_value():
        raise ValueError("still holds the placeholder from the example file; set a real value")
    return value


class Settings(BaseSettings):
    """Everything the daemon can be told; see config/bridge.example.toml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    database_url: SecretStr = SecretStr("")
    data_dir: Path = Path("data")
    public_base_url: str = "http://127.0.0.1:8080"
    public_listen: str = "0.0.0.0:8080"
    internal_listen: str = "127.0.0.1:8081"
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    previous_secret_keys: list[SecretStr] = Field(default_factory=list)
    twilio_api_base: str = "https://api.twilio.com"
    twilio_messaging_api_base: str = "https://messaging.twilio.com"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] | None = None
    webhook_grace_hours: float = Field(default=24.0, ge=0, le=24 * 30)
    shutdown_timeout: float = Field(default=10.0, gt=0, le=300)
    db_pool_min: int = Field(default=2, ge=1, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=500)
    db_slow_query_ms: float = Field(default=250.0, gt=0)
    migrate_on_start: bool = True
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    media_max_items: int = Field(default=10, ge=0, le=100)
    media_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    media_fetch_attempts: int = Field(default=6, ge=1, le=50)
    delivery_max_age_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    delivery_timeout: float = Field(default=10.0, gt=0, le=120)
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    run_workers: bool = True
    send_concurrency: int = Field(default=128, ge=1, le=10_000)
    account_concurrency: int = Field(default=100, ge=1, le=10_000)
    twilio_timeout: float = Field(default=15.0, gt=0, le=120)
    twilio_connect_timeout: float = Field(default=5.0, gt=0, le=60)
    # Lost status callbacks: ask Twilio about texts whose status stood still this long.
    status_poll_after_seconds: float = Field(default=600.0, gt=0, le=24 * 3600)
    status_poll_max_interval_seconds: float = Field(default=6 * 3600.0, gt=0, le=7 * 24 * 3600)
    status_poll_max_age_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    outbound_media_ttl_hours: float = Field(default=48.0, gt=0, le=24 * 30)
    media_url_allow_private: bool = False
    # Texts on the phones (design §10): UDP and TCP on one host:port; empty is SIP off.
    sip_listen: str = ""
    sip_advertise: str = ""
    sip_media_url_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    sip_retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    sip_retry_cap_seconds: float = Field(default=900.0, gt=0, le=24 * 3600)
    # `serve --processes N` (design §13): worker processes sharing the listeners on this host.
    processes: int = Field(default=1, ge=1, le=64)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://pbx.example.com/sms")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry a query, a fragment or credentials")
        return value.rstrip("/")

    @field_validator("twilio_api_base", "twilio_messaging_api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("public_listen", "internal_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _parse_listen(value)
        return value

    @field_validator("sip_listen", "sip_advertise")
    @classmethod
    def _sip_address(cls, value: str) -> str:
        if value:
            _parse_listen(value)
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return _reject_placeholder(value)

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_secret_key(value.get_secret_value())
        return _reject_placeholder(value)

    @field_validator("previous_secret_keys")
    @classmethod
    def _previous_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            decode_secret_key(key.get_secret_value())
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr) -> SecretStr:
        dsn = value.get_secret_value()
        if dsn:
            parse_dsn(dsn)
        return value

    def secret_values(self) -> list[str]:
        """Every secret these settings hold, as text: none of them may reach a log line."""
        values = [s.get_secret_value() for s in (self.admin_token, self.secret_key) if s]
        values += [key.get_secret_value() for key in self.previous_secret_keys]
        dsn = urlsplit(self.database_url.get_secret_value())
        if dsn.password:
            values += [unquote(dsn.password), dsn.password]
        for key, _, raw in (piece.partition("=") for piece in dsn.query.split("&")):
            if key == "password" and raw:
                values += [unquote_plus(raw), raw]  # as written, and as the driver reads it
        return values

    @property
    def public_address(self) -> tuple[str, int]:
        return _parse_listen(self.public_listen)

    @property
    def internal_address(self) -> tuple[str, int]:
        return _parse_listen(self.internal_listen)

    @property
    def sip_address(self) -> tuple[str, int] | None:
        """Where SIP listens, or None when it is off."""
        return _parse_listen(self.sip_listen) if self.sip_listen else None

    @property
    def sip_advertised(self) -> tuple[str, int] | None:
        """What Via and Contact name: the advertised address, else the listening one."""
        if self.sip_advertise:
            return _parse_listen(self.sip_advertise)
        return self.sip_address

    @property
    def public_path_prefix(self) -> str:
        """The path under which the public listener serves, as a reverse proxy passes it."""
        return urlsplit(self.public_base_url).path.rstrip("/")


def decode_secret_key(value: str) -> bytes:
    """A secret key is 32 random bytes written as URL-safe base64."""
    problem = "must be 32 bytes in URL-safe base64 (sms-bridge gen-key prints one)"
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii") + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(problem) from exc
    if len(raw) != 32:
        raise ValueError(problem)
    return raw


def _describe(error: ErrorDetails) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "?"
    name = key.split(".")[0]
    message = error["msg"].removeprefix("Value error, ")
    return f"{key} ({ENV_PREFIX}{name.upper()}): {message}"


def _unreadable(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    if isinstance(exc, PermissionError):
        # The usual cause: installed for root while the service runs as its own user.
        return (
            f"cannot be read by user {_user_name()} (permission denied): the file, and every "
            "directory above it, must be readable by that user"
        )
    return f"cannot be read: {exc.strerror or exc}"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def load_settings() -> Settings:
    """Load settings, turning every validation problem into one ConfigError line naming the key."""
    config_file = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        try:
            with Path(config_file).open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"invalid configuration: config ({ENV_PREFIX}CONFIG): {config_file} "
                + _unreadable(exc)
            ) from None
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {config_file}: {exc}") from None
    return _checked(settings)


def override(settings: Settings, **values: object) -> Settings:
    """The settings with some values replaced (command-line options), validated as if loaded."""
    try:
        changed = Settings.model_validate({**dict(settings), **values})
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
    return _checked(changed)


def _checked(settings: Settings) -> Settings:
    """What no single key's validator can see."""
    if settings.db_pool_min > settings.db_pool_max:
        raise ConfigError(
            "invalid configuration: db_pool_min (BRIDGE_DB_POOL_MIN): must not exceed db_pool_max"
        )
    if settings.processes > 1:
        if sys.platform != "linux":
            raise ConfigError(
                "invalid configuration: processes (BRIDGE_PROCESSES): more than 1 needs Linux, "
                "whose SO_REUSEPORT spreads connections over the processes"
            )
        for key, (_, port) in (
            ("public_listen", settings.public_address),
            ("internal_listen", settings.internal_address),
        ):
            if port == 0:
                raise ConfigError(
                    f"invalid configuration: {key} ({ENV_PREFIX}{key.upper()}): port 0 picks "
                    "another port in each process; with processes above 1 name a port"
                )
    return settings
