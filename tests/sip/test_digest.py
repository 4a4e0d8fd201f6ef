"""Digest authentication: RFC vectors, challenge parsing, and the server side's verdicts."""

from __future__ import annotations

import hashlib
import re

import pytest

from bridge.sip import (
    DigestAuthenticator,
    DigestChallenge,
    Headers,
    SipRequest,
    authorization,
    parse_challenges,
    strongest,
)
from bridge.sip.digest import digest_response, parse_auth_header

RFC7616 = {
    "username": "Mufasa",
    "password": "Circle of Life",
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    challenge_text = (
        f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"'
    )
    [challenge] = parse_challenges([challenge_text])
    assert challenge.qop == ("auth", "auth-int")
    value = authorization(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616["cnonce"],
    )
    [(scheme, params)] = parse_auth_header(value)
    assert scheme == "Digest"
    assert params["response"] == expected
    assert params["nc"] == "00000001" and params["qop"] == "auth"
    assert params["opaque"] == RFC7616["opaque"]
    assert params["algorithm"] == algorithm


def test_rfc2617_section_3_5_vector() -> None:
    response = digest_response(
        "MD5",
        username="Mufasa",
        realm="testrealm@host.com",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_sess_and_rfc2069_forms_match_hand_computation() -> None:
    def h(data: str) -> str:
        return hashlib.sha256(data.encode()).hexdigest()

    ha1 = h(f"{h('u:r:p')}:n:c")
    expected = h(f"{ha1}:n:00000002:c:auth:{h('MESSAGE:sip:a@b')}")
    got = digest_response(
        "SHA-256-sess", username="u", realm="r", password="p", method="MESSAGE",
        uri="sip:a@b", nonce="n", qop="auth", nc="00000002", cnonce="c",
    )  # fmt: skip
    assert got == expected
    md5 = hashlib.md5
    ha1 = md5(b"u:r:p").hexdigest()
    ha2 = md5(b"MESSAGE:sip:a@b").hexdigest()
    plain = digest_response(
        "MD5", username="u", realm="r", password="p", method="MESSAGE", uri="sip:a@b", nonce="n"
    )
    assert plain == md5(f"{ha1}:n:{ha2}".encode()).hexdigest()


def test_challenge_parsing_and_choice() -> None:
    values = [
        'Digest realm="pbx", nonce="n1", algorithm=md5, qop="auth"',
        'Digest realm="pbx", nonce="n2", algorithm=SHA-256, qop="auth", stale=TRUE',
        'Digest realm="pbx", nonce="n3", algorithm=SHA-512-256',  # unsupported: skipped
        'Basic realm="pbx"',
        "Bearer abc==",  # not even auth-params: skipped, not fatal
        'Digest realm="other", nonce="n4"',
        'Digest nonce="no realm"',
    ]
    challenges = parse_challenges(values)
    assert [(c.realm, c.nonce, c.algorithm) for c in challenges] == [
        ("pbx", "n1", "MD5"),
        ("pbx", "n2", "SHA-256"),
        ("other", "n4", "MD5"),
    ]
    assert challenges[1].stale
    chosen = strongest(challenges)
    assert [(c.realm, c.algorithm) for c in chosen] == [("pbx", "SHA-256"), ("other", "MD5")]


def test_two_challenges_in_one_header_field() -> None:
    value = (
        'Digest realm="a", nonce="1", algorithm=MD5, Digest realm="a", nonce="2", algorithm=SHA-256'
    )
    assert [c.nonce for c in parse_challenges([value])] == ["1", "2"]


def test_qop_absent_gives_rfc2069_answer() -> None:
    value = authorization(
        DigestChallenge("r", "n"), username="u", password="p", method="MESSAGE", uri="sip:a@b"
    )
    assert "qop" not in value and "cnonce" not in value


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


SECRET = b"0123456789abcdef-process-secret"


def make_request(uri: str = "sip:+15557654321@bridge.example.com") -> SipRequest:
    return SipRequest("MESSAGE", uri, Headers([("CSeq", "2 MESSAGE")]), b"hi")


def answer(
    auth: DigestAuthenticator,
    request: SipRequest,
    *,
    password: str = "s3cret",
    realm: str = "acme",
    index: int = 0,
    nc: int = 1,
    username: str = "101",
    proxy: bool = False,
) -> None:
    challenge = parse_challenges(auth.challenges(realm))[index]
    value = authorization(
        challenge, username=username, password=password, method=request.method,
        uri=request.uri, nc=nc,
    )  # fmt: skip
    request.headers.add("Proxy-Authorization" if proxy else "Authorization", value)


@pytest.mark.parametrize("index", [0, 1])
def test_round_trip_sha256_and_md5(index: int) -> None:
    auth = DigestAuthenticator(SECRET)
    challenges = parse_challenges(auth.challenges("acme"))
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    request = make_request()
    answer(auth, request, index=index)
    verdict = auth.verify(request, realm="acme", password="s3cret", username="101")
    assert verdict.ok and verdict.username == "101"


def test_another_process_with_the_same_secret_verifies() -> None:
    request = make_request()
    answer(DigestAuthenticator(SECRET), request)
    assert DigestAuthenticator(SECRET).verify(request, realm="acme", password="s3cret").ok
    other = DigestAuthenticator(b"another-secret-entirely-16+")
    assert other.verify(request, realm="acme", password="s3cret").status == "rejected"


def test_wrong_password_username_realm_and_missing() -> None:
    auth = DigestAuthenticator(SECRET)
    request = make_request()
    assert auth.verify(request, realm="acme", password="s3cret").status == "missing"
    answer(auth, request, password="wrong")
    assert auth.verify(request, realm="acme", password="s3cret").status == "rejected"
    request = make_request()
    answer(auth, request)
    assert auth.verify(request, realm="acme", password="s3cret", username="102").status == (
        "rejected"
    )
    request = make_request()
    answer(auth, request, realm="elsewhere")
    verdict = auth.verify(request, realm="acme", password="s3cret")
    assert (verdict.status, verdict.reason) == ("missing", "wrong realm")


def test_nonce_for_another_realm_is_rejected() -> None:
    auth = DigestAuthenticator(SECRET)
    request = make_request()
    challenge = parse_challenges(auth.challenges("tenant-a"))[0]
    forged = DigestChallenge("tenant-b", challenge.nonce, "SHA-256", qop=("auth",))
    request.headers.add(
        "Authorization",
        authorization(forged, username="101", password="s3cret", method="MESSAGE", uri=request.uri),
    )
    assert auth.verify(request, realm="tenant-b", password="s3cret").status == "rejected"


def test_stale_nonce_only_when_the_password_is_right() -> None:
    clock = Clock()
    auth = DigestAuthenticator(SECRET, nonce_ttl=60, clock=clock)
    good, bad = make_request(), make_request()
    answer(auth, good)
    answer(auth, bad, password="wrong")
    clock.now += 61
    assert auth.verify(good, realm="acme", password="s3cret").status == "stale"
    assert auth.verify(bad, realm="acme", password="s3cret").status == "rejected"
    assert "stale=TRUE" in auth.challenges("acme", stale=True)[0]


def test_replayed_nonce_count_is_stale_and_a_higher_one_passes() -> None:
    auth = DigestAuthenticator(SECRET)
    nonce = parse_challenges(auth.challenges("acme"))[0]
    first, replay, later = make_request(), make_request(), make_request()
    for request, nc in ((first, 1), (replay, 1), (later, 2)):
        request.headers.add(
            "Authorization",
            authorization(nonce, username="101", password="s3cret", method="MESSAGE",
                          uri=request.uri, nc=nc, cnonce="fixed"),
        )  # fmt: skip
    assert auth.verify(first, realm="acme", password="s3cret").ok
    assert auth.verify(replay, realm="acme", password="s3cret").status == "stale"
    assert auth.verify(later, realm="acme", password="s3cret").ok


def test_tampering_uri_mismatch_and_missing_qop() -> None:
    auth = DigestAuthenticator(SECRET)
    request = make_request()
    answer(auth, request)
    value = request.headers.get("Authorization") or ""
    request.headers.set("Authorization", re.sub(r'nonce="([^"]+)"', 'nonce="\\1x"', value))
    assert auth.verify(request, realm="acme", password="s3cret").status == "rejected"
    moved = make_request()
    answer(auth, moved)
    moved.uri = "sip:other@bridge.example.com"
    assert auth.verify(moved, realm="acme", password="s3cret").reason.startswith("uri")
    legacy = make_request()
    challenge = parse_challenges(auth.challenges("acme"))[0]
    no_qop = DigestChallenge("acme", challenge.nonce, "SHA-256")
    legacy.headers.add(
        "Authorization",
        authorization(no_qop, username="101", password="s3cret", method="MESSAGE", uri=legacy.uri),
    )
    assert auth.verify(legacy, realm="acme", password="s3cret").status == "rejected"
    garbage = make_request()
    garbage.headers.add("Authorization", 'Digest username="unterminated')
    assert auth.verify(garbage, realm="acme", password="s3cret").status == "rejected"


def test_proxy_challenge_response() -> None:
    auth = DigestAuthenticator(SECRET)
    request = make_request()
    request.headers.add("Via", "SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1")
    response = auth.challenge(request, "acme", proxy=True)
    assert response.status == 407
    assert len(response.headers.get_all("Proxy-Authenticate")) == 2
    answer(auth, request, proxy=True)
    assert auth.verify(request, realm="acme", password="s3cret", proxy=True).ok
    assert auth.verify(request, realm="acme", password="s3cret").status == "missing"


def test_authenticator_refuses_weak_setup() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DigestAuthenticator(b"short")
    with pytest.raises(ValueError, match="algorithm"):
        DigestAuthenticator(SECRET, algorithms=("SHA-1",))
