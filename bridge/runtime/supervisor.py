"""`sms-bridge serve --processes N`: a parent that runs N daemons on this host and keeps them up.

Each child is a whole `sms-bridge serve` of its own (its pool, its workers, its LISTEN
connection) that binds the public and internal listeners itself with SO_REUSEPORT: the kernel
spreads new connections over the children, a child that dies drops out of the group with its
sockets, and its replacement joins it again. A child reports to the parent exactly as it would
to systemd (READY, STOPPING and WATCHDOG on NOTIFY_SOCKET, here a socket of the parent's; the
kernel tells which child sent what), and the parent speaks to systemd for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bridge.config import Settings
from bridge.db.embedded import EmbeddedPostgres
from bridge.errors import BridgeError, ListenFailed
from bridge.log import get_logger
from bridge.runtime.systemd import Notifier

log = get_logger(__name__)

# A child that ran this long before it died is replaced at once; one that dies sooner again
# and again waits RESTART_BASE, then twice that, and so on up to RESTART_CAP.
STABLE_SECONDS = 30.0
RESTART_BASE = 0.5
RESTART_CAP = 30.0
# On top of shutdown_timeout, for a child's workers and pool to close after its listeners.
STOP_GRACE = 10.0
# How long a child may take to send its first watchdog ping (systemd's TimeoutStartSec).
START_LIMIT = 120.0
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ChildFailed(BridgeError):
    """A worker process exited while the daemon was starting."""

    code = "child_failed"


@dataclass
class Child:
    """One slot (1…N) and the process that fills it now."""

    slot: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    ready: bool = False
    pinged_at: float | None = None
    quick_deaths: int = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


def _describe_exit(code: int) -> str:
    if code < 0:
        return signal.Signals(-code).name
    return f"exit status {code}"


def probe_listeners(settings: Settings) -> None:
    """Fail at once, as one process would, when something already listens on our addresses:
    with SO_REUSEPORT the children would otherwise join another program's (or another
    bridge's) sockets and silently share its traffic."""
    for key, value, (host, port) in (
        ("public_listen", settings.public_listen, settings.public_address),
        ("internal_listen", settings.internal_listen, settings.internal_address),
    ):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in infos:
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    probe.bind(address)
        except OSError as exc:
            raise ListenFailed(
                f"{key} (BRIDGE_{key.upper()}) {value}: {exc.strerror or exc}; "
                "choose a free address or stop what holds it"
            ) from None


