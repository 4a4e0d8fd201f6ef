from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
from pathlib import Path

import aiohttp

from bridge.fake_twilio import running_fake_twilio
from bridge.runtime.bootstrap import ADMIN_TOKEN_FILE, SECRET_KEY_FILE
from tests import factories
from tests.daemon import Daemon, run_cli


def postgres_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def create_tenant(daemon: Daemon, name: str) -> str:
    headers = {"Authorization": f"Bearer {daemon.admin_token()}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(daemon.internal + "/api/v1/tenants", json={"name": name}) as r,
    ):
        assert r.status == 201
        body = await r.json()
        return str(body["id"])


async def tenant_names(daemon: Daemon) -> list[str]:
    headers = {"Authorization": f"Bearer {daemon.admin_token()}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.get(daemon.internal + "/api/v1/tenants") as r,
    ):
        return [t["name"] for t in (await r.json())["items"]]


async def test_embedded_database_first_start_restart_and_kill_9(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path / "data")
    daemons.append(daemon)
    daemon.start()
    first = await daemon.wait_ready()
    token_file = daemon.data_dir / "admin-token"
    for secret_file in (token_file, daemon.data_dir / "secret.key"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    logs = daemon.logs()
    assert str(token_file.resolve()) in logs
    assert daemon.admin_token() not in logs
    await create_tenant(daemon, "Survivor")

    assert daemon.stop() == 0
    pgdata = daemon.data_dir / "postgres"
    assert not postgres_running(pgdata), "a clean stop stops the embedded server"

    daemon.start()
    second = await daemon.wait_ready()
    assert await tenant_names(daemon) == ["Survivor"]

    daemon.signal(signal.SIGKILL)
    daemon.wait()
    daemon.start()
    await daemon.wait_ready()
    assert await tenant_names(daemon) == ["Survivor"]
    assert daemon.stop() == 0
    assert not postgres_running(pgdata), "the last clean stop after a kill -9 still stops it"
    print(f"\nready after {first:.2f}s on first start, {second:.2f}s on restart")


async def test_sigterm_is_a_clean_stop_with_systemd_notifications(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    daemon = Daemon(
        tmp_path / "data",
        {
            "BRIDGE_DATABASE_URL": db_dsn,
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "200000",
        },
    )
    daemons.append(daemon)
    daemon.start()
    await daemon.wait_ready()
    await asyncio.sleep(0.3)
    assert daemon.process is not None
    daemon.env["WATCHDOG_PID"] = str(daemon.process.pid)
    assert daemon.stop() == 0
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    sock.close()
    assert any(m.startswith("READY=1") for m in messages)
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert "WATCHDOG=1" in messages
    events = [
        json.loads(line)["event"] for line in daemon.logs().splitlines() if line.startswith("{")
    ]
    assert (
        events.index("daemon.ready")
        < events.index("daemon.stopping")
        < events.index("daemon.stopped")
    )


def test_migrate_command_then_serve_without_migrating(tmp_path: Path, empty_db_dsn: str) -> None:
    env = {"BRIDGE_DATABASE_URL": empty_db_dsn, "BRIDGE_DATA_DIR": str(tmp_path / "d")}
    refused = run_cli("serve", "--no-migrate", env=env)
    assert refused.returncode == 1
    assert "run sms-bridge migrate" in refused.stderr
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "migrations applied: [1" in first.stdout
    second = run_cli("migrate", env=env)
    assert second.returncode == 0
    assert "none, already current" in second.stdout


def test_migrate_writes_no_secret_into_the_data_directory(tmp_path: Path) -> None:
    """On the embedded database (the README's first run): the data directory gets the
    server, and neither a secret key nor an admin token, which only `serve` needs."""
    data = tmp_path / "d"
    result = run_cli("migrate", env={"BRIDGE_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert "migrations applied: [1" in result.stdout
    written = {p.name for p in data.iterdir()}
    assert "postgres" in written
    assert not written & {SECRET_KEY_FILE, ADMIN_TOKEN_FILE}, written
    assert "admin_token" not in result.stdout + result.stderr


def test_unreachable_database_is_one_clear_failure(tmp_path: Path) -> None:
    env = {
        "BRIDGE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "BRIDGE_DATA_DIR": str(tmp_path / "d"),
    }
    result = run_cli("migrate", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout


async def test_sigterm_lets_in_flight_requests_finish(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    sid, token = factories.account_sid(), factories.hex32()
    admin = "admin-token-for-the-e2e-test-000"
    async with running_fake_twilio(accounts=[(sid, token)]) as fake:
        daemon = Daemon(
            tmp_path / "data",
            {
                "BRIDGE_DATABASE_URL": db_dsn,
                "BRIDGE_ADMIN_TOKEN": admin,
                "BRIDGE_TWILIO_API_BASE": fake.base_url,
                "BRIDGE_SHUTDOWN_TIMEOUT": "10",
            },
        )
        daemons.append(daemon)
        daemon.start()
        await daemon.wait_ready()
        api = daemon.internal + "/api/v1"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as s:
            tenant = await (await s.post(api + "/tenants", json={"name": "A"})).json()
            base = f"{api}/tenants/{tenant['id']}"
            trunk = await (await s.post(base + "/trunks", json={"name": "T"})).json()
            body = factories.sms_config(
                trunk["id"],
                account_sid=sid,
                credential={"type": "auth_token", "auth_token": token},
            )
            config = await (await s.post(base + "/sms-configs", json=body)).json()
            fault = {"next": [{"kind": "slow", "count": 1, "operations": ["account"], "delay": 2}]}
            await s.post(fake.base_url + "/_fake/faults", json=fault)
            validate = asyncio.create_task(s.post(f"{base}/sms-configs/{config['id']}/validate"))
            await asyncio.sleep(0.5)
            daemon.signal(signal.SIGTERM)
            response = await validate
            assert response.status == 200
            assert (await response.json())["ok"] is True
        assert await asyncio.to_thread(daemon.wait, 30) == 0


def test_a_taken_port_is_one_clear_failure(tmp_path: Path, db_dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "BRIDGE_DATABASE_URL": db_dsn,
            "BRIDGE_DATA_DIR": str(tmp_path / "d"),
            "BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{port}",
            "BRIDGE_PUBLIC_LISTEN": "127.0.0.1:0",
        }
        result = run_cli("serve", env=env)
    assert result.returncode == 1
    assert "internal_listen (BRIDGE_INTERNAL_LISTEN)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


async def test_event_streams_do_not_hold_up_a_stop(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    admin = "admin-token-for-the-e2e-test-000"
    daemon = Daemon(
        tmp_path / "data",
        {
            "BRIDGE_DATABASE_URL": db_dsn,
            "BRIDGE_ADMIN_TOKEN": admin,
            "BRIDGE_SHUTDOWN_TIMEOUT": "30",
        },
    )
    daemons.append(daemon)
    daemon.start()
    await daemon.wait_ready()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as s:
        tenant = await (
            await s.post(daemon.internal + "/api/v1/tenants", json={"name": "A"})
        ).json()
        stream = await s.get(f"{daemon.internal}/api/v1/tenants/{tenant['id']}/events")
        assert stream.status == 200
        started = asyncio.get_running_loop().time()
        daemon.signal(signal.SIGTERM)
        assert await asyncio.to_thread(daemon.wait, 30) == 0
        elapsed = asyncio.get_running_loop().time() - started
        stream.close()
    assert elapsed < 10, f"the open stream held the stop for {elapsed:.1f}s"
