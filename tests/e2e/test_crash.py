"""kill -9 in the middle of traffic: nothing acknowledged is lost, nothing is done twice."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import asyncpg

from bridge.fake_twilio import running_fake_twilio
from bridge.twilio.signature import compute_signature
from tests import factories
from tests.e2e.daemon import Daemon
from tests.sink import running_sink

ADMIN = "admin-token-for-the-crash-test-00"


async def provision(
    daemon: Daemon, sid: str, token: str, sink_url: str, secret: str
) -> tuple[str, str, list[str]]:
    """A tenant whose ten extensions each text from an unpaced DID of their own."""
    api = daemon.internal + "/api/v1"
    numbers = [factories.number() for _ in range(10)]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s:

        async def call(method: str, path: str, body: object) -> dict[str, object]:
            async with s.request(method, api + path, json=body) as r:
                assert r.status < 300, await r.text()
                return dict(await r.json())

        tenant = str((await call("POST", "/tenants", {"name": "Crash"}))["id"])
        base = f"/tenants/{tenant}"
        trunk = str((await call("POST", base + "/trunks", {"name": "T"}))["id"])
        config = await call(
            "POST",
            base + "/sms-configs",
            factories.sms_config(
                trunk,
                account_sid=sid,
                credential={"type": "auth_token", "auth_token": token},
                numbers=[{"number": n, "mps": 10_000} for n in numbers],
            ),
        )
        extensions = [
            {"extension": f"2{i:02d}", "dids": [n], "default_did": n} for i, n in enumerate(numbers)
        ]
        await call("PUT", base + "/extensions", extensions)
        await call(
            "PUT", base + "/inbound-rules", [{"name": "all", "did": "*", "extensions": ["200"]}]
        )
        await call("PUT", base + "/outbound-rules", [{"name": "all", "trunks": [trunk]}])
        await call("PUT", base + "/delivery", {"url": sink_url, "secret": secret})
    return tenant, str(config["webhook_url"]), numbers


async def test_kill_9_under_load_loses_and_repeats_nothing(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    async with (
        running_fake_twilio(accounts=[(sid, token)]) as fake,
        running_sink(factories.hex32()) as sink,
    ):
        daemon = Daemon(
            tmp_path / "data",
            {
                "BRIDGE_DATABASE_URL": db_dsn,
                "BRIDGE_ADMIN_TOKEN": ADMIN,
                "BRIDGE_TWILIO_API_BASE": fake.base_url,
                "BRIDGE_WORKER_POLL_SECONDS": "0.2",
            },
        )
        daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
        daemons.append(daemon)
        daemon.start()
        await daemon.wait_ready()
        tenant, hook, numbers = await provision(daemon, sid, token, sink.url, sink.secret)

        acknowledged: list[str] = []
        accepted: list[str] = []

        async def inbound(i: int, session: aiohttp.ClientSession) -> None:
            params = [
                ("MessageSid", f"SM{i:032x}"),
                ("AccountSid", sid),
                ("From", f"+1555000{i % 50:04d}"),
                ("To", numbers[0]),
                ("Body", f"in {i}"),
            ]
            headers = {
                "X-Twilio-Signature": compute_signature(hook, params, token),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            try:
                async with session.post(hook, data=urlencode(params), headers=headers) as r:
                    if r.status == 200:
                        acknowledged.append(f"SM{i:032x}")
            except aiohttp.ClientError:
                pass  # not acknowledged: Twilio would retry it

        async def outbound(i: int, session: aiohttp.ClientSession) -> None:
            body = {"from_extension": f"2{i % 10:02d}", "to": "+15557654321", "body": f"out {i}"}
            try:
                async with session.post(
                    f"{daemon.internal}/api/v1/tenants/{tenant}/messages",
                    json=body,
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as r:
                    if r.status == 202:
                        accepted.append(f"out {i}")
            except aiohttp.ClientError:
                pass

        async def load(session: aiohttp.ClientSession) -> None:
            for start in range(0, 400, 20):
                await asyncio.gather(
                    *(inbound(i, session) for i in range(start, start + 20)),
                    *(outbound(i, session) for i in range(start, start + 20)),
                )

        async with aiohttp.ClientSession() as session:
            traffic = asyncio.create_task(load(session))
            await asyncio.sleep(1.0)
            daemon.signal(signal.SIGKILL)
            await asyncio.to_thread(daemon.wait, 10)
            await traffic
        daemon.start()
        await daemon.wait_ready()
        assert acknowledged and accepted, "the crash came after some traffic"

        def delivered_sids() -> set[str]:
            return {
                d.body["message"]["twilio_sid"]
                for d in sink.acknowledged
                if d.body["type"] == "message.received"
            }

        await sink.wait_for(lambda: set(acknowledged) <= delivered_sids(), within=60)
        await fake.wait_for(
            lambda: {m.body for m in fake.state.messages.values()} >= set(accepted), within=60
        )
        await asyncio.sleep(1.0)

        conn = await asyncpg.connect(db_dsn)
        try:
            stored = Counter(
                r["twilio_sid"]
                for r in await conn.fetch(
                    "SELECT twilio_sid FROM messages WHERE direction = 'inbound'"
                )
            )
        finally:
            await conn.close()
        created = Counter(m.body for m in fake.state.messages.values() if m.direction != "inbound")
        events_per_sid: dict[str, set[str]] = {}
        for d in sink.acknowledged:
            if d.body["type"] == "message.received":
                events_per_sid.setdefault(d.body["message"]["twilio_sid"], set()).add(d.event_id)
        lost_in = [s for s in acknowledged if stored[s] != 1]
        twice_out = [b for b in accepted if created[b] != 1]
        print(
            f"\ninbound: {len(acknowledged)} acknowledged, {sum(stored.values())} stored, "
            f"{len(delivered_sids())} delivered, {len(lost_in)} lost or doubled; outbound: "
            f"{len(accepted)} accepted, {sum(created[b] for b in accepted)} created, "
            f"{len(twice_out)} missing or doubled"
        )
        assert lost_in == []
        assert twice_out == []
        assert all(len(ids) == 1 for ids in events_per_sid.values()), "same event id on redelivery"
        assert stored.most_common(1)[0][1] == 1
