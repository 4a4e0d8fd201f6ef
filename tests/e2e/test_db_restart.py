"""PostgreSQL restarted under the daemon: it recovers by itself and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import asyncpg

from bridge.twilio.signature import compute_signature
from tests import factories
from tests.e2e.daemon import Daemon
from tests.sink import running_sink

ADMIN = "admin-token-for-the-restart-test0"
SERVER = """
import sys
from pathlib import Path
from bridge.db.embedded import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[2]))
dsn = server.start()
if sys.argv[1] == "stop":
    server.stop()
print(dsn)
"""


def server(action: str, where: Path) -> str:
    """Start (or join) / stop a PostgreSQL of the test's own, from a separate process."""
    done = subprocess.run(
        [sys.executable, "-c", SERVER, action, str(where)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


async def test_the_daemon_rides_out_a_database_restart(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    dsn = await asyncio.to_thread(server, "start", tmp_path / "pg")
    sid, token = factories.account_sid(), factories.hex32()
    try:
        async with running_sink(factories.hex32()) as sink:
            daemon = Daemon(
                tmp_path / "data",
                {
                    "BRIDGE_DATABASE_URL": dsn,
                    "BRIDGE_ADMIN_TOKEN": ADMIN,
                    "BRIDGE_WORKER_POLL_SECONDS": "0.2",
                },
            )
            daemon.env["BRIDGE_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{daemon.public_port}/sms"
            daemons.append(daemon)
            daemon.start()
            await daemon.wait_ready()
            api = daemon.internal + "/api/v1"
            number = factories.number()
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as s:

                async def call(method: str, path: str, body: object) -> dict[str, object]:
                    async with s.request(method, api + path, json=body) as r:
                        assert r.status < 300, await r.text()
                        return dict(await r.json())

                tenant = str((await call("POST", "/tenants", {"name": "R"}))["id"])
                base = f"/tenants/{tenant}"
                trunk = str((await call("POST", base + "/trunks", {"name": "T"}))["id"])
                body = factories.sms_config(
                    trunk,
                    account_sid=sid,
                    credential={"type": "auth_token", "auth_token": token},
                    numbers=[{"number": number}],
                )
                hook = str((await call("POST", base + "/sms-configs", body))["webhook_url"])
                await call("PUT", base + "/extensions", [{"extension": "101"}])
                rules = [{"name": "all", "did": "*", "extensions": ["101"]}]
                await call("PUT", base + "/inbound-rules", rules)
                await call("PUT", base + "/delivery", {"url": sink.url, "secret": sink.secret})

            acknowledged: list[str] = []
            statuses: Counter[int] = Counter()

            async def inbound(i: int, session: aiohttp.ClientSession) -> None:
                params = [
                    ("MessageSid", f"SM{i:032x}"),
                    ("From", f"+1555000{i % 20:04d}"),
                    ("To", number),
                    ("Body", f"in {i}"),
                ]
                headers = {
                    "X-Twilio-Signature": compute_signature(hook, params, token),
                    "Content-Type": "application/x-www-form-urlencoded",
                }
                async with session.post(hook, data=urlencode(params), headers=headers) as r:
                    statuses[r.status] += 1
                    if r.status == 200:
                        acknowledged.append(f"SM{i:032x}")

            async def load() -> None:
                async with aiohttp.ClientSession() as session:
                    for i in range(300):
                        await inbound(i, session)
                        await asyncio.sleep(0.01)

            traffic = asyncio.create_task(load())
            await asyncio.sleep(0.8)
            await asyncio.to_thread(server, "stop", tmp_path / "pg")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server, "start", tmp_path / "pg")
            await traffic
            assert daemon.process is not None and daemon.process.poll() is None
            assert statuses[503] > 0, "the outage was seen (and refused, not acknowledged)"
            assert set(statuses) <= {200, 503}, statuses

            def delivered() -> set[str]:
                return {d.body["message"]["twilio_sid"] for d in sink.acknowledged}

            await sink.wait_for(lambda: set(acknowledged) <= delivered(), within=60)
            conn = await asyncpg.connect(dsn)
            try:
                stored = Counter(
                    r["twilio_sid"] for r in await conn.fetch("SELECT twilio_sid FROM messages")
                )
            finally:
                await conn.close()
            print(
                f"\nrestart: {statuses[200]} acknowledged, {statuses[503]} refused during the "
                f"outage, {sum(stored.values())} stored, {len(delivered())} delivered"
            )
            assert all(stored[s] == 1 for s in acknowledged)
            async with (
                aiohttp.ClientSession() as session,
                session.get(daemon.internal + "/ready") as ready,
            ):
                assert ready.status == 200
    finally:
        await asyncio.to_thread(server, "stop", tmp_path / "pg")
