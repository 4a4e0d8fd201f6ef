"""What the fault tests share: bridges to run, a tenant provisioned over the API, Twilio-signed
webhooks and sends as clients make them, and the one line of counts each test prints."""

from __future__ import annotations

import asyncio
import base64
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp.test_utils import TestServer

from bridge.config import Settings
from bridge.fake_twilio import FakeTwilio, compute_signature
from bridge.runtime.app import create_app
from bridge.runtime.bootstrap import RuntimeSecrets
from bridge.web.keys import RUNTIME
from tests import factories
from tests.conftest import ADMIN_TOKEN
from tests.daemon import Daemon, free_port
from tests.pg import rows
from tests.sink import Delivery, Sink
from tests.waiting import eventually

ADMIN = ADMIN_TOKEN
FORM = "application/x-www-form-urlencoded"
# Every daemon of a test shares it: a secret sealed by one process must open in another.
SECRET_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def report(title: str, **sections: Mapping[str, int]) -> None:
    """One readable line of what a test counted (shown with ``pytest -s``), printed before
    its assertions so that a failing run shows it too."""
    parts = [
        f"{name}: " + ", ".join(f"{count} {what}" for what, count in counts.items())
        for name, counts in sections.items()
    ]
    print(f"\n{title} | " + " | ".join(parts), flush=True)


def make_daemon(
    tmp_path: Path, name: str, dsn: str, twilio: str | None = None, **env: str
) -> Daemon:
    """A ``sms-bridge serve`` on an external database whose public base URL really reaches it
    (so Twilio's callbacks do), with the suite's admin token and secret key."""
    extra = {"BRIDGE_TWILIO_API_BASE": twilio} if twilio else {}
    daemon = Daemon(
        tmp_path / name,
        {
            "BRIDGE_DATABASE_URL": dsn,
            "BRIDGE_ADMIN_TOKEN": ADMIN,
            "BRIDGE_SECRET_KEY": SECRET_KEY,
            "BRIDGE_WORKER_POLL_SECONDS": "0.2",
            **extra,
            **env,
        },
    )
    daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
    return daemon


@dataclass(frozen=True)
class InProcess:
    """The real app factory serving both listeners on loopback in this process."""

    internal: str
    public_base: str
    dsn: str
    sip_port: int | None = None

    @property
    def api(self) -> str:
        return self.internal + "/api/v1"


