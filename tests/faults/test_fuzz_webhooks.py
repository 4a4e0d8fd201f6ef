"""10,000 mangled Twilio webhooks: every one refused with a 4xx, none stored, no 5xx; the valid
ones sent among them (and their retries) stored exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
import yarl

from bridge.config import Settings
from bridge.runtime.bootstrap import RuntimeSecrets
from tests import factories
from tests.faults.harness import (
    FORM,
    Tenant,
    provision,
    report,
    running_bridge,
    sign,
)
from tests.pg import rows
from tests.sink import running_sink

MUTATED = 10_000
VALID = 300
RETRIES = 200
CONCURRENCY = 24
# Over the bridge's default webhook_max_body_bytes (64 KiB).
OVERSIZE = 70 * 1024

Expect = Literal["new", "retry", "refused"]
Params = list[tuple[str, str]]

# Text people (and attackers) put in parameters: scripts, emoji, combining marks, RTL, quotes.
ALPHABET = (
    string.ascii_letters
    + string.digits
    + " .,;:!?&=+%#/\\'\"<>{}[]"
    + "éüßçñøå€£¥ÆŒ"
    + "Ωπλжщя"
    + "中文日本語한국어"
    + "עבריתالعربية"
    + "😀👍🏽🇺🇸❤️‍🔥"
    + "e\u0301a\u0308\u200b\u200d\u2028\ufeff"
)
STATUSES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "read")


def text(rng: random.Random, low: int = 1, high: int = 40) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(low, high)))


@dataclass(frozen=True)
class Shot:
    """One request as sent on the wire, and what the bridge must make of it."""

    kind: str
    endpoint: Literal["inbound", "status"]
    url: str
    body: bytes
    headers: dict[str, str]
    expect: Expect
    key: str = ""  # what a valid one stores: its MessageSid, or "sid:status"
    method: str = "POST"
    allowed: frozenset[int] = frozenset()  # the answers a refused one may get

    def answered_right(self, answer: int | str) -> bool:
        if self.expect == "refused":
            return answer in self.allowed
        return answer == (200 if self.endpoint == "inbound" else 204)


@dataclass
class Target:
    """One configuration's two webhook URLs and the token Twilio signs them with."""

    inbound: str
    status: str
    token: str
    account_sid: str
    to: str

    def url(self, endpoint: str) -> str:
        return self.inbound if endpoint == "inbound" else self.status