class Inbox:
    """The NOTIFY_SOCKET the children report to: an abstract datagram socket (nothing on the
    file system to clean up) that asks the kernel for each sender's pid."""

    def __init__(self) -> None:
        self.name = f"sms-bridge/{os.getpid()}/{secrets.token_hex(8)}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind("\0" + self.name)
        self._sock.setblocking(False)

    @property
    def address(self) -> str:
        return "@" + self.name

    def fileno(self) -> int:
        return self._sock.fileno()

    def messages(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Whatever arrived, as (sender pid, {"READY": "1", ...})."""
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
            fields = {}
            for line in data.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            yield pid, fields

    def close(self) -> None:
        self._sock.close()


class Supervisor:
    """Starts the children, replaces any that dies, and stops them all on a signal."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        command: Sequence[str],
        env: dict[str, str],
    ) -> None:
        self._settings = settings
        self._notifier = notifier
        self._command = list(command)
        self._env = env
        self._children = [Child(slot) for slot in range(1, settings.processes + 1)]
        self._stop = asyncio.Event()
        self._signal = signal.SIGTERM
        self._stopping = False
        self._serving = False
        self._failure: ChildFailed | None = None
        # Held while a child is being started, so a stop sees every child there is.
        self._spawning = asyncio.Lock()
        self._watchdog_usec = env.get("WATCHDOG_USEC")

    def request_stop(self, sig: signal.Signals) -> None:
        if not self._stop.is_set():
            self._signal = sig
            self._stop.set()

    def _env_for(self, child: Child) -> dict[str, str]:
        env = dict(self._env)
        if child.slot != 1:
            # SIP stays in process 1: on a shared UDP port the kernel hands a phone's answer
            # to whichever child its address hashes to, not to the one that sent the request.
            env["BRIDGE_SIP_LISTEN"] = ""
        return env

    async def _spawn(self, child: Child) -> None:
        async with self._spawning:
            if self._stopping:
                return
            loop = asyncio.get_running_loop()
            child.ready = False
            child.started_at, child.pinged_at = loop.time(), None
            try:
                child.process = await asyncio.create_subprocess_exec(
                    *self._command,
                    "--process-slot",
                    str(child.slot),
                    "--supervisor",
                    str(os.getpid()),
                    env=self._env_for(child),
                    stdin=asyncio.subprocess.DEVNULL,
                )
            except OSError as exc:
                log.error("supervisor.spawn_failed", process=child.slot, error=str(exc))
                child.process = None
                return
            log.info("supervisor.child_started", process=child.slot, pid=child.process.pid)

    def _readable(self, inbox: Inbox) -> None:
        loop = asyncio.get_running_loop()
        for pid, fields in inbox.messages():
            child = next(
                (c for c in self._children if c.process is not None and c.process.pid == pid),
                None,
            )
            if child is None:
                continue
            child.pinged_at = loop.time()
            if fields.get("READY") == "1" and not child.ready:
                child.ready = True
                self._on_ready(child)

    def _on_ready(self, child: Child) -> None:
        ready = sum(c.ready for c in self._children)
        total = len(self._children)
        assert child.process is not None
        log.info("supervisor.child_ready", process=child.slot, pid=child.process.pid)
        if ready == total and not self._serving and not self._stopping:
            self._serving = True
            self._notifier.ready(f"serving: {total} processes")
            log.info("supervisor.ready", processes=total)
        elif self._serving:
            self._notifier.status(f"serving: {ready} of {total} processes ready")

    async def _keep(self, child: Child) -> None:
        """Wait for the child to end; replace it, sooner or later, unless we are stopping."""
        loop = asyncio.get_running_loop()
        while True:
            code = await child.process.wait() if child.process is not None else None
            if self._stopping:
                return
            ran = loop.time() - child.started_at
            pid = child.process.pid if child.process is not None else None
            status = "not started" if code is None else _describe_exit(code)
            if not self._serving:
                self._failure = ChildFailed(
                    f"process {child.slot} of {len(self._children)} ({status}) ended while "
                    "the daemon was starting; the lines it logged say why"
                )
                self._stop.set()
                return
            child.ready = False
            child.quick_deaths = 0 if ran >= STABLE_SECONDS else child.quick_deaths + 1
            delay = (
                0.0
                if child.quick_deaths == 0
                else min(RESTART_CAP, RESTART_BASE * 2 ** (child.quick_deaths - 1))
            )
            log.error(
                "supervisor.child_exited",
                process=child.slot,
                pid=pid,
                status=status,
                ran_s=round(ran, 1),
                restart_in_s=delay,
            )
            ready = sum(c.ready for c in self._children)
            self._notifier.status(f"serving: {ready} of {len(self._children)} processes ready")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            await self._spawn(child)

    async def _watch_hangs(self, usec: int) -> None:
        """A child whose event loop stopped (it no longer pets its watchdog) is killed and
        replaced, as systemd would do to a single daemon. Until its first ping (imports,
        the database) it gets as long as systemd gives a start."""
        limit = usec / 1_000_000
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(limit / 4)
            for child in self._children:
                if not child.alive:
                    continue
                if child.pinged_at is None:
                    quiet, allowed = loop.time() - child.started_at, max(limit, START_LIMIT)
                else:
                    quiet, allowed = loop.time() - child.pinged_at, limit
                if quiet > allowed:
                    assert child.process is not None
                    log.error(
                        "supervisor.child_hung",
                        process=child.slot,
                        pid=child.process.pid,
                        quiet_s=round(quiet, 1),
                    )
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    child.pinged_at = loop.time()

    async def run(self, inbox: Inbox) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(inbox.fileno(), self._readable, inbox)
        tasks: list[asyncio.Task[None]] = []
        try:
            for child in self._children:
                if self._stop.is_set():
                    break  # stopped while the embedded server was starting, say
                await self._spawn(child)
            tasks = [
                asyncio.create_task(self._keep(c), name=f"child-{c.slot}") for c in self._children
            ]
            usec = self._watchdog_usec
            if usec and usec.isdigit():
                tasks.append(asyncio.create_task(self._watch_hangs(int(usec)), name="hangs"))
            await self._stop.wait()
            await self._stop_children()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.remove_reader(inbox.fileno())
        if self._failure is not None:
            raise self._failure

    async def _stop_children(self) -> None:
        async with self._spawning:
            self._stopping = True
        self._notifier.stopping()
        live = [c for c in self._children if c.alive]
        log.info("supervisor.stopping", signal=self._signal.name, processes=len(live))
        for child in live:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(self._signal)
        waits = [c.process.wait() for c in live if c.process is not None]
        try:
            async with asyncio.timeout(self._settings.shutdown_timeout + STOP_GRACE):
                await asyncio.gather(*waits)
        except TimeoutError:
            for child in live:
                if child.alive:
                    assert child.process is not None
                    log.error("supervisor.child_killed", process=child.slot, pid=child.process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
            await asyncio.gather(*(c.process.wait() for c in live if c.process is not None))
        for child in live:
            assert child.process is not None
            code = child.process.returncode
            if code != 0:
                log.warning(
                    "supervisor.child_stopped",
                    process=child.slot,
                    status=_describe_exit(code or 0),
                )


def child_environment(settings: Settings) -> dict[str, str]:
    """What every child starts with: this environment, told how many siblings it has, with
    no watchdog owner (the parent answers systemd's and watches theirs)."""
    env = dict(os.environ)
    env["BRIDGE_PROCESSES"] = str(settings.processes)
    env.pop("WATCHDOG_PID", None)
    usec = Notifier().watchdog_usec()
    if usec is None:
        env.pop("WATCHDOG_USEC", None)
    else:
        env["WATCHDOG_USEC"] = str(usec)
    return env


@contextmanager
def _signals(handler: Callable[[signal.Signals], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def supervise(settings: Settings, child_args: Sequence[str] = ()) -> None:
    """Run ``settings.processes`` daemons until SIGTERM/SIGINT, then stop them all."""
    notifier = Notifier()
    probe_listeners(settings)
    env = child_environment(settings)
    inbox = Inbox()
    env["NOTIFY_SOCKET"] = inbox.address
    command = [sys.executable, "-m", "bridge", "serve", *child_args]
    supervisor = Supervisor(settings, notifier, command, env)
    embedded: EmbeddedPostgres | None = None
    try:
        with _signals(supervisor.request_stop):
            async with notifier.watchdog():
                log.info("supervisor.starting", processes=settings.processes)
                if not settings.database_url.get_secret_value():
                    # Started once, here, and stopped once every child is gone: to the
                    # children it is a configured server.
                    embedded = EmbeddedPostgres(settings.data_dir)
                    env["BRIDGE_DATABASE_URL"] = await asyncio.to_thread(embedded.start)
                await supervisor.run(inbox)
    finally:
        inbox.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
    log.info("supervisor.stopped")
