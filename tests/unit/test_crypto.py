from __future__ import annotations

import os

import pytest

from bridge.crypto import Sealed, SecretBox, hash_token, key_id_of, new_token
from bridge.errors import SecretKeyMissing


def test_seal_and_open() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("auth-token-value", "sms_config:cfg_1:auth_token")
    assert b"auth-token-value" not in sealed.blob
    assert sealed.key_id == box.current_key_id
    assert box.open(sealed, "sms_config:cfg_1:auth_token") == "auth-token-value"


def test_same_value_seals_differently_each_time() -> None:
    box = SecretBox(os.urandom(32))
    assert box.seal("v", "c").blob != box.seal("v", "c").blob


def test_a_value_cannot_be_moved_to_another_row() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("v", "sms_config:cfg_1:auth_token")
    with pytest.raises(SecretKeyMissing):
        box.open(sealed, "sms_config:cfg_2:auth_token")


def test_tampering_is_detected() -> None:
    box = SecretBox(os.urandom(32))
    sealed = box.seal("v", "c")
    flipped = bytes([sealed.blob[0]]) + bytes([sealed.blob[-1] ^ 1])
    with pytest.raises(SecretKeyMissing):
        box.open(Sealed(sealed.key_id, sealed.blob[:-1] + flipped[1:]), "c")


def test_rotation_opens_old_values_and_seals_with_the_new_key() -> None:
    old, new = os.urandom(32), os.urandom(32)
    sealed_before = SecretBox(old).seal("v", "c")
    rotated = SecretBox(new, previous=(old,))
    assert rotated.open(sealed_before, "c") == "v"
    assert rotated.seal("v", "c").key_id == key_id_of(new) != sealed_before.key_id
    with pytest.raises(SecretKeyMissing, match="BRIDGE_PREVIOUS_SECRET_KEYS"):
        SecretBox(new).open(sealed_before, "c")


def test_tokens() -> None:
    token = new_token("sbt")
    assert token.startswith("sbt_") and len(token) > 40
    assert hash_token(token) == hash_token(token) != hash_token(new_token("sbt"))