@dataclass
class Generator:
    """Deterministic (seeded) valid webhooks and mutations of them."""

    rng: random.Random
    ours: Target
    other: Target
    serial: int = 0
    valid_shots: list[Shot] = field(default_factory=list)

    def fresh_sid(self) -> str:
        self.serial += 1
        return f"SM{self.serial:032x}"

    def params(self, endpoint: str) -> Params:
        sid = self.fresh_sid()
        common = [("MessageSid", sid), ("SmsSid", sid), ("AccountSid", self.ours.account_sid)]
        remote = f"+1555{self.rng.randrange(10**7):07d}"
        if endpoint == "inbound":
            found = [
                *common,
                ("From", remote),
                ("To", self.ours.to),
                # Never a bare STOP/START: opt-outs are not what this test counts.
                ("Body", "fuzz " + text(self.rng)),
                ("NumMedia", "0"),
                ("NumSegments", "1"),
                ("ApiVersion", "2010-04-01"),
            ]
            if self.rng.random() < 0.5:
                found += [("FromCity", text(self.rng, 1, 12)), ("FromCountry", "US")]
        else:
            status = self.rng.choice(STATUSES)
            found = [
                *common,
                ("MessageStatus", status),
                ("SmsStatus", status),
                ("From", self.ours.to),
                ("To", remote),
                ("ApiVersion", "2010-04-01"),
            ]
            if status in ("failed", "undelivered"):
                found.append(("ErrorCode", "30003"))
        self.rng.shuffle(found)
        return found

    @staticmethod
    def key(endpoint: str, params: Params) -> str:
        values = dict(params)
        if endpoint == "inbound":
            return values["MessageSid"]
        return f"{values['MessageSid']}:{values['MessageStatus']}"

    def form(
        self,
        kind: str,
        endpoint: Literal["inbound", "status"],
        params: Params,
        *,
        expect: Expect = "refused",
        sign_url: str | None = None,
        sign_params: Params | None = None,
        token: str | None = None,
        url: str | None = None,
        content_type: str | None = FORM,
        signed: bool = True,
        signature: str | None = None,
        raw: bytes | None = None,
        method: str = "POST",
    ) -> Shot:
        """A form webhook, sent to ``url``: signed (for ``sign_url``, ``sign_params`` and
        ``token`` when given, which is what makes most mutations invalid), or else carrying
        ``signature`` as it is (no header when None)."""
        target = self.ours.url(endpoint)
        headers: dict[str, str] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if signed:
            headers["X-Twilio-Signature"] = sign(
                sign_url or target,
                params if sign_params is None else sign_params,
                token or self.ours.token,
            )
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        body = urlencode(params).encode() if raw is None else raw
        key = self.key(endpoint, params) if expect != "refused" else ""
        return Shot(kind, endpoint, url or target, body, headers, expect, key, method)

    def valid(self) -> Shot:
        endpoint: Literal["inbound", "status"] = self.rng.choice(("inbound", "status"))
        params = self.params(endpoint)
        choice = self.rng.random()
        if choice < 0.2:
            shot = self.json_shot("valid JSON (bodySHA256)", endpoint, params, expect="new")
        elif choice < 0.3:
            # A query string is part of what Twilio signs; it is not a parameter.
            url = self.ours.url(endpoint) + "?configured=" + quote(text(self.rng, 1, 8))
            shot = self.form(
                "valid, query in URL", endpoint, params, expect="new", url=url, sign_url=url
            )
        else:
            shot = self.form("valid form", endpoint, params, expect="new")
        self.valid_shots.append(shot)
        return shot

    def retry(self) -> Shot:
        """Twilio sending one of the valid ones again: byte for byte, or re-encoded."""
        original = self.rng.choice(self.valid_shots)
        if self.rng.random() < 0.5 or original.headers.get("Content-Type") != FORM:
            return replace(original, kind="valid retry, same bytes", expect="retry")
        params = parse_qsl(original.body.decode(), keep_blank_values=True)
        self.rng.shuffle(params)
        if self.rng.random() < 0.5:
            # A repeated pair: Twilio signs each name's distinct values, so still valid.
            params.append(self.rng.choice(params))
        return self.form(
            "valid retry, re-encoded",
            original.endpoint,
            params,
            expect="retry",
            url=original.url,
            sign_url=original.url,
        )

    def json_shot(
        self,
        kind: str,
        endpoint: Literal["inbound", "status"],
        params: Params,
        *,
        expect: Expect = "refused",
        body: bytes | None = None,
        hash_of: bytes | None = None,
        hash_text: str | None = None,
        signed_url: str | None = None,
    ) -> Shot:
        """Twilio's JSON variant: the body's SHA-256 in the signed URL's query."""
        raw = json.dumps(dict(params)).encode() if body is None else body
        digest = hash_text or hashlib.sha256(raw if hash_of is None else hash_of).hexdigest()
        url = f"{self.ours.url(endpoint)}?bodySHA256={digest}"
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Signature": sign(signed_url or url, [], self.ours.token),
        }
        key = self.key(endpoint, params) if expect != "refused" else ""
        return Shot(kind, endpoint, url, raw, headers, expect, key)

    def mutated(self) -> Shot:
        endpoint: Literal["inbound", "status"] = self.rng.choice(("inbound", "status"))
        params = self.params(endpoint)
        name, mutate, allowed = self.rng.choice(MUTATIONS)
        return replace(mutate(self, name, endpoint, params), allowed=allowed)


Mutation = Callable[[Generator, str, Literal["inbound", "status"], Params], Shot]


def _no_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    return g.form(n, e, p, signed=False)


def _empty_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    return g.form(n, e, p, signed=False, signature="")


def _garbage_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    junk = "".join(g.rng.choice(string.printable.strip()) for _ in range(g.rng.randint(1, 60)))
    return g.form(n, e, p, signed=False, signature=junk)


def _unicode_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    valid = sign(g.ours.url(e), p, g.ours.token)
    return g.form(
        n, e, p, signed=False, signature=valid[:10] + "\u00e9" + text(g.rng, 0, 3) + valid[10:]
    )


def _flipped_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    valid = sign(g.ours.url(e), p, g.ours.token)
    # Not the last character before the "=" (its low bits are padding) nor the "=" itself:
    # a change there could spell the same MAC.
    at = g.rng.randrange(len(valid) - 2)
    swapped = "A" if valid[at] != "A" else "B"
    return g.form(n, e, p, signed=False, signature=valid[:at] + swapped + valid[at + 1 :])


