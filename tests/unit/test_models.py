from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from bridge.models import (
    ApiKeyCredential,
    DeliveryTargetPut,
    Extension,
    InboundRule,
    OutboundRule,
    SmsConfigCreate,
    SmsNumber,
    TenantCreate,
    check_sender_id,
    country_of,
    parse_did_pattern,
    to_e164,
)
from tests import factories


def errors(model: Any, data: Any, context: dict[str, Any] | None = None) -> list[str]:
    try:
        TypeAdapter(model).validate_python(data, context=context)
    except ValidationError as exc:
        return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
    return []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("AC" + "0123456789abcdef" * 2, True),
        ("AC" + "0123456789ABCDEF" * 2, True),
        ("AC" + "0" * 31, False),
        ("AC" + "0" * 33, False),
        ("SK" + "0" * 32, False),
        ("ac" + "0" * 32, False),
        ("AC" + "g" * 32, False),
        ("", False),
    ],
)
def test_account_sid_is_ac_and_32_hex(value: str, ok: bool) -> None:
    body = factories.sms_config("trk_1", account_sid=value)
    assert (errors(SmsConfigCreate, body) == []) is ok


@pytest.mark.parametrize(
    ("token", "ok"),
    [("a" * 32, True), ("A1" * 16, True), ("a" * 31, False), ("z" * 32, False), ("", False)],
)
def test_auth_token_is_32_hex(token: str, ok: bool) -> None:
    body = factories.sms_config("trk_1", credential={"type": "auth_token", "auth_token": token})
    assert (errors(SmsConfigCreate, body) == []) is ok


def test_api_key_credential_needs_sk_sid_secret_and_auth_token() -> None:
    good = factories.api_key_credential()
    assert ApiKeyCredential.model_validate(good).api_key_sid == good["api_key_sid"]
    for field, bad in (
        ("api_key_sid", "AC" + "0" * 32),
        ("api_key_secret", "short"),
        ("api_key_secret", "has whitespace inside it!!"),
        ("auth_token", "nothex"),
    ):
        body = factories.sms_config("trk_1", credential={**good, field: bad})
        assert errors(SmsConfigCreate, body) == [f"credential.api_key.{field}"]
    missing = {k: v for k, v in good.items() if k != "auth_token"}
    assert errors(SmsConfigCreate, factories.sms_config("t", credential=missing)) == [
        "credential.api_key.auth_token"
    ]


def test_unknown_credential_type_is_refused() -> None:
    body = factories.sms_config("trk_1", credential={"type": "password", "password": "x"})
    assert errors(SmsConfigCreate, body) == ["credential"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("ACME Corp", True),
        ("A", True),
        ("12345678901A", False),  # 12 characters
        ("ACME-Corp", False),
        ("ACME_Corp", False),
        ("12345", False),
        ("123 45", False),
        ("   ", False),
        ("", False),
        ("Café", False),
        ("Bank 24", True),
    ],
)
def test_sender_id_rules(value: str, ok: bool) -> None:
    if ok:
        assert check_sender_id(value) == value
    else:
        with pytest.raises(ValueError):
            check_sender_id(value)


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+15551230001", None, "+15551230001"),
        ("+1 (555) 123-0001", None, "+15551230001"),
        ("(555) 123-0001", "US", "+15551230001"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 20 7946 0018", "US", "+442079460018"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, country: str | None, expected: str) -> None:
    assert to_e164(raw, country) == expected


@pytest.mark.parametrize("raw", ["hello", "+1", "+1555", "12", "+999123456789", ""])
def test_impossible_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        to_e164(raw, "US")


def test_number_without_plus_uses_the_tenant_country_from_context() -> None:
    parsed = SmsNumber.model_validate({"number": "07700 900123"}, context={"default_country": "GB"})
    assert parsed.number == "+447700900123"


def test_short_codes_keep_their_digits() -> None:
    assert SmsNumber.model_validate({"number": "12345", "type": "short_code"}).number == "12345"
    assert errors(SmsNumber, {"number": "12345", "type": "long_code"}) != []


def test_number_country() -> None:
    assert country_of("+442079460018") == "GB"
    assert country_of("+15551230001") == "US"
    assert country_of("+16135550123") == "CA"
    assert country_of("not a number") is None


@pytest.mark.parametrize(
    ("value", "ok"), [("US", True), ("gb", True), ("XX", False), ("USA", False), ("", False)]
)
def test_country_codes(value: str, ok: bool) -> None:
    assert (errors(TenantCreate, {"name": "t", "default_country": value}) == []) is ok


def test_country_codes_are_uppercased() -> None:
    assert (
        TenantCreate.model_validate({"name": "t", "default_country": "gb"}).default_country == "GB"
    )


def test_config_numbers_must_not_repeat() -> None:
    n = factories.number()
    body = factories.sms_config("trk", numbers=[{"number": n}, {"number": n}])
    assert errors(SmsConfigCreate, body) == ["numbers"]


def test_unknown_fields_are_refused() -> None:
    assert errors(TenantCreate, {"name": "t", "nmae": "typo"}) == ["nmae"]


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("+15551230001", "exact"),
        ("+1555123*", "prefix"),
        ("+15551230000-+15551239999", "range"),
        ("*", "any"),
    ],
)
def test_did_patterns_parse(pattern: str, kind: str) -> None:
    parsed = parse_did_pattern(pattern)
    assert parsed.kind == kind
    assert parsed.text == pattern


