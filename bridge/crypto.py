"""Encryption of stored secrets (AES-256-GCM), with a key id kept beside each value."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import SecretKeyMissing

NONCE_BYTES = 12


def key_id_of(key: bytes) -> str:
    """A short, stable, non-reversible name for a key."""
    return hashlib.sha256(b"sms-bridge key id\x00" + key).hexdigest()[:16]


def generate_key() -> str:
    """A fresh 32-byte key in URL-safe base64, as BRIDGE_SECRET_KEY expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Sealed:
    """An encrypted value and the id of the key that sealed it."""

    key_id: str
    blob: bytes


class SecretBox:
    """Seals with the current key; opens with the current or any previous key."""

    def __init__(self, current: bytes, previous: tuple[bytes, ...] = ()) -> None:
        self.current_key_id = key_id_of(current)
        self._current = current
        self._keys = {key_id_of(k): AESGCM(k) for k in (*previous, current)}

    def seal(self, plaintext: str, context: str) -> Sealed:
        """Encrypt; ``context`` (e.g. ``sms_config:<id>:auth_token``) binds the value to its row."""
        nonce = os.urandom(NONCE_BYTES)
        blob = self._keys[self.current_key_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        return Sealed(self.current_key_id, nonce + blob)

    def derive(self, purpose: str) -> bytes:
        """A key for ``purpose`` that every process with the same current key derives alike
        (digest nonces any of them can check, say), and that says nothing about this key."""
        return hmac.new(
            self._current, b"sms-bridge derive\x00" + purpose.encode(), "sha256"
        ).digest()

    def open(self, sealed: Sealed, context: str) -> str:
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise SecretKeyMissing(
                f"a stored secret was sealed with key {sealed.key_id}, which is neither "
                "BRIDGE_SECRET_KEY nor one of BRIDGE_PREVIOUS_SECRET_KEYS"
            )
        nonce, blob = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return aead.decrypt(nonce, blob, context.encode("utf-8")).decode("utf-8")
        except InvalidTag as exc:
            raise SecretKeyMissing(
                f"a stored secret under key {sealed.key_id} failed authentication"
            ) from exc


def hash_token(token: str) -> bytes:
    """Bearer tokens are high-entropy, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(prefix: str, nbytes: int = 32) -> str:
    return f"{prefix}_{secrets.token_urlsafe(nbytes)}"


# What a sealed value is bound to (the AEAD's associated data): copied into another row, or
# read as another field, it does not open.
def config_secret_context(config_id: str, what: Literal["auth_token", "api_key_secret"]) -> str:
    return f"sms_config:{config_id}:{what}"


def delivery_secret_context(tenant_id: str) -> str:
    return f"delivery_target:{tenant_id}:secret"


def sip_secret_context(tenant_id: str, what: Literal["auth_password", "inbound_password"]) -> str:
    return f"sip_settings:{tenant_id}:{what}"


@dataclass(frozen=True)
class StoredSecrets:
    """An SMS configuration's sealed Twilio secrets, all under one key id."""

    key_id: str
    auth_token: bytes
    api_key_secret: bytes | None

    def auth_token_sealed(self) -> Sealed:
        return Sealed(self.key_id, self.auth_token)

    def api_key_secret_sealed(self) -> Sealed | None:
        return None if self.api_key_secret is None else Sealed(self.key_id, self.api_key_secret)
