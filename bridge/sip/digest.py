"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): client and server side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bridge.sip.errors import SipParseError
from bridge.sip.headers import QUOTED, TOKEN, quote, split_outside_quotes, unquote
from bridge.sip.message import SipRequest, SipResponse, build_response, new_branch

_HASHES = {"MD5": "md5", "MD5-SESS": "md5", "SHA-256": "sha256", "SHA-256-SESS": "sha256"}
_NAMES = {
    "MD5": "MD5",
    "MD5-SESS": "MD5-sess",
    "SHA-256": "SHA-256",
    "SHA-256-SESS": "SHA-256-sess",
}
_STRENGTH = {"SHA-256": 4, "SHA-256-sess": 3, "MD5": 2, "MD5-sess": 1}
_SCHEME_START = re.compile(rf"({TOKEN.pattern})[ \t]+(?={TOKEN.pattern}[ \t]*=)")
_NC = re.compile(r"[0-9a-fA-F]{8}")


def parse_auth_header(value: str) -> list[tuple[str, dict[str, str]]]:
    """Split a WWW-Authenticate/Authorization value into (scheme, params) pairs."""
    out: list[tuple[str, dict[str, str]]] = []
    for item in split_outside_quotes(value, ",", angles=False):
        item = item.strip(" \t")
        if not item:
            continue
        start = _SCHEME_START.match(item)
        if start is not None or not out:
            if start is None:
                raise SipParseError("auth header without a scheme")
            out.append((start.group(1), {}))
            item = item[start.end() :]
        name, eq, raw = item.partition("=")
        name, raw = name.strip(" \t").lower(), raw.strip(" \t")
        if not eq or TOKEN.fullmatch(name) is None:
            raise SipParseError("bad auth parameter")
        if QUOTED.fullmatch(raw):
            out[-1][1][name] = unquote(raw)
        elif TOKEN.fullmatch(raw):
            out[-1][1][name] = raw
        else:
            raise SipParseError("bad auth parameter value")
    return out


def _algorithm(value: str | None) -> str | None:
    """The canonical spelling of a supported algorithm, or None."""
    return _NAMES.get((value or "MD5").upper())


def _h(algorithm: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(_HASHES[algorithm.upper()], raw).hexdigest()


def digest_response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "00000001",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The `response` value (RFC 7616 §3.4.1); `qop` None is the RFC 2069 form."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}" + (f":{_h(algorithm, body)}" if qop == "auth-int" else "")
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{_h(algorithm, a2)}")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{_h(algorithm, a2)}")


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One Digest challenge from a 401 WWW-Authenticate or 407 Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    opaque: str | None = None
    qop: tuple[str, ...] = ()
    stale: bool = False


def parse_challenges(values: Iterable[str]) -> list[DigestChallenge]:
    """The usable Digest challenges among header values; other schemes/algorithms are skipped."""
    found: list[DigestChallenge] = []
    for value in values:
        try:
            parsed = parse_auth_header(value)
        except SipParseError:
            continue
        for scheme, params in parsed:
            algorithm = _algorithm(params.get("algorithm"))
            if scheme.lower() != "digest" or algorithm is None:
                continue
            if "realm" not in params or "nonce" not in params:
                continue
            qop = tuple(q.strip(" \t").lower() for q in params.get("qop", "").split(",") if q)
            found.append(
                DigestChallenge(
                    params["realm"],
                    params["nonce"],
                    algorithm,
                    params.get("opaque"),
                    qop,
                    params.get("stale", "").lower() == "true",
                )
            )
    return found


def strongest(challenges: Iterable[DigestChallenge]) -> list[DigestChallenge]:
    """One challenge per realm, the strongest algorithm offered for it (RFC 8760 §2.4)."""
    best: dict[str, DigestChallenge] = {}
    for challenge in challenges:
        current = best.get(challenge.realm)
        if current is None or _STRENGTH[challenge.algorithm] > _STRENGTH[current.algorithm]:
            best[challenge.realm] = challenge
    return list(best.values())


