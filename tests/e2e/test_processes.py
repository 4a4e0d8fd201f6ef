"""`sms-bridge serve --processes N` (design §13): children sharing the ports, a supervisor that
replaces the one that dies or hangs, speaks for them to systemd, and stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import Daemon, free_port, run_cli

PID_HEADER = "X-Bridge-Pid"
WATCHDOG_USEC = 4_000_000


def postgres_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return False
    return not gone(pid)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def listening_sockets(port: int, table: str = "tcp") -> int:
    """Sockets listening on ``port``: one per process that bound it (with SO_REUSEPORT)."""
    count = 0
    for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        listening = state == "0A" if table == "tcp" else state == "07"
        if listening and int(local.split(":")[1], 16) == port:
            count += 1
    return count


class Systemd:
    """A NOTIFY_SOCKET like systemd's: every datagram with the pid the kernel says sent it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[tuple[int, str]] = []

    def drain(self) -> list[tuple[int, str]]:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return self.received
            pid = next(struct.unpack("3i", d[:12])[0] for _, _, d in ancillary)
            self.received.append((pid, data.decode()))

    def states(self, name: str) -> list[tuple[int, str]]:
        return [(pid, m) for pid, m in self.drain() if name in m.splitlines()]


@dataclass
class Traffic:
    """GET /health one after another, each on a new connection (so the kernel picks a process
    each time), remembering who answered what, and when."""

    url: str
    # (asked at, answered at, status, pid): None for no answer
    answers: list[tuple[float, float, int | None, int | None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def one(self, session: aiohttp.ClientSession) -> tuple[int | None, int | None]:
        try:
            async with session.get(self.url) as r:
                await r.read()
                return r.status, int(r.headers[PID_HEADER])
        except (aiohttp.ClientError, TimeoutError):
            return None, None

    async def run(self) -> None:
        # Short, so a connection the kernel gave the stopped child does not hold the loop up.
        timeout = aiohttp.ClientTimeout(total=2)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while not self.stop.is_set():
                asked = time.monotonic()
                status, pid = await self.one(session)
                self.answers.append((asked, time.monotonic(), status, pid))
                await asyncio.sleep(0.005)

    def pids(self, asked_after: float = 0.0) -> set[int]:
        return {
            pid for asked, _, _, pid in self.answers if pid is not None and asked >= asked_after
        }


async def until(check: Callable[[], object], within: float) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - other processes' state has no event
            await asyncio.sleep(0.02)


async def test_two_processes_share_the_ports_are_replaced_and_stop_together(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    systemd = Systemd(tmp_path / "notify.sock")
    sip_port = free_port()
    # On the embedded database: the supervisor starts it once and stops it last.
    daemon = Daemon(
        tmp_path / "data",
        {
            "NOTIFY_SOCKET": str(systemd.path),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "BRIDGE_SIP_LISTEN": f"127.0.0.1:{sip_port}",
        },
    )
    daemons.append(daemon)
    daemon.start("--processes", "2")
    assert daemon.process is not None
    parent = daemon.process.pid
    await daemon.wait_ready()
    await until(lambda: systemd.states("READY=1"), within=60)

    traffic = Traffic(daemon.internal + "/health")
    running = asyncio.create_task(traffic.run())
    try:
        await until(lambda: len(traffic.pids()) == 2, within=30)
        first, second = sorted(traffic.pids())
        assert {parent_of(first), parent_of(second)} == {parent}
        assert listening_sockets(daemon.public_port) == 2
        assert listening_sockets(daemon.internal_port) == 2
        # SIP in process 1 alone: one UDP socket and one TCP listener on its port.
        assert (listening_sockets(sip_port, "udp"), listening_sockets(sip_port)) == (1, 1)

        # kill -9 one child: the other answers meanwhile, and a new one takes its place.
        os.kill(first, signal.SIGKILL)
        await until(lambda: gone(first), within=10)
        dead_at = time.monotonic()
        await until(lambda: traffic.pids(dead_at) - {second}, within=30)
        (third,) = traffic.pids(dead_at) - {second}
        replaced_at = next(at for _, at, _, pid in traffic.answers if pid == third)
        # Asked once the killed child was gone, answered before its successor first answered.
        gap = [
            (s, p) for asked, at, s, p in traffic.answers if dead_at <= asked and at < replaced_at
        ]
        assert parent_of(third) == parent

        # A child that hangs (its loop stops, so does its watchdog) is killed and replaced.
        os.kill(second, signal.SIGSTOP)
        stopped_at = time.monotonic()
        await until(lambda: gone(second), within=30)
        hung_for = time.monotonic() - stopped_at
        await until(lambda: traffic.pids(stopped_at) - {second, third}, within=30)
        (fourth,) = traffic.pids(stopped_at) - {second, third}
    finally:
        traffic.stop.set()
        await running

    print(
        f"\nduring the replacement of a killed child: {len(gap)} requests, "
        f"{sum(s == 200 for s, _ in gap)} answered 200, all by {second}; "
        f"a hung child was replaced {hung_for:.1f}s after it stopped "
        f"(watchdog {WATCHDOG_USEC / 1e6:.0f}s)"
    )
    assert gap, "the gap was seen"
    assert all(status == 200 and pid == second for status, pid in gap), gap
    assert parent_of(fourth) == parent
    assert "supervisor.child_hung" in daemon.logs()
    assert daemon.logs().count('"supervisor.child_exited"') == 2

    daemon.signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait, 30) == 0
    children = {first, second, third, fourth}
    assert all(gone(pid) for pid in children), "no child outlives the supervisor"
    assert not postgres_running(daemon.data_dir / "postgres"), "the embedded server stopped"
    senders = {pid for pid, _ in systemd.drain()}
    assert senders == {parent}, "only the main process speaks to systemd"
    assert len(systemd.states("READY=1")) == 1
    assert systemd.states("STOPPING=1")
    assert any(m == "WATCHDOG=1" for _, m in systemd.received)
    systemd.sock.close()


async def test_the_children_of_a_killed_supervisor_stop_by_themselves(
    tmp_path: Path, db_dsn: str, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path / "data", {"BRIDGE_DATABASE_URL": db_dsn})
    daemons.append(daemon)
    daemon.start("--processes", "2")
    await daemon.wait_ready()
    traffic = Traffic(daemon.internal + "/health")
    running = asyncio.create_task(traffic.run())
    try:
        await until(lambda: len(traffic.pids()) == 2, within=30)
    finally:
        traffic.stop.set()
        await running
    daemon.signal(signal.SIGKILL)
    assert await asyncio.to_thread(daemon.wait, 10) == -signal.SIGKILL
    await until(lambda: all(gone(pid) for pid in traffic.pids()), within=20)
    assert daemon.logs().count('"daemon.orphaned"') == 2
    assert daemon.logs().count('"daemon.stopped"') == 2, "each drained and closed"


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"BRIDGE_PROCESSES": "0"}, ["check-config"], "processes (BRIDGE_PROCESSES)"),
        ({"BRIDGE_PROCESSES": "two"}, ["check-config"], "processes (BRIDGE_PROCESSES)"),
        ({"BRIDGE_PROCESSES": "65"}, ["check-config"], "processes (BRIDGE_PROCESSES)"),
        ({}, ["serve", "--processes", "0"], "processes (BRIDGE_PROCESSES)"),
        (
            {"BRIDGE_PROCESSES": "2", "BRIDGE_INTERNAL_LISTEN": "127.0.0.1:0"},
            ["check-config"],
            "internal_listen (BRIDGE_INTERNAL_LISTEN): port 0",
        ),
        (
            {"BRIDGE_DATABASE_URL": "postgresql://u@db1:5432,db2:5432/bridge"},
            ["check-config"],
            "database_url (BRIDGE_DATABASE_URL): names several hosts",
        ),
        (
            {"BRIDGE_DATABASE_URL": "postgresql://u@db1/b?connect_timeout=soon"},
            ["check-config"],
            "database_url (BRIDGE_DATABASE_URL): connect_timeout",
        ),
    ],
)
def test_bad_process_and_database_settings_are_one_clear_line(
    tmp_path: Path, env: dict[str, str], args: list[str], named: str
) -> None:
    data = tmp_path / "d"
    result = run_cli(*args, env={"BRIDGE_DATA_DIR": str(data), **env}, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert named in line
    assert not data.exists(), "nothing was written"


def test_good_process_and_failover_settings_pass_check_config(tmp_path: Path) -> None:
    env = {
        "BRIDGE_DATA_DIR": str(tmp_path / "d"),
        "BRIDGE_PROCESSES": "4",
        "BRIDGE_DATABASE_URL": "postgresql://u:pw@db1:5432,db2:5432/bridge"
        "?target_session_attrs=read-write&connect_timeout=3",
    }
    result = run_cli("check-config", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pw" not in result.stdout + result.stderr


def test_a_taken_port_stops_the_supervisor_before_any_child(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "BRIDGE_DATA_DIR": str(tmp_path / "d"),
            "BRIDGE_INTERNAL_LISTEN": f"127.0.0.1:{port}",
            "BRIDGE_PUBLIC_LISTEN": f"127.0.0.1:{free_port()}",
        }
        result = run_cli("serve", "--processes", "2", env=env, timeout=60)
    assert result.returncode == 1
    assert "internal_listen (BRIDGE_INTERNAL_LISTEN)" in result.stderr
    assert "supervisor.child_started" not in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