@asynccontextmanager
async def running_bridge(
    settings: Settings, secrets: RuntimeSecrets, **overrides: Any
) -> AsyncIterator[InProcess]:
    """The bridge with its workers; its public base URL is its real public listener."""
    port = free_port()
    app = create_app(
        settings.model_copy(
            update={
                "run_workers": True,
                "public_listen": f"127.0.0.1:{port}",
                "public_base_url": f"http://127.0.0.1:{port}/sms",
                **overrides,
            }
        ),
        secrets,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield InProcess(
            internal=str(server.make_url("")).rstrip("/"),
            public_base=f"http://127.0.0.1:{port}/sms",
            dsn=settings.database_url.get_secret_value(),
            sip_port=app[RUNTIME].sip_port,
        )
    finally:
        await server.close()


@dataclass(frozen=True)
class Tenant:
    """A tenant whose extensions 200, 201, … each text from an unpaced DID of their own;
    every inbound text goes to extension 200, every event to the sink."""

    id: str
    config_id: str
    webhook_url: str
    status_url: str
    numbers: tuple[str, ...]
    account_sid: str
    auth_token: str

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(f"2{i:02d}" for i in range(len(self.numbers)))

    def hook_at(self, public_base: str, kind: str = "inbound") -> str:
        """This configuration's webhook URL as served by the bridge at ``public_base``."""
        token = urlsplit(self.webhook_url).path.split("/")[-2]
        return f"{public_base}/twilio/{token}/{kind}"


async def provision(
    api: str,
    sink: Sink,
    *,
    account_sid: str,
    auth_token: str,
    senders: int = 10,
    name: str = "Faults",
) -> Tenant:
    numbers = [factories.number() for _ in range(senders)]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def call(method: str, path: str, body: object) -> dict[str, Any]:
            async with session.request(method, api + path, json=body) as r:
                assert r.status < 300, await r.text()
                return dict(await r.json())

        tenant = str((await call("POST", "/tenants", {"name": name}))["id"])
        base = f"/tenants/{tenant}"
        trunk = str((await call("POST", base + "/trunks", {"name": "T"}))["id"])
        config = await call(
            "POST",
            base + "/sms-configs",
            factories.sms_config(
                trunk,
                account_sid=account_sid,
                credential={"type": "auth_token", "auth_token": auth_token},
                numbers=[{"number": n, "mps": 10_000} for n in numbers],
            ),
        )
        extensions = [
            {"extension": f"2{i:02d}", "dids": [n], "default_did": n} for i, n in enumerate(numbers)
        ]
        await call("PUT", base + "/extensions", extensions)
        rules = [{"name": "all", "did": "*", "extensions": ["200"]}]
        await call("PUT", base + "/inbound-rules", rules)
        await call("PUT", base + "/outbound-rules", [{"name": "all", "trunks": [trunk]}])
        await call("PUT", base + "/delivery", {"url": sink.url, "secret": sink.secret})
    return Tenant(
        id=tenant,
        config_id=str(config["id"]),
        webhook_url=str(config["webhook_url"]),
        status_url=str(config["status_callback_url"]),
        numbers=tuple(numbers),
        account_sid=account_sid,
        auth_token=auth_token,
    )


def sid_of(i: int) -> str:
    return f"SM{i:032x}"


def inbound_params(tenant: Tenant, i: int, remote: str, body: str) -> list[tuple[str, str]]:
    return [
        ("MessageSid", sid_of(i)),
        ("SmsSid", sid_of(i)),
        ("AccountSid", tenant.account_sid),
        ("From", remote),
        ("To", tenant.numbers[0]),
        ("Body", body),
        ("NumMedia", "0"),
    ]


def sign(url: str, params: list[tuple[str, str]], token: str) -> str:
    """X-Twilio-Signature as Twilio makes it (the fake's signer, not the bridge's checker)."""
    return compute_signature(token, url, params)


def signed_form(
    url: str, params: list[tuple[str, str]], token: str
) -> tuple[bytes, dict[str, str]]:
    """A form body and the headers Twilio would send with it to exactly ``url``."""
    signature = sign(url, params, token)
    return urlencode(params).encode(), {"X-Twilio-Signature": signature, "Content-Type": FORM}


async def post_signed(
    session: aiohttp.ClientSession, url: str, params: list[tuple[str, str]], token: str
) -> int | None:
    """The status answered, or None when no answer came (Twilio would then retry)."""
    body, headers = signed_form(url, params, token)
    try:
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return None


async def send_text(
    session: aiohttp.ClientSession,
    api: str,
    tenant: Tenant,
    extension: str,
    body: str,
    to: str = "+15557654321",
) -> int | None:
    """The status the API answered a send with, or None when no answer came."""
    try:
        async with session.post(
            f"{api}/tenants/{tenant.id}/messages",
            json={"from_extension": extension, "to": to, "body": body},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as r:
            await r.read()
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def received(sink: Sink) -> dict[str, list[Delivery]]:
    """The sink's acknowledged ``message.received`` deliveries by MessageSid."""
    found: dict[str, list[Delivery]] = {}
    for d in sink.acknowledged:
        if d.body["type"] == "message.received":
            found.setdefault(d.body["message"]["twilio_sid"], []).append(d)
    return found


async def until(condition: Callable[[], object], within: float) -> None:
    """Poll a plain condition on state that changes without an event to wait on (counters
    kept by concurrent load); TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the load's counters have no event
            await asyncio.sleep(0.02)


def repeated(items: Iterable[str]) -> dict[str, int]:
    """Items seen more than once, with how often."""
    return {item: n for item, n in Counter(items).items() if n > 1}


@dataclass
class Load:
    """Twilio's webhooks and the PBX portal's sends to one daemon, without pause until told
    to stop; every answer is counted."""

    tenant: Tenant
    public_base: str
    api: str
    conversations: int = 50
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    serial: int = 0
    webhook_answers: Counter[int | None] = field(default_factory=Counter)
    send_answers: Counter[int | None] = field(default_factory=Counter)
    acknowledged: set[str] = field(default_factory=set)
    unacknowledged: set[int] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)
    unanswered: set[str] = field(default_factory=set)

    def counts(self) -> Counter[str]:
        return Counter(
            acknowledged=len(self.acknowledged),
            accepted=len(self.accepted),
            webhooks_failed=sum(n for s, n in self.webhook_answers.items() if s != 200),
            sends_failed=sum(n for s, n in self.send_answers.items() if s != 202),
        )

    def grew(self, before: Counter[str], **at_least: int) -> bool:
        """Whether each named count went up by at least so much since ``before``."""
        now = self.counts()
        return all(now[name] - before[name] >= n for name, n in at_least.items())

    async def inbound(self, session: aiohttp.ClientSession, i: int) -> bool:
        remote = f"+1555000{i % self.conversations:04d}"
        params = inbound_params(self.tenant, i, remote, f"in {i}")
        hook = self.tenant.hook_at(self.public_base)
        status = await post_signed(session, hook, params, self.tenant.auth_token)
        self.webhook_answers[status] += 1
        if status == 200:
            self.acknowledged.add(sid_of(i))
            self.unacknowledged.discard(i)
            return True
        self.unacknowledged.add(i)  # Twilio will try it again
        return False

    async def outbound(self, session: aiohttp.ClientSession, i: int) -> bool:
        body = f"out {i}"
        extension = self.tenant.extensions[i % len(self.tenant.extensions)]
        status = await send_text(session, self.api, self.tenant, extension, body)
        self.send_answers[status] += 1
        if status == 202:
            self.accepted.add(body)
            return True
        self.unanswered.add(body)
        return False

    async def run(
        self, session: aiohttp.ClientSession, inbound: int, outbound: int, pause: float
    ) -> None:
        """``inbound`` and ``outbound`` clients at once, each pausing after a failure."""

        async def client(send: Callable[[aiohttp.ClientSession, int], Awaitable[bool]]) -> None:
            while not self.stop.is_set():
                self.serial += 1
                if not await send(session, self.serial):
                    await asyncio.sleep(pause)  # "try again later": a client backs off

        await asyncio.gather(
            *(client(self.inbound) for _ in range(inbound)),
            *(client(self.outbound) for _ in range(outbound)),
        )

    async def twilio_repeats(self, session: aiohttp.ClientSession, count: int) -> int:
        """Twilio sends some it did get a 200 for again (a retry can cross our answer)."""
        again = sorted(int(sid[2:], 16) for sid in self.acknowledged)[:count]
        for i in again:
            assert await self.inbound(session, i), "a repeat is acknowledged too"
        return len(again)

    async def twilio_retries(self, session: aiohttp.ClientSession) -> list[int]:
        """Twilio sends what got no 200 again until it gets one; returns what it retried."""
        retried = sorted(self.unacknowledged)
        for i in retried:
            await eventually(partial(self.inbound, session, i), within=30)
        return retried


@dataclass(frozen=True)
class Outcome:
    """What the database, Twilio (the fake) and the PBX (the sink) hold once a run settled,
    against what the clients were promised."""

    acknowledged: set[str]  # inbound MessageSids Twilio got a 200 for
    accepted: set[str]  # outbound bodies the API answered 202 for
    stored_in: Counter[str]  # inbound MessageSids in the database
    stored_out: dict[str, list[str | None]]  # outbound body → the Twilio sids stored for it
    created: dict[str, list[str]]  # outbound body → the sids Twilio created for it
    deliveries: dict[str, list[Delivery]]  # MessageSid → acknowledged message.received

    def inbound_counts(self) -> dict[str, int]:
        return {
            "acknowledged": len(self.acknowledged),
            "stored": sum(self.stored_in.values()),
            "delivered": len(set(self.deliveries) & self.acknowledged),
            "redelivered (same event id)": sum(len(d) - 1 for d in self.deliveries.values()),
            "lost": len(self.acknowledged - set(self.stored_in)),
            "duplicated": len(repeated(self.stored_in.elements())),
        }

    def outbound_counts(self) -> dict[str, int]:
        return {
            "accepted": len(self.accepted),
            "stored": sum(len(sids) for sids in self.stored_out.values()),
            "sent": sum(len(sids) for sids in self.created.values()),
            "lost": len(self.accepted - set(self.created)),
            "duplicated": sum(len(sids) > 1 for sids in self.created.values()),
        }

    def check(self) -> None:
        """Design §9: acknowledged inbound texts stored once and delivered (a redelivery under
        the same event id); accepted sends stored once and created at Twilio once."""
        assert self.acknowledged - set(self.stored_in) == set(), "acknowledged, then lost"
        assert repeated(self.stored_in.elements()) == {}, "an inbound text stored twice"
        assert self.acknowledged <= set(self.deliveries), "acknowledged, never delivered"
        ids = {s: {d.event_id for d in ds} for s, ds in self.deliveries.items()}
        assert all(len(i) == 1 for i in ids.values()), "redelivered under another event id"
        assert self.accepted <= set(self.stored_out), "accepted, then lost"
        assert all(len(s) == 1 for s in self.stored_out.values()), "a send stored twice"
        assert set(self.created) == set(self.stored_out), "Twilio has every stored send, only"
        assert all(len(s) == 1 for s in self.created.values()), "created at Twilio twice"
        sids = {body: sids[0] for body, sids in self.created.items()}
        assert {b: s[0] for b, s in self.stored_out.items()} == sids, "knows its Twilio sid"


async def settle(
    dsn: str, fake: FakeTwilio, sink: Sink, acknowledged: set[str], accepted: set[str]
) -> Outcome:
    """Wait until every acknowledged text reached the PBX and no send is left queued, then
    collect what everyone holds."""
    await sink.wait_for(lambda: acknowledged <= set(received(sink)), within=60)

    async def nothing_queued() -> bool:
        return not await rows(dsn, "SELECT 1 FROM sends WHERE state = 'queued' LIMIT 1")

    await eventually(nothing_queued, within=60)
    messages = await rows(dsn, "SELECT direction, body, twilio_sid FROM messages")
    stored_out: dict[str, list[str | None]] = {}
    created: dict[str, list[str]] = {}
    for r in messages:
        if r["direction"] == "outbound":
            stored_out.setdefault(r["body"], []).append(r["twilio_sid"])
    for m in sorted(fake.state.messages.values(), key=lambda m: m.seq):
        if m.direction != "inbound":
            created.setdefault(m.body, []).append(m.sid)
    return Outcome(
        acknowledged=set(acknowledged),
        accepted=set(accepted),
        stored_in=Counter(r["twilio_sid"] for r in messages if r["direction"] == "inbound"),
        stored_out=stored_out,
        created=created,
        deliveries=received(sink),
    )