def authorization(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    body: bytes = b"",
    cnonce: str | None = None,
    nc: int = 1,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    qop = "auth" if "auth" in challenge.qop else "auth-int" if "auth-int" in challenge.qop else None
    cnonce = cnonce or secrets.token_hex(16)
    nc_text = f"{nc:08x}"
    response = digest_response(
        challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f"username={quote(username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def with_credentials(
    request: SipRequest, response: SipResponse, credentials: tuple[str, str]
) -> SipRequest | None:
    """`request` again answering the 401/407 `response`: CSeq+1, new branch, same Call-ID."""
    if response.status not in (401, 407):
        return None
    proxy = response.status == 407
    offered = response.headers.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate")
    challenges = strongest(parse_challenges(offered))
    cseq, via = request.cseq, request.top_via
    if not challenges or cseq is None or via is None:
        return None
    headers = request.headers.copy()
    headers.set("CSeq", f"{cseq.number + 1} {cseq.method}")
    headers.set("Via", str(via.with_param("branch", new_branch())))
    username, password = credentials
    for challenge in challenges:
        value = authorization(
            challenge,
            username=username,
            password=password,
            method=request.method,
            uri=request.uri,
            body=request.body,
        )
        headers.add("Proxy-Authorization" if proxy else "Authorization", value)
    return SipRequest(request.method, request.uri, headers, request.body)


VerdictStatus = Literal["ok", "missing", "stale", "rejected"]


@dataclass(frozen=True, slots=True)
class DigestVerdict:
    """The outcome of checking a request's credentials; anything but "ok" means challenge."""

    status: VerdictStatus
    reason: str = ""
    username: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class DigestAuthenticator:
    """Server side: stateless HMAC-signed nonces that any process with the secret can verify."""

    def __init__(
        self,
        secret: bytes,
        *,
        nonce_ttl: float = 300.0,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        clock: Callable[[], float] = time.time,
        replay_cache_size: int = 4096,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the digest secret must be at least 16 bytes")
        names = [_algorithm(a) for a in algorithms]
        if not names or any(n is None for n in names):
            raise ValueError("unsupported digest algorithm")
        self._secret = secret
        self._ttl = nonce_ttl
        self._algorithms = tuple(n for n in names if n is not None)
        self._clock = clock
        # Highest nc seen per nonce, per process: a best effort against replays, bounded.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._seen_max = replay_cache_size

    def _mac(self, stamp: str, salt: str, realm: str) -> str:
        digest = hmac.new(self._secret, f"{stamp}:{salt}:{realm}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:18]).decode()

    def new_nonce(self, realm: str) -> str:
        stamp = format(int(self._clock()), "x")
        salt = secrets.token_urlsafe(9)
        return f"{stamp}.{salt}.{self._mac(stamp, salt, realm)}"

    def offer(self, algorithms: Sequence[str] | None) -> tuple[str, ...]:
        """The algorithms to challenge with, in order: ``algorithms`` (of those this
        authenticator supports) or its own."""
        if algorithms is None:
            return self._algorithms
        names = tuple(n for n in (_algorithm(a) for a in algorithms) if n is not None)
        if not names:
            raise ValueError("no supported digest algorithm")
        return names

    def challenges(
        self, realm: str, *, stale: bool = False, algorithms: Sequence[str] | None = None
    ) -> list[str]:
        """Header values in the order offered (strongest first unless ``algorithms`` says
        otherwise), each its own field as RFC 8760 §2.4 asks."""
        nonce = self.new_nonce(realm)
        extra = ", stale=TRUE" if stale else ""
        return [
            f'Digest realm={quote(realm)}, nonce="{nonce}", algorithm={a}, qop="auth"{extra}'
            for a in self.offer(algorithms)
        ]

    def challenge(
        self,
        request: SipRequest,
        realm: str,
        *,
        proxy: bool = False,
        stale: bool = False,
        algorithms: Sequence[str] | None = None,
    ) -> SipResponse:
        """A 401 (or 407 when `proxy`) response challenging `request`."""
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        values = self.challenges(realm, stale=stale, algorithms=algorithms)
        return build_response(request, 407 if proxy else 401, headers=[(name, v) for v in values])

    def _nonce_age(self, nonce: str, realm: str) -> float | None:
        """Seconds since the nonce was issued, or None if this secret did not sign it."""
        stamp, _, rest = nonce.partition(".")
        salt, _, mac = rest.partition(".")
        if not re.fullmatch(r"[0-9a-f]{1,12}", stamp) or not salt or not mac:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(stamp, salt, realm).encode()):
            return None
        return self._clock() - int(stamp, 16)

    def verify(
        self,
        request: SipRequest,
        *,
        realm: str,
        password: str,
        username: str | None = None,
        proxy: bool = False,
        algorithms: Sequence[str] | None = None,
    ) -> DigestVerdict:
        """Check the request's credentials for `realm` against `password` (and `username`),
        answered with one of the algorithms offered."""
        name = "Proxy-Authorization" if proxy else "Authorization"
        offered: list[dict[str, str]] = []
        try:
            for value in request.headers.get_all(name):
                offered += [p for s, p in parse_auth_header(value) if s.lower() == "digest"]
        except SipParseError:
            return DigestVerdict("rejected", "malformed credentials")
        mine = [p for p in offered if p.get("realm") == realm]
        if not mine:
            return DigestVerdict("missing", "wrong realm" if offered else "no credentials")
        return self._check(mine[0], request, realm, password, username, self.offer(algorithms))

    def _check(
        self,
        creds: dict[str, str],
        request: SipRequest,
        realm: str,
        password: str,
        username: str | None,
        offered: tuple[str, ...],
    ) -> DigestVerdict:
        user = creds.get("username")
        nonce, uri, response = creds.get("nonce"), creds.get("uri"), creds.get("response")
        algorithm = _algorithm(creds.get("algorithm"))
        nc, cnonce = creds.get("nc", ""), creds.get("cnonce", "")
        if user is None or nonce is None or uri is None or response is None:
            return DigestVerdict("rejected", "incomplete credentials")
        if algorithm is None or algorithm not in offered:
            return DigestVerdict("rejected", "algorithm not offered", user)
        if creds.get("qop", "").lower() != "auth" or not _NC.fullmatch(nc) or not cnonce:
            return DigestVerdict("rejected", "qop=auth with nc and cnonce required", user)
        if uri != request.uri:
            return DigestVerdict("rejected", "uri does not match the Request-URI", user)
        age = self._nonce_age(nonce, realm)
        if age is None or age < -60:
            return DigestVerdict("rejected", "nonce not issued here", user)
        expected = digest_response(
            algorithm,
            username=user,
            realm=realm,
            password=password,
            method=request.method,
            uri=uri,
            nonce=nonce,
            qop="auth",
            nc=nc,
            cnonce=cnonce,
        )
        user_ok = username is None or hmac.compare_digest(user.encode(), username.encode())
        if not hmac.compare_digest(expected.encode(), response.lower().encode()) or not user_ok:
            return DigestVerdict("rejected", "wrong username or password", user)
        if age > self._ttl:
            return DigestVerdict("stale", "nonce expired", user)
        count = int(nc, 16)
        if count <= self._seen.get(nonce, 0):
            return DigestVerdict("stale", "nonce count replayed", user)
        self._seen[nonce] = count
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._seen_max:
            self._seen.popitem(last=False)
        return DigestVerdict("ok", "", user)
