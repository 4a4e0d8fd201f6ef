"""First-start material: the data directory, the secret key and the admin token."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bridge.config import Settings, decode_secret_key
from bridge.crypto import SecretBox, generate_key
from bridge.errors import ConfigError
from bridge.log import get_logger

log = get_logger(__name__)

SECRET_KEY_FILE = "secret.key"
ADMIN_TOKEN_FILE = "admin-token"


@dataclass(frozen=True)
class RuntimeSecrets:
    """The admin token and the box that seals stored Twilio and delivery secrets."""

    admin_token: str
    box: SecretBox


def ensure_data_dir(settings: Settings) -> Path:
    path = settings.data_dir
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"data_dir (BRIDGE_DATA_DIR): cannot create {path}: {exc.strerror}"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"data_dir (BRIDGE_DATA_DIR): {path} is not writable")
    return path


def _read_or_create(path: Path, make: str) -> tuple[str, bool]:
    """Read a one-line secret file, creating it (mode 0600, never overwritten) if absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigError(f"{path} is empty; delete it to have a new one generated") from None
        return value, False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(make + "\n")
    return make, True


def load_runtime_secrets(settings: Settings) -> RuntimeSecrets:
    """Use the configured secrets, or those generated into the data directory on first start."""
    data_dir = ensure_data_dir(settings)
    if settings.secret_key is not None:
        key_text = settings.secret_key.get_secret_value()
    else:
        key_path = data_dir / SECRET_KEY_FILE
        key_text, created = _read_or_create(key_path, generate_key())
        if created:
            log.warning("secrets.key_generated", path=str(key_path.resolve()))
    try:
        current = decode_secret_key(key_text)
    except ValueError as exc:
        raise ConfigError(f"secret_key (BRIDGE_SECRET_KEY): {exc}") from None
    previous = tuple(decode_secret_key(k.get_secret_value()) for k in settings.previous_secret_keys)
    if settings.admin_token is not None:
        admin_token = settings.admin_token.get_secret_value()
    else:
        token_path = data_dir / ADMIN_TOKEN_FILE
        admin_token, created = _read_or_create(token_path, "sba_" + secrets.token_urlsafe(32))
        log.info(
            "secrets.admin_token_file",
            path=str(token_path.resolve()),
            generated=created,
            hint="read it with: cat " + str(token_path.resolve()),
        )
    return RuntimeSecrets(admin_token=admin_token, box=SecretBox(current, previous))
