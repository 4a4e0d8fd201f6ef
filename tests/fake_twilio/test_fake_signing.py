"""The fake's own signature code against Twilio's documented vectors and the official validator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from bridge.fake_twilio.signing import (
    body_sha256,
    compute_signature,
    signing_url,
    url_with_body_hash,
)

TOKEN = "12345"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]
JSON_BODY = b'{"property": "value", "boolean": true}'


@pytest.mark.parametrize(
    ("url", "params", "expected"),
    [
        ("https://mycompany.com/myapp.php?foo=1&bar=2", PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", PARAMS, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
        ("http://mycompany.com:80/myapp.php?foo=1&bar=2", PARAMS, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            [
                ("Sid", "CA123"),
                ("SidAccount", "AC123"),
                ("Digits", "5678"),
                ("Digits", "1234"),
                ("Digits", "1234"),
            ],
            "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
        ),
        (
            "https://example.com/myapp.php?foo=1&bar=2",
            [
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+14158675310"),
                ("Digits", "1234"),
                ("From", "+14158675310"),
                ("To", "+18005551212"),
            ],
            "L/OH5YylLD5NRKLltdqwSvS0BnU=",
        ),
    ],
)
def test_documented_vectors(url: str, params: list[tuple[str, str]], expected: str) -> None:
    assert compute_signature(TOKEN, url, params) == expected


def test_json_body_vector_signs_the_url_with_its_body_hash_and_no_params() -> None:
    url = url_with_body_hash("https://mycompany.com/myapp.php?foo=1&bar=2", JSON_BODY)
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert body_sha256(JSON_BODY) == digest
    assert url == f"https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={digest}"
    assert compute_signature(TOKEN, url) == "a9nBmqA0ju/hNViExpshrM61xv4="
    assert url_with_body_hash("https://h.test/p", b"").endswith(
        "/p?bodySHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    ("configured", "signed"),
    [
        (
            "https://user:p%40ss@h.test:8443/sms?b=2&a=1#rc=2&rp=ct",
            "https://h.test:8443/sms?b=2&a=1",
        ),
        ("http://h.test/x?q=a%20b&q=c+d", "http://h.test/x?q=a%20b&q=c+d"),
        ("https://h.test:443/x", "https://h.test:443/x"),
        ("https://h.test/path@x?e=a@b", "https://h.test/path@x?e=a@b"),
    ],
)
def test_signing_url_drops_only_credentials_and_fragment(configured: str, signed: str) -> None:
    assert signing_url(configured) == signed


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
values = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(params=st.dictionaries(names, values, max_size=6), query=st.sampled_from(["", "?a=1&b=%2F"]))
def test_agrees_with_the_official_validator(params: dict[str, str], query: str) -> None:
    url = f"https://bridge.example.test:8443/sms/twilio/tok/inbound{query}"
    official = RequestValidator(TOKEN)
    ours = compute_signature(TOKEN, url, list(params.items()))
    assert ours == official.compute_signature(url, params)
    assert official.validate(url, params, ours)