@pytest.mark.parametrize(
    "pattern",
    [
        "15551230001",
        "+1555*123",
        "+15551239999-+15551230000",  # starts after it ends
        "+1555123000-+15551239999",  # unequal lengths
        "+1-+2-+3",
        "**",
        "+*",
        "",
        "+0123",
    ],
)
def test_bad_did_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        parse_did_pattern(pattern)


@given(st.integers(10**9, 10**10 - 1), st.integers(10**9, 10**10 - 1))
def test_ranges_accept_ordered_equal_length_ends(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert parse_did_pattern(f"+1{low}-+1{high}").kind == "range"
    if low != high:
        with pytest.raises(ValueError):
            parse_did_pattern(f"+1{high}-+1{low}")


def test_inbound_rule_reads_from_and_writes_it_back() -> None:
    rule = InboundRule.model_validate(
        {"name": "r", "did": "*", "from": "+1555*", "extensions": ["101"]}
    )
    assert rule.from_ == "+1555*"
    assert rule.model_dump(by_alias=True)["from"] == "+1555*"
    assert errors(InboundRule, {"name": "r", "did": "*", "extensions": []}) == ["extensions"]
    assert errors(InboundRule, {"name": "r", "did": "555", "extensions": ["1"]}) == ["did"]


def test_outbound_rule_fields() -> None:
    base = {"name": "r", "trunks": ["trk_1"]}
    assert errors(OutboundRule, base) == []
    assert errors(OutboundRule, {**base, "min_length": 4, "max_length": 4}) == []
    assert errors(OutboundRule, {**base, "min_length": 5, "max_length": 4}) == [""]
    assert errors(OutboundRule, {**base, "prefix": "9a"}) == ["prefix"]
    assert errors(OutboundRule, {**base, "prepend": "+x"}) == ["prepend"]
    assert errors(OutboundRule, {**base, "strip": -1}) == ["strip"]
    assert errors(OutboundRule, {**base, "trunks": []}) == ["trunks"]
    assert errors(OutboundRule, {**base, "sender": "+15551230001"}) == []
    assert errors(OutboundRule, {**base, "sender": "ACME"}) == []
    assert errors(OutboundRule, {**base, "sender": "12345"}) == ["sender"]
    assert errors(OutboundRule, {**base, "from_extensions": ["1*", "101", "*"]}) == []
    assert errors(OutboundRule, {**base, "from_extensions": ["1*1"]}) == ["from_extensions.0"]


def test_extension_default_did_must_be_one_of_its_dids() -> None:
    n1, n2 = factories.number(), factories.number()
    ok = {"extension": "101", "dids": [n1, n2], "default_did": n2}
    assert Extension.model_validate(ok).default_did == n2
    assert errors(Extension, {**ok, "default_did": factories.number()}) == [""]
    assert errors(Extension, {"extension": "10 1"}) == ["extension"]
    assert errors(Extension, {"extension": "101", "dids": [n1, n1]}) == [""]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://pbx.example.com/hooks/sms", True),
        ("http://10.0.0.5:8000/sms", True),
        ("ftp://pbx.example.com/", False),
        ("pbx.example.com", False),
        ("https://", False),
    ],
)
def test_delivery_target_url(url: str, ok: bool) -> None:
    body = {"url": url, "secret": "s" * 16}
    assert (errors(DeliveryTargetPut, body) == []) is ok
    assert errors(DeliveryTargetPut, {"url": "https://x.example", "secret": "short"}) == ["secret"]