def _truncated_signature(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    valid = sign(g.ours.url(e), p, g.ours.token)
    return g.form(n, e, p, signed=False, signature=valid[: g.rng.randrange(1, len(valid) - 2)])


def _other_url(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    target = g.ours.url(e)
    scheme, _, rest = target.partition("://")
    host, _, path = rest.partition("/")
    variants = [
        g.ours.url("status" if e == "inbound" else "inbound"),  # the other endpoint
        f"https://{rest}",
        f"{scheme}://pbx.example.test/{path}",
        f"{scheme}://{host.split(':')[0]}:1{host.split(':')[1]}/{path}",
        f"{scheme}://{host}/{path.removeprefix('sms/')}",
        target + "/",
        target + "?x=1",
        target.upper(),
        g.other.url(e),
    ]
    return g.form(n, e, p, sign_url=g.rng.choice(variants))


def _query_not_signed(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    url = g.ours.url(e) + "?" + urlencode([("injected", text(g.rng, 1, 8))])
    return g.form(n, e, p, url=url, sign_url=g.ours.url(e))


def _other_token(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    made_up = f"{g.rng.getrandbits(128):032x}"
    token = g.rng.choice([g.other.token, made_up, g.ours.account_sid, g.ours.token[:-1]])
    return g.form(n, e, p, token=token)


def _other_config(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    # Perfectly signed for the other configuration, then sent to ours.
    return g.form(n, e, p, sign_url=g.other.url(e), token=g.other.token)


def _dropped(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    sent = list(p)
    del sent[g.rng.randrange(len(sent))]
    return g.form(n, e, sent, sign_params=p)


def _added(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    extra = g.rng.choice(["Body", "MediaUrl0", "OptOutType", "ErrorCode", text(g.rng, 1, 10)])
    sent = [*p, (extra, text(g.rng, 0, 20))]
    return g.form(n, e, sent, sign_params=p)


def _changed(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    at = g.rng.randrange(len(p))
    name, value = p[at]
    sent = list(p)
    sent[at] = (name, value + text(g.rng, 1, 5))
    return g.form(n, e, sent, sign_params=p)


def _renamed(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    at = g.rng.randrange(len(p))
    name, value = p[at]
    sent = list(p)
    sent[at] = (name.swapcase(), value)
    return g.form(n, e, sent, sign_params=p)


def _duplicated(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    name, value = g.rng.choice(p)
    sent = [*p, (name, value + text(g.rng, 1, 5))]
    return g.form(n, e, sent, sign_params=p)


def _huge_unsigned(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    sent = [*p, ("Body", text(g.rng, 1, 3) * g.rng.randint(1_000, 4_000))]
    return g.form(n, e, sent, sign_params=p)


def _oversize_signed(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    padding = "x" * (OVERSIZE + g.rng.randrange(64 * 1024))
    return g.form(n, e, [*p, ("Padding", padding)])


def _unicode_after(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    at = g.rng.randrange(len(p))
    name, value = p[at]
    sent = list(p)
    sent[at] = (name, value + "\u00e9\U0001f600\u202e\u0301")
    return g.form(n, e, sent, sign_params=p)


def _nul_signed(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    at = g.rng.randrange(len(p))
    name, value = p[at]
    sent = list(p)
    sent[at] = (name + "\x00", value) if g.rng.random() < 0.3 else (name, value + "\x00x")
    return g.form(n, e, sent)


def _nul_raw(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    raw = urlencode(p).encode()
    at = g.rng.randrange(len(raw))
    return g.form(n, e, p, raw=raw[:at] + b"\x00" + raw[at:])


def _bad_utf8(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    raw = urlencode(p).encode()
    at = g.rng.randrange(len(raw))
    junk = g.rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"])
    return g.form(n, e, p, raw=raw[:at] + junk + raw[at:])


def _bad_percent(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    # Inside a value, so the decoded parameters differ from what was signed.
    raw = urlencode(p)
    junk = g.rng.choice(["%", "%Z", "%ZZ", "%E2%82", "%C0%AF", "%ED%A0%80", "%FF%FE", "%%41"])
    value_at = [i + 1 for i, c in enumerate(raw) if c == "="]
    at = g.rng.choice(value_at)
    return g.form(n, e, p, raw=(raw[:at] + junk + raw[at:]).encode())


def _content_type(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    kind = g.rng.choice(
        [
            None,
            "text/plain",
            "text/xml",
            "application/json",
            "application/xml",
            "application/octet-stream",
            "multipart/form-data; boundary=xyz",
            "application/x-www-form-urlencoded-x",
            "form",
        ]
    )
    return g.form(n, e, p, content_type=kind)


def _missing_required(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    required = ("MessageSid", "From", "To") if e == "inbound" else ("MessageSid", "MessageStatus")
    gone = g.rng.choice(required)
    aliases = {"MessageSid": "SmsSid", "MessageStatus": "SmsStatus"}
    names = {gone, aliases.get(gone, gone)}
    if g.rng.random() < 0.5:
        sent = [(k, v) for k, v in p if k not in names]
    else:
        sent = [(k, "" if k in names else v) for k, v in p]
    return g.form(n, e, sent)


def _empty(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    return g.form(n, e, [])


def _json_bad_hash(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    raw = json.dumps(dict(p)).encode()
    how = g.rng.randrange(5)
    if how == 0:
        return g.json_shot(n, e, p, hash_of=raw + b" ")
    if how == 1:
        return g.json_shot(n, e, p, hash_text=hashlib.sha256(raw).hexdigest()[:-1])
    if how == 2:
        return g.json_shot(n, e, p, hash_text="not-a-hash-" + quote(text(g.rng, 1, 5)))
    if how == 3:
        # Signed and hashed, then the body changed on the way.
        changed = json.dumps({**dict(p), "Body": "changed"}).encode()
        good = g.json_shot(n, e, p)
        return Shot(n, e, good.url, changed, good.headers, "refused")
    # The hash is right but the signature covers the URL without it.
    return g.json_shot(n, e, p, signed_url=g.ours.url(e))


def _json_signed_malformed(
    g: Generator, n: str, e: Literal["inbound", "status"], p: Params
) -> Shot:
    body = g.rng.choice(
        [
            b"{",
            b"[]",
            b'"MessageSid"',
            b"null",
            json.dumps([list(pair) for pair in p]).encode(),
            json.dumps({k: v for k, v in p if k not in ("MessageSid", "SmsSid")}).encode(),
            b"\xff\xfe{}",
        ]
    )
    return g.json_shot(n, e, p, body=body)


def _json_signed_nul(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    # Valid JSON, correctly hashed and signed, carrying what no stored text may hold.
    poison = g.rng.choice(["\u0000", "\ud800", "a\udfffb"])
    name = g.rng.choice(["Body", "From", "MessageStatus", "Extra"])
    raw = json.dumps({**dict(p), name: dict(p).get(name, "") + poison}).encode()
    return g.json_shot(n, e, p, body=raw)


def _unknown_token(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    base = g.ours.url(e).rsplit("/", 2)[0]
    made_up = f"{g.rng.getrandbits(192):048x}"
    token = g.rng.choice([made_up, "", "%ZZ", "..", "%00", text(g.rng, 1, 8), "a" * 300])
    url = f"{base}/{quote(token, safe='%.')}/{e}"
    return g.form(n, e, p, url=url, sign_url=url)


def _wrong_method(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    return g.form(n, e, p, method=g.rng.choice(["GET", "PUT", "PATCH", "DELETE"]))


def _huge_header(g: Generator, n: str, e: Literal["inbound", "status"], p: Params) -> Shot:
    return g.form(n, e, p, signed=False, signature="A" * g.rng.randint(9_000, 20_000))


FORBIDDEN = frozenset({403})
BAD = frozenset({400})
# Each mutation with the answers that mean "refused for that reason" (design §7, README).
MUTATIONS: tuple[tuple[str, Mutation, frozenset[int]], ...] = (
    ("no signature", _no_signature, FORBIDDEN),
    ("empty signature", _empty_signature, FORBIDDEN),
    ("garbage signature", _garbage_signature, FORBIDDEN),
    ("non-ASCII in signature", _unicode_signature, FORBIDDEN),
    ("one signature character changed", _flipped_signature, FORBIDDEN),
    ("truncated signature", _truncated_signature, FORBIDDEN),
    ("signed for another URL", _other_url, FORBIDDEN),
    ("query added after signing", _query_not_signed, FORBIDDEN),
    ("signed with another token", _other_token, FORBIDDEN),
    ("signed for another configuration", _other_config, FORBIDDEN),
    ("parameter dropped after signing", _dropped, FORBIDDEN),
    ("parameter added after signing", _added, FORBIDDEN),
    ("parameter changed after signing", _changed, FORBIDDEN),
    ("parameter name case changed", _renamed, FORBIDDEN),
    ("parameter duplicated with another value", _duplicated, FORBIDDEN),
    ("unicode added after signing", _unicode_after, FORBIDDEN),
    ("invalid percent-encoding", _bad_percent, FORBIDDEN),
    ("JSON with a bad bodySHA256", _json_bad_hash, FORBIDDEN),
    # Over webhook_max_body_bytes or not, depending on the characters drawn.
    ("huge parameter after signing", _huge_unsigned, frozenset({403, 413})),
    ("oversize body, signed", _oversize_signed, frozenset({413})),
    ("NUL in a parameter, signed", _nul_signed, BAD),
    ("NUL byte in the body", _nul_raw, BAD),
    ("invalid UTF-8 body", _bad_utf8, BAD),
    ("required parameter missing or empty, signed", _missing_required, BAD),
    ("empty body, signed", _empty, BAD),
    ("JSON not an object or incomplete, signed", _json_signed_malformed, BAD),
    ("JSON with NUL or lone surrogate, signed", _json_signed_nul, BAD),
    ("wrong or missing content type", _content_type, frozenset({415})),
    ("unknown or mangled token", _unknown_token, frozenset({404})),
    ("wrong method", _wrong_method, frozenset({404, 405})),
    # Refused by the HTTP parser itself (a header line over 8 KiB).
    ("huge signature header", _huge_header, frozenset({400, 431})),
)


def target_of(tenant: Tenant, public_base: str) -> Target:
    return Target(
        inbound=tenant.hook_at(public_base, "inbound"),
        status=tenant.hook_at(public_base, "status"),
        token=tenant.auth_token,
        account_sid=tenant.account_sid,
        to=tenant.numbers[0],
    )


def plan(ours: Target, other: Target) -> list[Shot]:
    """Seeded: the same kinds of shot in the same order on every run (only the ids and
    tokens of the day differ), so a failure can be replayed."""
    generator = Generator(random.Random(20261123), ours, other)
    shots = [generator.valid() for _ in range(VALID)]
    shots += [generator.mutated() for _ in range(MUTATED)]
    shots += [generator.retry() for _ in range(RETRIES)]
    # Retries may overtake what they repeat, as Twilio's can: the count must still hold.
    generator.rng.shuffle(shots)
    return shots


async def fire(shots: list[Shot]) -> list[int | str]:
    """Every shot's answer (a status, or the client error when none came)."""
    answers: list[int | str] = [0] * len(shots)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(shots)):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                shot = shots[i]
                try:
                    async with session.request(
                        shot.method,
                        yarl.URL(shot.url, encoded=True),
                        data=shot.body,
                        headers=shot.headers,
                        skip_auto_headers={"Content-Type"},
                    ) as r:
                        await r.read()
                        answers[i] = r.status
                except aiohttp.ClientError as exc:
                    answers[i] = type(exc).__name__

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return answers


async def counts(dsn: str) -> dict[str, int]:
    """Rows in every table a webhook can leave a trace in."""
    found = await rows(
        dsn,
        "SELECT (SELECT count(*) FROM messages) AS messages, "
        "(SELECT count(*) FROM events) AS events, "
        "(SELECT count(*) FROM early_status_callbacks) AS early_status_callbacks, "
        "(SELECT count(*) FROM message_media) AS message_media, "
        "(SELECT count(*) FROM opt_outs) AS opt_outs",
    )
    return {k: int(v) for k, v in dict(found[0]).items()}


async def test_mangled_webhooks_are_refused_and_store_nothing(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    async with (
        running_sink(factories.hex32()) as sink,
        running_bridge(settings, runtime_secrets, db_pool_max=8) as bridge,
    ):
        ours, other = [
            await provision(
                bridge.api,
                sink,
                account_sid=factories.account_sid(),
                auth_token=factories.hex32(),
                senders=1,
                name=name,
            )
            for name in ("Ours", "Other")
        ]
        shots = plan(target_of(ours, bridge.public_base), target_of(other, bridge.public_base))
        answered = list(zip(shots, await fire(shots), strict=True))
        tables = await counts(bridge.dsn)
        stored = [
            r["twilio_sid"] for r in await rows(bridge.dsn, "SELECT twilio_sid FROM messages")
        ]
        early = [
            f"{r['twilio_sid']}:{r['status']}"
            for r in await rows(bridge.dsn, "SELECT twilio_sid, status FROM early_status_callbacks")
        ]

    valid = {s.key for s in shots if s.expect != "refused"}
    statuses = [a for _, a in answered]
    server_errors = Counter(s.kind for s, a in answered if isinstance(a, int) and a >= 500)
    no_answer = Counter((s.kind, a) for s, a in answered if isinstance(a, str))
    wrong = Counter((s.kind, a) for s, a in answered if not s.answered_right(a))
    kept = [*stored, *early]
    report(
        "mangled webhooks",
        sent={
            "mutated": sum(s.expect == "refused" for s in shots),
            "valid": sum(s.expect == "new" for s in shots),
            "valid retries": sum(s.expect == "retry" for s in shots),
        },
        answered={
            "4xx": sum(isinstance(a, int) and 400 <= a < 500 for a in statuses),
            "acknowledged": sum(isinstance(a, int) and a < 300 for a in statuses),
            "5xx": sum(server_errors.values()),
            "without an answer": sum(no_answer.values()),
            "not as expected": sum(wrong.values()),
        },
        stored={
            "valid expected": len(valid),
            "stored": len(kept),
            "lost": len(valid - set(kept)),
            "stored from mutated": len(set(kept) - valid),
            "duplicated": len(kept) - len(set(kept)),
        },
    )
    assert not server_errors, sorted(server_errors.items())
    assert not no_answer, sorted(no_answer.items())
    assert not wrong, sorted(wrong.items())
    assert {s.kind for s in shots if s.expect == "refused"} == {m[0] for m in MUTATIONS}
    assert sorted(kept) == sorted(valid), "each valid webhook stored once, nothing else"
    # An inbound text routed to an extension has its event; nothing else left a trace.
    assert tables == {
        "messages": len(stored),
        "events": len(stored),
        "early_status_callbacks": len(early),
        "message_media": 0,
        "opt_outs": 0,
    }


async def test_a_nul_in_a_public_token_is_a_bare_404(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    # aiohttp decodes %00 in the path; PostgreSQL refuses a NUL in a query parameter.
    async with running_bridge(settings, runtime_secrets) as bridge, aiohttp.ClientSession() as s:
        answers = {}
        for method, path in (
            ("POST", "/twilio/%00/inbound"),
            ("POST", "/twilio/%00/status"),
            ("POST", "/twilio/abc%00def/inbound"),
            ("GET", "/media/%00"),
            ("HEAD", "/media/x%00"),
        ):
            url = yarl.URL(bridge.public_base + path, encoded=True)
            headers = {"Content-Type": FORM, "X-Twilio-Signature": "x"}
            async with s.request(method, url, data=b"MessageSid=SM1", headers=headers) as r:
                answers[f"{method} {path}"] = r.status
        assert answers == dict.fromkeys(answers, 404)


async def test_signed_json_carrying_nul_or_a_lone_surrogate_is_refused(
    settings: Settings, runtime_secrets: RuntimeSecrets
) -> None:
    # Correctly hashed and signed, so it passes the door; what it carries cannot be stored
    # (the form variant with a NUL is already a 400).
    async with (
        running_sink(factories.hex32()) as sink,
        running_bridge(settings, runtime_secrets) as bridge,
        aiohttp.ClientSession() as session,
    ):
        tenant = await provision(
            bridge.api, sink, account_sid=factories.account_sid(), auth_token=factories.hex32()
        )
        answers: dict[str, int] = {}
        for endpoint, name, poison in (
            ("inbound", "Body", "\u0000"),
            ("inbound", "Body", "\ud800"),
            ("inbound", "Extra", "\u0000"),
            ("status", "MessageStatus", "\u0000"),
            ("status", "MessageSid", "\udfff"),
            ("status", "Extra", "\u0000"),
        ):
            params = {
                "MessageSid": "SM" + factories.hex32(),
                "AccountSid": tenant.account_sid,
                "From": "+15557654321",
                "To": tenant.numbers[0],
                "Body": "hi",
                "MessageStatus": "delivered",
            }
            params[name] = params.get(name, "") + poison
            raw = json.dumps(params).encode()
            url = f"{tenant.hook_at(bridge.public_base, endpoint)}?bodySHA256="
            url += hashlib.sha256(raw).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-Twilio-Signature": sign(url, [], tenant.auth_token),
            }
            async with session.post(url, data=raw, headers=headers) as r:
                answers[f"{endpoint} {name}+{poison!r}"] = r.status
        tables = await counts(bridge.dsn)
        assert answers == dict.fromkeys(answers, 400)
        assert tables["messages"] == tables["early_status_callbacks"] == 0
